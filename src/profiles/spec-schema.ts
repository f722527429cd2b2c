import * as z from "zod";

/**
 * The ProfileSpec of the Profile reference, structured form. Field names are
 * lowerCamelCase; snake_case spellings are accepted by proto-json's
 * normalizer. Shapes only: the reference's cross-field rules live in
 * spec-rules.ts so that they can also judge merged (layered) specs.
 */

const stringMap = z.record(z.string(), z.string());

export const RESOURCE_KEYS = ["cpuRequest", "memoryRequest", "cpuLimit", "memoryLimit"] as const;

export const ResourceDefaultsSchema = z
  .strictObject({
    cpuRequest: z.string().optional(),
    memoryRequest: z.string().optional(),
    cpuLimit: z.string().optional(),
    memoryLimit: z.string().optional(),
  })
  .meta({ id: "ResourceDefaults" });

export const NAMESPACE_STRATEGIES = ["per-user", "per-org", "per-profile", "static"] as const;

export const NamespaceConfigSchema = z
  .strictObject({
    strategy: z.enum([...NAMESPACE_STRATEGIES, ""]).optional(),
    staticNamespace: z.string().optional(),
    namespacePrefix: z.string().optional(),
    autoCreate: z.boolean().optional(),
    labels: stringMap.optional(),
    annotations: stringMap.optional(),
  })
  .meta({ id: "NamespaceConfig" });

export const EGRESS_TYPES = ["internet", "allowlist", "org", "user", "profile", "none"] as const;

export const EgressModeSchema = z
  .strictObject({
    type: z.enum(EGRESS_TYPES),
    cidrs: z.array(z.string()).optional(),
  })
  .meta({ id: "EgressMode" });

export const EgressSchema = z
  .strictObject({
    default: z.string().optional(),
    modes: z.record(z.string(), EgressModeSchema).optional(),
  })
  .meta({ id: "EgressConfig" });

export const AnnotationPairSchema = z
  .strictObject({ key: z.string(), value: z.string() })
  .meta({ id: "AnnotationPair" });

export const SERVICE_TYPES = ["ClusterIP", "NodePort", "LoadBalancer"] as const;

export const ServiceConfigSchema = z
  .strictObject({
    serviceType: z.enum(SERVICE_TYPES).optional(),
    serviceSelectorAnnotation: AnnotationPairSchema.optional(),
    dnsAnnotation: AnnotationPairSchema.optional(),
  })
  .meta({ id: "ServiceConfig" });

export const IngressConfigSchema = z
  .strictObject({
    controllerName: z.string().optional(),
    template: z.string().optional(),
  })
  .meta({ id: "IngressConfig" });

export const INGRESS_SCOPES = ["user", "profile", "org", "any"] as const;

export const IngressLevelSchema = z
  .strictObject({
    scope: z.enum(INGRESS_SCOPES).optional(),
    expectsExternalAddress: z.boolean().optional(),
    service: ServiceConfigSchema.optional(),
    ingress: IngressConfigSchema.optional(),
  })
  .meta({ id: "IngressLevel" });

export const NetworkConfigSchema = z
  .strictObject({
    egress: EgressSchema.optional(),
    ingress: z.record(z.string(), IngressLevelSchema).optional(),
  })
  .meta({ id: "NetworkConfig" });

export const PodTemplateSchema = z
  .strictObject({
    metadata: z
      .strictObject({ labels: stringMap.optional(), annotations: stringMap.optional() })
      .optional(),
    /** A partial Kubernetes PodSpec, checked against the PodSpec schema in spec-rules.ts. */
    spec: z.record(z.string(), z.unknown()).optional(),
    placement: z.strictObject({ instanceTypes: z.array(z.string()).optional() }).optional(),
  })
  .meta({ id: "PodTemplate" });

const scalarSpecShape = {
  containerImage: z.string().optional(),
  runtimeClass: z.string().optional(),
  resourceDefaults: ResourceDefaultsSchema.optional(),
  instanceTypes: z.array(z.string()).optional(),
  nodeSelector: stringMap.optional(),
  tags: z.array(z.string()).optional(),
};

/** The canonical, structured spec that Paddock stores and layers. */
export const ProfileSpecSchema = z
  .strictObject({
    ...scalarSpecShape,
    namespace: NamespaceConfigSchema.optional(),
    network: NetworkConfigSchema.optional(),
    pod: PodTemplateSchema.optional(),
  })
  .meta({ id: "ProfileSpecStructured" });

export type ProfileSpec = z.infer<typeof ProfileSpecSchema>;
export type NamespaceConfig = z.infer<typeof NamespaceConfigSchema>;
export type NetworkConfig = z.infer<typeof NetworkConfigSchema>;
export type PodTemplate = z.infer<typeof PodTemplateSchema>;
export type ResourceDefaults = z.infer<typeof ResourceDefaultsSchema>;

/** Input: structured sub-blocks or their proto-facing JSON-string aliases. */
export const ProfileSpecInputSchema = z
  .strictObject({
    ...scalarSpecShape,
    namespace: NamespaceConfigSchema.optional(),
    network: NetworkConfigSchema.optional(),
    pod: PodTemplateSchema.optional(),
    namespaceConfigJson: z.string().optional(),
    networkConfigJson: z.string().optional(),
    podTemplateJson: z.string().optional(),
  })
  .meta({
    id: "ProfileSpecInput",
    description:
      "Structured (namespace, network, pod) or proto-facing (namespaceConfigJson, networkConfigJson, podTemplateJson) form; a key and its alias may not both be given.",
  });

/** Output: the proto-facing shape, every field present at its default when unset. */
export const ProfileSpecWireSchema = z
  .strictObject({
    containerImage: z.string(),
    runtimeClass: z.string(),
    resourceDefaults: z.strictObject({
      cpuRequest: z.string(),
      memoryRequest: z.string(),
      cpuLimit: z.string(),
      memoryLimit: z.string(),
    }),
    instanceTypes: z.array(z.string()),
    nodeSelector: stringMap,
    tags: z.array(z.string()),
    namespaceConfigJson: z.string(),
    networkConfigJson: z.string(),
    podTemplateJson: z.string(),
  })
  .meta({ id: "ProfileSpec" });

export type ProfileSpecWire = z.infer<typeof ProfileSpecWireSchema>;

/** The structured keys and the proto-facing aliases that stand for them. */
export const SUB_BLOCKS = [
  { key: "namespace", alias: "namespaceConfigJson", schema: NamespaceConfigSchema },
  { key: "network", alias: "networkConfigJson", schema: NetworkConfigSchema },
  { key: "pod", alias: "podTemplateJson", schema: PodTemplateSchema },
] as const;
