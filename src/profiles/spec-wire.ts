import { type FieldViolation, invalidArgument } from "../errors.js";
import {
  isPlainObject,
  issuesToViolations,
  joinPath,
  normalizeProtoKeys,
} from "../wire/proto-json.js";
import { PayloadSyntaxError, parseStrictJson } from "../wire/strict-json.js";
import {
  type ProfileSpec,
  ProfileSpecInputSchema,
  ProfileSpecSchema,
  type ProfileSpecWire,
  RESOURCE_KEYS,
  SUB_BLOCKS,
} from "./spec-schema.js";

/**
 * Reads a ProfileSpec given in either wire form (structured sub-blocks or
 * their JSON-string aliases, camelCase or snake_case names) into the
 * canonical structured form. Shape problems only; see spec-rules.ts for the
 * rest. Violations are pushed, not thrown, so callers can report them all.
 *
 * Empty strings, lists and maps mean "unset", as in proto3: a `get -o json`
 * answer (which carries every field at its default) can be sent back as is.
 */
export function readProfileSpec(
  raw: unknown,
  basePath: string,
  violations: FieldViolation[],
): ProfileSpec {
  if (!isPlainObject(raw)) {
    violations.push({ field: basePath, description: `expected an object, found ${kindOf(raw)}` });
    return {};
  }
  const before = violations.length;
  const normalized = normalizeProtoKeys(
    ProfileSpecInputSchema,
    raw,
    [],
    violations,
    basePath,
  ) as Record<string, unknown>;
  const structured: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(normalized)) {
    const block = SUB_BLOCKS.find((b) => b.alias === key);
    if (!block) {
      structured[key] = value;
      continue;
    }
    if (block.key in normalized) {
      violations.push({
        field: joinPath(basePath, [key]),
        description: `cannot be combined with ${joinPath(basePath, [block.key])}; give one of the two`,
      });
      continue;
    }
    const decoded = decodeJsonAlias(value, joinPath(basePath, [key]), violations);
    if (decoded !== undefined) {
      structured[block.key] = normalizeProtoKeys(
        block.schema,
        decoded,
        [block.key],
        violations,
        basePath,
      );
    }
  }
  if (violations.length > before) return {};
  const result = ProfileSpecSchema.safeParse(structured);
  if (!result.success) {
    violations.push(...issuesToViolations(result.error.issues, structured, basePath));
    return {};
  }
  return canonicalSpec(result.data);
}

function decodeJsonAlias(
  value: unknown,
  field: string,
  violations: FieldViolation[],
): Record<string, unknown> | undefined {
  if (typeof value !== "string") {
    violations.push({
      field,
      description: `expected a JSON-encoded string, found ${kindOf(value)}`,
    });
    return undefined;
  }
  if (value.trim() === "") return undefined;
  let parsed: unknown;
  try {
    parsed = parseStrictJson(value);
  } catch (error) {
    const reason = error instanceof PayloadSyntaxError ? error.message : String(error);
    violations.push({ field, description: `must hold a JSON object: ${reason}` });
    return undefined;
  }
  if (!isPlainObject(parsed)) {
    violations.push({ field, description: `must hold a JSON object, found ${kindOf(parsed)}` });
    return undefined;
  }
  return parsed;
}

export function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return typeof value;
}

/** Drops proto3 default values so that "unset" has one spelling. */
export function canonicalSpec(spec: ProfileSpec): ProfileSpec {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(spec)) {
    if (key === "resourceDefaults" && isPlainObject(value)) {
      const kept = Object.fromEntries(
        Object.entries(value).filter(([, v]) => typeof v === "string" && v !== ""),
      );
      if (Object.keys(kept).length > 0) out[key] = kept;
    } else if (key === "nodeSelector" && isPlainObject(value)) {
      // A proto3 map: empty means unset (sub-blocks are messages, where {} is a value).
      if (Object.keys(value).length > 0) out[key] = value;
    } else if (!isEmptyValue(value)) {
      out[key] = value;
    }
  }
  return out as ProfileSpec;
}

function isEmptyValue(value: unknown): boolean {
  if (value === undefined || value === null || value === "") return true;
  if (Array.isArray(value)) return value.length === 0;
  return false;
}

/** Same as readProfileSpec, but throws INVALID_ARGUMENT when anything is wrong. */
export function parseProfileSpec(raw: unknown, basePath = "spec"): ProfileSpec {
  const violations: FieldViolation[] = [];
  const spec = readProfileSpec(raw, basePath, violations);
  if (violations.length > 0) throw invalidArgument(violations);
  return spec;
}

/** The proto-facing answer: sub-blocks as JSON strings, every field present. */
export function toWireSpec(spec: ProfileSpec): ProfileSpecWire {
  const resources = spec.resourceDefaults ?? {};
  return {
    containerImage: spec.containerImage ?? "",
    runtimeClass: spec.runtimeClass ?? "",
    resourceDefaults: Object.fromEntries(
      RESOURCE_KEYS.map((k) => [k, resources[k] ?? ""]),
    ) as ProfileSpecWire["resourceDefaults"],
    instanceTypes: spec.instanceTypes ?? [],
    nodeSelector: spec.nodeSelector ?? {},
    tags: spec.tags ?? [],
    namespaceConfigJson: spec.namespace ? JSON.stringify(spec.namespace) : "",
    networkConfigJson: spec.network ? JSON.stringify(spec.network) : "",
    podTemplateJson: spec.pod ? JSON.stringify(spec.pod) : "",
  };
}
