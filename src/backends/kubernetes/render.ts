import type { LaunchSpec } from "../../sandboxes/sandbox.js";
import { NOT_INTERNET_V4, NOT_INTERNET_V6 } from "../not-internet.js";

/**
 * Effective spec + sandbox → the Kubernetes objects of CONTRACT section 8,
 * as plain JSON ready for server-side apply. Pure: golden-tested.
 */

export const LABEL_SANDBOX = "paddock.dev/sandbox-id";
export const LABEL_ORG = "paddock.dev/organization";
export const LABEL_USER = "paddock.dev/user";
export const LABEL_PROFILE = "paddock.dev/profile";
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
export const MANAGER = "paddock";
export const MAIN_CONTAINER = "sandbox";
/** On the pod: how the sandbox is exposed, so that a restarted agent knows what it waits for. */
export const ANNOTATION_EXPOSURE = "paddock.dev/exposure";

export interface Exposure {
  serviceType: string;
  ports: number[];
  expectsExternalAddress: boolean;
  /** The Ingress host, when the level has an ingress template. */
  host: string;
}

/** Resource names of the kinds Paddock applies (the API path wants the plural). */
const RESOURCES: Record<string, { plural: string; namespaced: boolean }> = {
  Namespace: { plural: "namespaces", namespaced: false },
  Pod: { plural: "pods", namespaced: true },
  Service: { plural: "services", namespaced: true },
  NetworkPolicy: { plural: "networkpolicies", namespaced: true },
  Ingress: { plural: "ingresses", namespaced: true },
};

/** The API path of one object, e.g. /apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/name. */
export function objectPath(object: KubeObject): string {
  const resource = RESOURCES[object.kind];
  if (!resource) throw new Error(`Paddock does not apply objects of kind ${object.kind}`);
  const base = object.apiVersion.includes("/")
    ? `/apis/${object.apiVersion}`
    : `/api/${object.apiVersion}`;
  const ns =
    resource.namespaced && object.metadata.namespace
      ? `/namespaces/${encodeURIComponent(object.metadata.namespace)}`
      : "";
  return `${base}${ns}/${resource.plural}/${encodeURIComponent(object.metadata.name)}`;
}

/** The exposure a rendered (or adopted) pod records; none when the annotation is absent or malformed. */
export function exposureOf(pod: {
  metadata?: { annotations?: Record<string, string> | undefined } | undefined;
}): Exposure | undefined {
  const text = pod.metadata?.annotations?.[ANNOTATION_EXPOSURE];
  if (!text) return undefined;
  try {
    const e = JSON.parse(text) as Partial<Exposure>;
    return {
      serviceType: typeof e.serviceType === "string" ? e.serviceType : "",
      ports: Array.isArray(e.ports) ? e.ports.filter((p) => typeof p === "number") : [],
      expectsExternalAddress: e.expectsExternalAddress === true,
      host: typeof e.host === "string" ? e.host : "",
    };
  } catch {
    return undefined;
  }
}
const WORKSPACE = "/workspace";
/** Keeps a sandbox without a command alive, and ends at once on SIGTERM. */
export const IDLE_COMMAND = [
  "/bin/sh",
  "-c",
  "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done",
];

export interface RenderInput {
  sandboxId: string;
  organizationId: string;
  userId: string;
  profileId: string;
  spec: LaunchSpec;
}

export type KubeObject = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
};

export interface Rendered {
  /** Created only for strategies other than `static`, and only with autoCreate. */
  namespace: KubeObject | undefined;
  /**
   * Denies egress to every Paddock pod of the namespace that no policy of
   * its own allows: so a pod may be applied together with its policies and
   * is never open while they land (policies only add allowances).
   */
  baselinePolicy: KubeObject;
  pod: KubeObject;
  networkPolicies: KubeObject[];
  service: KubeObject | undefined;
  ingress: KubeObject | undefined;
}

export function objectName(sandboxId: string): string {
  return `sandbox-${sandboxId}`;
}

/** Labels and annotations a profile may not set: Paddock's own. */
function withoutReserved(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(map).filter(([k]) => !k.startsWith("paddock.dev/") && k !== LABEL_MANAGED_BY),
  );
}

export const BASELINE_POLICY = "paddock-baseline";

export function baselinePolicy(namespace: string): KubeObject {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: BASELINE_POLICY, namespace, labels: { [LABEL_MANAGED_BY]: MANAGER } },
    spec: {
      podSelector: { matchLabels: { [LABEL_MANAGED_BY]: MANAGER } },
      policyTypes: ["Egress"],
      egress: [],
    },
  };
}

export function ownedLabels(input: RenderInput): Record<string, string> {
  return { [LABEL_SANDBOX]: input.sandboxId, [LABEL_MANAGED_BY]: MANAGER };
}

