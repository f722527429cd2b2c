/** Kubernetes naming rules that profile fields must satisfy before anything reaches a cluster. */

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Returns why `name` is not a DNS-1123 label, or undefined when it is one. */
export function dns1123LabelProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (name.length > 63) return `must be at most 63 characters, found ${name.length}`;
  if (!DNS1123_LABEL.test(name)) {
    return `must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit), found ${JSON.stringify(name)}`;
  }
  return undefined;
}

/** Organization and user ids: DNS-1123 labels without `--`, which namespace names use as a separator. */
export function resourceIdProblem(id: string): string | undefined {
  const problem = dns1123LabelProblem(id);
  if (problem) return problem;
  if (id.includes("--")) return `must not contain '--', found ${JSON.stringify(id)}`;
  return undefined;
}

/** Label and annotation keys: an optional DNS subdomain prefix and a qualified name. */
export function qualifiedKeyProblem(key: string): string | undefined {
  const slash = key.indexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    return `key prefix must be a DNS subdomain, found ${JSON.stringify(prefix)}`;
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return `key must be a qualified name (at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric), found ${JSON.stringify(key)}`;
  }
  return undefined;
}

export function labelValueProblem(value: string): string | undefined {
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    return `value must be a label value (at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric), found ${JSON.stringify(value)}`;
  }
  return undefined;
}
