import { PodSpec } from "kubernetes-models/v1/PodSpec";
import type { FieldViolation } from "../errors.js";
import { describeFound, joinPath, valueAt } from "../wire/proto-json.js";

interface SchemaError {
  instancePath: string;
  keyword: string;
  message?: string;
  params?: Record<string, unknown>;
}

/**
 * Checks a *partial* PodSpec against the Kubernetes PodSpec schema: wrong
 * types and malformed values are refused with their path; missing required
 * fields are not, because the profile only supplies the parts it changes
 * (a container with no name patches the main container).
 */
export function podSpecViolations(
  partial: Record<string, unknown>,
  basePath: string,
): FieldViolation[] {
  try {
    new PodSpec(partial as unknown as ConstructorParameters<typeof PodSpec>[0]).validate();
    return [];
  } catch (error) {
    const errors = (error as { errors?: SchemaError[] }).errors;
    if (!Array.isArray(errors)) throw error;
    const byPath = new Map<string, string[]>();
    for (const e of errors) {
      // "oneOf" merely repeats its branches' failures (e.g. quantity: number or string).
      if (e.keyword === "required" || e.keyword === "oneOf") continue;
      const messages = byPath.get(e.instancePath) ?? [];
      messages.push(e.message ?? e.keyword);
      byPath.set(e.instancePath, messages);
    }
    return [...byPath].map(([pointer, messages]) => {
      const path = pointerSegments(pointer);
      const found = valueAt(partial, path);
      const shown = found === undefined ? "" : `, found ${describeFound(found)}`;
      return { field: joinPath(basePath, path), description: `${describe(messages)}${shown}` };
    });
  }
}

function describe(messages: string[]): string {
  const unique = [...new Set(messages)];
  if (unique.some((m) => m.includes('"quantity"'))) {
    return "must be a Kubernetes quantity such as 500m, 2 or 4Gi";
  }
  return unique.join("; ");
}

function pointerSegments(pointer: string): (string | number)[] {
  if (pointer === "") return [];
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}