export function render(input: RenderInput): Rendered {
  const { spec } = input;
  const name = objectName(input.sandboxId);
  const ns = spec.namespace;
  const owned = ownedLabels(input);
  const config = spec.namespaceConfig ?? {
    strategy: "per-user",
    autoCreate: true,
    labels: {},
    annotations: {},
  };

  const namespace: KubeObject | undefined =
    config.strategy !== "static" && config.autoCreate
      ? {
          apiVersion: "v1",
          kind: "Namespace",
          metadata: {
            name: ns,
            labels: {
              ...withoutReserved(config.labels),
              [LABEL_MANAGED_BY]: MANAGER,
              [LABEL_ORG]: input.organizationId,
            },
            annotations: withoutReserved(config.annotations),
          },
        }
      : undefined;

  const podLabels = {
    ...withoutReserved(spec.labels),
    ...owned,
    [LABEL_ORG]: input.organizationId,
    [LABEL_USER]: input.userId,
    [LABEL_PROFILE]: input.profileId,
  };
  const resources: Record<string, Record<string, string>> = {};
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  if (spec.cpuRequest) requests.cpu = spec.cpuRequest;
  if (spec.memoryRequest) requests.memory = spec.memoryRequest;
  if (spec.cpuLimit) limits.cpu = spec.cpuLimit;
  if (spec.memoryLimit) limits.memory = spec.memoryLimit;
  if (Object.keys(requests).length) resources.requests = requests;
  if (Object.keys(limits).length) resources.limits = limits;

  const main: Record<string, unknown> = {
    name: MAIN_CONTAINER,
    image: spec.image,
    ...(spec.command.length > 0
      ? { command: [spec.command[0]], args: spec.command.slice(1) }
      : { command: IDLE_COMMAND }),
    env: Object.entries(spec.env).map(([k, v]) => ({ name: k, value: v })),
    resources,
    ports: spec.ports.map((p) => ({
      containerPort: p.containerPort,
      protocol: p.protocol,
      ...(p.name ? { name: p.name } : {}),
    })),
    imagePullPolicy: "IfNotPresent",
    // As on the local backend: a private, writable working directory.
    workingDir: WORKSPACE,
    volumeMounts: [{ name: "workspace", mountPath: WORKSPACE }],
  };
  const partial = ((spec.pod as { spec?: Record<string, unknown> }).spec ?? {}) as Record<
    string,
    unknown
  >;
  const baseSpec: Record<string, unknown> = {
    restartPolicy: "Never",
    volumes: [{ name: "workspace", emptyDir: {} }],
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    ...(spec.runtimeClass ? { runtimeClassName: spec.runtimeClass } : {}),
    ...(Object.keys(spec.nodeSelector).length ? { nodeSelector: spec.nodeSelector } : {}),
    ...(spec.instanceTypes.length
      ? {
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  {
                    matchExpressions: [
                      {
                        key: "node.kubernetes.io/instance-type",
                        operator: "In",
                        values: spec.instanceTypes,
                      },
                    ],
                  },
                ],
              },
            },
          },
        }
      : {}),
    containers: [main],
  };
  const podSpec = mergePodSpec(baseSpec, partial);

  const level = spec.ingress;
  const host = level?.ingress
    ? level.ingress.template
        .replace(/\{\{\s*\.SandboxID\s*\}\}/g, input.sandboxId)
        .replace(/\{\{\s*\.Namespace\s*\}\}/g, ns)
    : "";
  const exposure: Exposure | undefined = level
    ? {
        serviceType: level.serviceType,
        ports: level.ports,
        expectsExternalAddress: level.expectsExternalAddress ?? false,
        host,
      }
    : undefined;
  const pod: KubeObject = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: ns,
      labels: podLabels,
      annotations: {
        ...withoutReserved(spec.annotations),
        ...(exposure ? { [ANNOTATION_EXPOSURE]: JSON.stringify(exposure) } : {}),
      },
    },
    spec: podSpec,
  };

  const networkPolicies: KubeObject[] = [egressPolicy(input, name)];
  let service: KubeObject | undefined;
  let ingress: KubeObject | undefined;
  if (level) {
    const ports = level.ports.map((port) => ({
      name: `p${port}`,
      port,
      targetPort: port,
      protocol: "TCP",
    }));
    service = {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace: ns, labels: owned, annotations: level.serviceAnnotations ?? {} },
      spec: { type: level.serviceType, selector: { [LABEL_SANDBOX]: input.sandboxId }, ports },
    };
    networkPolicies.push({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: `${name}-ingress`, namespace: ns, labels: owned },
      spec: {
        podSelector: { matchLabels: { [LABEL_SANDBOX]: input.sandboxId } },
        policyTypes: ["Ingress"],
        ingress: [
          {
            ...(level.scope === "any" ? {} : { from: [peerSelector(input, level.scope)] }),
            ports: level.ports.map((port) => ({ port, protocol: "TCP" })),
          },
        ],
      },
    });
    if (level.ingress) {
      ingress = {
        apiVersion: "networking.k8s.io/v1",
        kind: "Ingress",
        metadata: { name, namespace: ns, labels: owned },
        spec: {
          ingressClassName: level.ingress.controllerName,
          rules: [
            {
              host,
              http: {
                paths: [
                  {
                    path: "/",
                    pathType: "Prefix",
                    backend: { service: { name, port: { number: level.ports[0] ?? 80 } } },
                  },
                ],
              },
            },
          ],
        },
      };
    }
  }
  return { namespace, baselinePolicy: baselinePolicy(ns), pod, networkPolicies, service, ingress };
}

