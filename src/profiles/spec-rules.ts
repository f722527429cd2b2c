import ipaddr from "ipaddr.js";
import type { FieldViolation } from "../errors.js";
import { dns1123LabelProblem, labelValueProblem, qualifiedKeyProblem } from "../resources/names.js";
import { quantityMillis } from "../resources/quantity.js";
import { joinPath } from "../wire/proto-json.js";
import { podSpecViolations } from "./pod-spec.js";
import type {
  NamespaceConfig,
  NetworkConfig,
  PodTemplate,
  ProfileSpec,
  ResourceDefaults,
} from "./spec-schema.js";

/** Longest `namespacePrefix`: leaves room for a readable part and the 7-character hash suffix. */
export const MAX_NAMESPACE_PREFIX = 40;
const NAMESPACE_PREFIX = /^[a-z0-9][a-z0-9-]*$/;
const TEMPLATE_VARIABLE = /\{\{\s*([^}]*?)\s*\}\}/g;
const HOST_TEMPLATE_VARIABLES = new Set([".SandboxID", ".Namespace"]);

/**
 * The Profile reference's validation rules, for a structured spec: a
 * profile's own, a runner's zone defaults, or a merged (layered) spec.
 * Pure: returns every violation, each with the path of its field.
 */
export function profileSpecViolations(spec: ProfileSpec, basePath = "spec"): FieldViolation[] {
  const out: FieldViolation[] = [];
  const at = (...path: (string | number)[]) => joinPath(basePath, path);

  if (spec.resourceDefaults)
    out.push(...resourceViolations(spec.resourceDefaults, at("resourceDefaults")));
  checkStrings(spec.instanceTypes ?? [], at("instanceTypes"), out);
  checkLabels(spec.nodeSelector ?? {}, at("nodeSelector"), out);
  if (spec.namespace) out.push(...namespaceViolations(spec.namespace, at("namespace")));
  if (spec.network) out.push(...networkViolations(spec.network, at("network")));
  if (spec.pod) out.push(...podViolations(spec.pod, at("pod")));

  if (
    (spec.instanceTypes?.length ?? 0) > 0 &&
    (spec.pod?.placement?.instanceTypes?.length ?? 0) > 0
  ) {
    out.push({
      field: at("pod", "placement", "instanceTypes"),
      description: `instance types set twice: also given as ${at("instanceTypes")}; use one of the two`,
    });
  }
  return out;
}

export function resourceViolations(
  resources: ResourceDefaults,
  basePath: string,
): FieldViolation[] {
  const out: FieldViolation[] = [];
  const values: Record<string, bigint> = {};
  for (const [key, text] of Object.entries(resources)) {
    if (text === undefined || text === "") continue;
    const value = quantityMillis(text);
    if (value === undefined) {
      out.push({
        field: `${basePath}.${key}`,
        description: `must be a Kubernetes quantity such as 500m, 2 or 4Gi, found ${JSON.stringify(text)}`,
      });
    } else if (value < 0n) {
      out.push({
        field: `${basePath}.${key}`,
        description: `must not be negative, found ${JSON.stringify(text)}`,
      });
    } else {
      values[key] = value;
    }
  }
  for (const [request, limit] of [
    ["cpuRequest", "cpuLimit"],
    ["memoryRequest", "memoryLimit"],
  ] as const) {
    const r = values[request];
    const l = values[limit];
    if (r !== undefined && l !== undefined && r > l) {
      out.push({
        field: `${basePath}.${request}`,
        description: `must not exceed ${limit} (${resources[limit]}), found ${resources[request]}`,
      });
    }
  }
  return out;
}

function namespaceViolations(ns: NamespaceConfig, basePath: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  const strategy = ns.strategy || "per-user";
  if (strategy === "static") {
    if (!ns.staticNamespace) {
      out.push({
        field: `${basePath}.staticNamespace`,
        description: "required when strategy is static",
      });
    }
  }
  if (ns.staticNamespace) {
    const problem = dns1123LabelProblem(ns.staticNamespace);
    if (problem) out.push({ field: `${basePath}.staticNamespace`, description: problem });
  }
  if (ns.namespacePrefix) {
    const prefix = ns.namespacePrefix;
    if (prefix.length > MAX_NAMESPACE_PREFIX) {
      out.push({
        field: `${basePath}.namespacePrefix`,
        description: `must be at most ${MAX_NAMESPACE_PREFIX} characters so generated names fit in 63, found ${prefix.length}`,
      });
    } else if (!NAMESPACE_PREFIX.test(prefix)) {
      out.push({
        field: `${basePath}.namespacePrefix`,
        description: `must be lowercase letters, digits and '-', starting with a letter or digit (it begins every generated namespace name), found ${JSON.stringify(prefix)}`,
      });
    }
  }
  checkLabels(ns.labels ?? {}, `${basePath}.labels`, out);
  checkAnnotations(ns.annotations ?? {}, `${basePath}.annotations`, out);
  return out;
}

