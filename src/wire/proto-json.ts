import * as z from "zod";
import { type FieldViolation, invalidArgument } from "../errors.js";

export type PathSegment = string | number;

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `["spec","modes","allow","cidrs",0]` → `spec.modes.allow.cidrs[0]`; odd map keys are quoted. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else {
      const key = String(segment);
      if (PLAIN_KEY.test(key)) out += out === "" ? key : `.${key}`;
      else out += `[${JSON.stringify(key)}]`;
    }
  }
  return out;
}

export function joinPath(base: string, path: readonly PropertyKey[]): string {
  const tail = formatPath(path);
  if (base === "") return tail;
  if (tail === "") return base;
  return tail.startsWith("[") ? base + tail : `${base}.${tail}`;
}

export function snakeToCamel(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** How a found value is shown in a message: `string "abc"`, `number 5`, `an object`. */
export function describeFound(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return `string ${JSON.stringify(shown)}`;
  }
  return `${typeof value} ${String(value)}`;
}

/**
 * Proto3 JSON accepts a message's field names in lowerCamelCase and in
 * snake_case. Schemas are written in camelCase; this renames snake_case keys
 * of *message* objects (never of maps such as labels) by walking the value
 * alongside its schema. A field given under both spellings is a violation.
 */
export function normalizeProtoKeys(
  schema: z.ZodType,
  value: unknown,
  path: PathSegment[],
  violations: FieldViolation[],
  basePath = "",
): unknown {
  const s = unwrap(schema);
  if (s instanceof z.ZodObject && isPlainObject(value)) {
    const shape = s.shape as Record<string, z.ZodType>;
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) {
      if (key === UNSAFE_KEY) {
        violations.push(unsafeKeyViolation(joinPath(basePath, [...path, key])));
        continue;
      }
      let name = key;
      if (!(key in shape)) {
        const camel = snakeToCamel(key);
        if (camel !== key && camel in shape) name = camel;
      }
      if (name in out) {
        violations.push({
          field: joinPath(basePath, [...path, name]),
          description: `given twice (as ${name} and ${snakeCase(name)})`,
        });
        continue;
      }
      const fieldSchema = shape[name];
      out[name] = fieldSchema
        ? normalizeProtoKeys(fieldSchema, child, [...path, name], violations, basePath)
        : child;
    }
    return out;
  }
  if (s instanceof z.ZodRecord && isPlainObject(value)) {
    const valueSchema = s.valueType as z.ZodType;
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) {
      if (key === UNSAFE_KEY) {
        violations.push(unsafeKeyViolation(joinPath(basePath, [...path, key])));
        continue;
      }
      out[key] = normalizeProtoKeys(valueSchema, child, [...path, key], violations, basePath);
    }
    return out;
  }
  if (s instanceof z.ZodArray && Array.isArray(value)) {
    const element = s.element as z.ZodType;
    return value.map((item, i) =>
      normalizeProtoKeys(element, item, [...path, i], violations, basePath),
    );
  }
  return value;
}

/** Assigning this key sets an object's prototype instead, so it would silently vanish. */
const UNSAFE_KEY = "__proto__";

function unsafeKeyViolation(field: string): FieldViolation {
  return { field, description: `the key ${UNSAFE_KEY} is not accepted` };
}

function snakeCase(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s: z.ZodType = schema;
  for (;;) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodNullable || s instanceof z.ZodDefault) {
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodPipe) {
      s = s.in as z.ZodType;
    } else if (s instanceof z.ZodLazy) {
      s = s.unwrap() as z.ZodType;
    } else return s;
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Turns zod issues into field violations whose messages say what was expected and found. */
export function issuesToViolations(
  issues: readonly z.core.$ZodIssue[],
  input: unknown,
  basePath: string,
): FieldViolation[] {
  const out: FieldViolation[] = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        out.push({ field: joinPath(basePath, [...issue.path, key]), description: "unknown field" });
      }
      continue;
    }
    if (issue.code === "invalid_union" && issue.errors.length > 0) {
      // Report the branch that got furthest rather than "invalid input".
      const best = [...issue.errors].sort((a, b) => depth(b) - depth(a))[0] ?? [];
      out.push(...issuesToViolations(best, input, basePath));
      continue;
    }
    const found = valueAt(input, issue.path);
    let description = issue.message;
    if (issue.code === "invalid_type") {
      description =
        found === undefined
          ? `required, expected ${issue.expected}`
          : `expected ${issue.expected}, found ${describeFound(found)}`;
    } else if (issue.code === "invalid_value") {
      const expected = `one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
      description =
        found === undefined
          ? `required, expected ${expected}`
          : `expected ${expected}, found ${describeFound(found)}`;
    }
    out.push({ field: joinPath(basePath, issue.path), description });
  }
  return out;
}

function depth(issues: readonly z.core.$ZodIssue[]): number {
  return Math.max(0, ...issues.map((i) => i.path.length));
}

export function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let current = input;
  for (const segment of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<PropertyKey, unknown>)[segment];
  }
  return current;
}

/**
 * Normalizes proto3 JSON names, then parses with the schema. Throws one
 * INVALID_ARGUMENT listing every violation, each named by its full path.
 */
export function parseMessage<S extends z.ZodType>(
  schema: S,
  value: unknown,
  basePath = "",
): z.output<S> {
  const violations: FieldViolation[] = [];
  const normalized = normalizeProtoKeys(schema, value, [], violations, basePath);
  const result = schema.safeParse(normalized);
  if (!result.success)
    violations.push(...issuesToViolations(result.error.issues, normalized, basePath));
  if (violations.length > 0) throw invalidArgument(violations);
  return result.data as z.output<S>;
}