function peerSelector(input: RenderInput, scope: string): Record<string, unknown> {
  const labels: Record<string, string> = { [LABEL_ORG]: input.organizationId };
  if (scope === "user") labels[LABEL_USER] = input.userId;
  if (scope === "profile") labels[LABEL_PROFILE] = input.profileId;
  return { namespaceSelector: {}, podSelector: { matchLabels: labels } };
}

/** Egress: `none` denies all; `allowlist` its CIDRs; `internet` the public internet; org/user/profile their peers. */
function egressPolicy(input: RenderInput, name: string): KubeObject {
  const egress = input.spec.egress;
  let rules: Record<string, unknown>[] = [];
  if (egress?.type === "allowlist") {
    rules = [{ to: egress.cidrs.map((cidr) => ({ ipBlock: { cidr } })) }];
  } else if (egress?.type === "internet") {
    rules = [
      {
        to: [
          { ipBlock: { cidr: "0.0.0.0/0", except: NOT_INTERNET_V4 } },
          { ipBlock: { cidr: "::/0", except: NOT_INTERNET_V6 } },
        ],
      },
    ];
  } else if (
    egress &&
    (egress.type === "org" || egress.type === "user" || egress.type === "profile")
  ) {
    rules = [{ to: [peerSelector(input, egress.type)] }];
  }
  if (egress && egress.type !== "none") {
    // Name resolution, wherever the cluster runs its DNS.
    rules.push({
      to: [{ namespaceSelector: {}, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
      ports: [
        { port: 53, protocol: "UDP" },
        { port: 53, protocol: "TCP" },
      ],
    });
  }
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: {
      name: `${name}-egress`,
      namespace: input.spec.namespace,
      labels: ownedLabels(input),
    },
    spec: {
      podSelector: { matchLabels: { [LABEL_SANDBOX]: input.sandboxId } },
      policyTypes: ["Egress"],
      egress: rules,
    },
  };
}

/**
 * Merges the profile's partial PodSpec into Paddock's, as a strategic merge
 * patch would: maps merge, containers merge by name (an empty name patches
 * the main container), lists keyed by name (volumes, init containers) merge
 * by name, other values from the profile replace Paddock's.
 */
export function mergePodSpec(
  base: Record<string, unknown>,
  partial: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(partial)) {
    const current = out[key];
    if (key === "containers" && Array.isArray(value) && Array.isArray(current)) {
      out[key] = mergeNamed(
        current as Record<string, unknown>[],
        value as Record<string, unknown>[],
        MAIN_CONTAINER,
      );
    } else if (
      Array.isArray(value) &&
      Array.isArray(current) &&
      value.every(isNamed) &&
      current.every(isNamed)
    ) {
      out[key] = mergeNamed(
        current as Record<string, unknown>[],
        value as Record<string, unknown>[],
        undefined,
      );
    } else if (isObject(value) && isObject(current)) {
      out[key] = mergeObjects(current, value);
    } else {
      out[key] = value;
    }
  }
  return out;
}

function mergeNamed(
  base: Record<string, unknown>[],
  patch: Record<string, unknown>[],
  emptyMeans: string | undefined,
): Record<string, unknown>[] {
  const out = base.map((item) => ({ ...item }));
  for (const item of patch) {
    const name = (item.name as string | undefined) || emptyMeans;
    const index = out.findIndex((b) => b.name === name);
    if (index >= 0)
      out[index] = mergeObjects(out[index] as Record<string, unknown>, { ...item, name });
    else out.push(item);
  }
  return out;
}

function mergeObjects(
  base: Record<string, unknown>,
  patch: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    const current = out[key];
    if (key === "env" && Array.isArray(value) && Array.isArray(current)) {
      out[key] = mergeNamed(
        current as Record<string, unknown>[],
        value as Record<string, unknown>[],
        undefined,
      );
    } else if (isObject(value) && isObject(current)) out[key] = mergeObjects(current, value);
    else out[key] = value;
  }
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNamed(value: unknown): boolean {
  return isObject(value) && typeof value.name === "string";
}