function networkViolations(network: NetworkConfig, basePath: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  const egress = network.egress;
  if (egress) {
    const modes = egress.modes ?? {};
    const names = Object.keys(modes);
    const path = `${basePath}.egress`;
    if (names.length === 0) {
      out.push({
        field: `${path}.modes`,
        description: "must define at least one mode when egress is present",
      });
    }
    if (egress.default) {
      if (names.length > 0 && !(egress.default in modes)) {
        out.push({
          field: `${path}.default`,
          description: `'${egress.default}' is not one of the modes: ${names.join(", ")}`,
        });
      }
    } else if (names.length > 1) {
      out.push({
        field: `${path}.default`,
        description: `required when more than one mode is defined (modes: ${names.join(", ")})`,
      });
    }
    for (const [name, mode] of Object.entries(modes)) {
      const modePath = joinPath(path, ["modes", name]);
      if (name.trim() === "")
        out.push({ field: modePath, description: "mode name must not be empty" });
      const cidrs = mode.cidrs ?? [];
      if (mode.type === "allowlist") {
        if (cidrs.length === 0) {
          out.push({
            field: `${modePath}.cidrs`,
            description: "required (at least one CIDR) when type is allowlist",
          });
        }
        cidrs.forEach((cidr, i) => {
          if (!isCidr(cidr)) {
            out.push({
              field: `${modePath}.cidrs[${i}]`,
              description: `must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32, found ${JSON.stringify(cidr)}`,
            });
          }
        });
      } else if (cidrs.length > 0) {
        out.push({
          field: `${modePath}.cidrs`,
          description: `only allowed when type is allowlist, found type ${mode.type}`,
        });
      }
    }
  }
  for (const [name, level] of Object.entries(network.ingress ?? {})) {
    const levelPath = joinPath(basePath, ["ingress", name]);
    if (name.trim() === "")
      out.push({ field: levelPath, description: "exposure level name must not be empty" });
    if (name === "none") {
      out.push({
        field: levelPath,
        description: "'none' is reserved and cannot name an exposure level",
      });
    }
    for (const which of ["serviceSelectorAnnotation", "dnsAnnotation"] as const) {
      const pair = level.service?.[which];
      if (pair) {
        const problem = qualifiedKeyProblem(pair.key);
        if (problem) out.push({ field: `${levelPath}.service.${which}.key`, description: problem });
      }
    }
    if (level.ingress) {
      if (!level.ingress.controllerName) {
        out.push({
          field: `${levelPath}.ingress.controllerName`,
          description: "required when ingress is set",
        });
      }
      if (!level.service) {
        out.push({
          field: `${levelPath}.service`,
          description: "required when ingress is set: the Ingress routes to the level's Service",
        });
      }
      const template = level.ingress.template;
      if (!template) {
        out.push({
          field: `${levelPath}.ingress.template`,
          description: "required when ingress is set",
        });
      } else {
        const problem = hostTemplateProblem(template);
        if (problem) out.push({ field: `${levelPath}.ingress.template`, description: problem });
      }
    }
    if (
      level.expectsExternalAddress &&
      level.service?.serviceType !== "LoadBalancer" &&
      !level.ingress
    ) {
      out.push({
        field: `${levelPath}.expectsExternalAddress`,
        description: `needs a LoadBalancer service or an ingress to receive an external address, found serviceType ${level.service?.serviceType ?? "unset"}`,
      });
    }
  }
  return out;
}

/** Go-template hostnames may use only {{.SandboxID}} and {{.Namespace}}, and must render a DNS name. */
export function hostTemplateProblem(template: string): string | undefined {
  for (const match of template.matchAll(TEMPLATE_VARIABLE)) {
    const variable = match[1] ?? "";
    if (!HOST_TEMPLATE_VARIABLES.has(variable)) {
      return `unknown template variable {{${variable}}}; use {{.SandboxID}} or {{.Namespace}}`;
    }
  }
  const sample = template.replace(TEMPLATE_VARIABLE, "x0");
  const labels = sample.split(".");
  if (
    sample.length > 253 ||
    labels.some((l) => dns1123LabelProblem(l) !== undefined && l !== "*")
  ) {
    return `must render a DNS hostname (lowercase labels separated by dots), found ${JSON.stringify(template)}`;
  }
  return undefined;
}

function podViolations(pod: PodTemplate, basePath: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  checkLabels(pod.metadata?.labels ?? {}, `${basePath}.metadata.labels`, out);
  checkAnnotations(pod.metadata?.annotations ?? {}, `${basePath}.metadata.annotations`, out);
  checkStrings(pod.placement?.instanceTypes ?? [], `${basePath}.placement.instanceTypes`, out);
  if (pod.spec) out.push(...podSpecViolations(pod.spec, `${basePath}.spec`));
  return out;
}

/**
 * An address and a prefix length, as Go's net.ParseCIDR reads them: IPv4 in
 * four decimal parts (not ipaddr.js's shorthands such as `10/8`, `10.0.0/8`,
 * hex or octal parts), IPv6 without a zone.
 */
export function isCidr(text: string): boolean {
  const parts = text.split("/");
  if (parts.length !== 2) return false;
  const [address = "", prefix = ""] = parts;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  const bits = Number(prefix);
  if (ipaddr.IPv4.isValidFourPartDecimal(address)) return bits <= 32;
  if (ipaddr.IPv6.isValid(address) && !address.includes("%")) return bits <= 128;
  return false;
}

function checkStrings(values: string[], basePath: string, out: FieldViolation[]): void {
  values.forEach((v, i) => {
    if (v.trim() === "") out.push({ field: `${basePath}[${i}]`, description: "must not be empty" });
  });
}

function checkLabels(
  labels: Record<string, string>,
  basePath: string,
  out: FieldViolation[],
): void {
  for (const [key, value] of Object.entries(labels)) {
    const problem = qualifiedKeyProblem(key) ?? labelValueProblem(value);
    if (problem) out.push({ field: joinPath(basePath, [key]), description: problem });
  }
}

function checkAnnotations(
  annotations: Record<string, string>,
  basePath: string,
  out: FieldViolation[],
): void {
  for (const key of Object.keys(annotations)) {
    const problem = qualifiedKeyProblem(key);
    if (problem) out.push({ field: joinPath(basePath, [key]), description: problem });
  }
}
