import * as z from "zod";
import { type FieldViolation, invalidArgument } from "../errors.js";
import { isPlainObject, issuesToViolations, normalizeProtoKeys } from "../wire/proto-json.js";
import { profileSpecViolations } from "./spec-rules.js";
import { type ProfileSpec, ProfileSpecInputSchema, ProfileSpecWireSchema } from "./spec-schema.js";
import { kindOf, readProfileSpec, toWireSpec } from "./spec-wire.js";

const OUTPUT_ONLY = ["id", "organizationId", "createdAt", "updatedAt"] as const;
export const MAX_DISPLAY_NAME = 63;

const labelsSchema = z.record(z.string(), z.string());

const topLevelShape = {
  id: z.string().optional(),
  organizationId: z.string().optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
  displayName: z.string(),
  description: z.string().optional(),
  labels: labelsSchema.optional(),
};

/** What a request may carry; `spec` is read separately so its errors carry full paths. */
const ProfileTemplateTopSchema = z.strictObject({ ...topLevelShape, spec: z.unknown().optional() });

/** Documented request shape (OpenAPI). */
export const ProfileTemplateInputSchema = z
  .strictObject({ ...topLevelShape, spec: ProfileSpecInputSchema.optional() })
  .meta({ id: "ProfileTemplateInput" });

export const ProfileTemplateWireSchema = z
  .strictObject({
    id: z.string(),
    organizationId: z.string(),
    displayName: z.string(),
    description: z.string(),
    labels: labelsSchema,
    spec: ProfileSpecWireSchema,
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: "ProfileTemplate" });

export type ProfileTemplateWire = z.infer<typeof ProfileTemplateWireSchema>;

export interface ProfileTemplate {
  id: string;
  organizationId: string;
  displayName: string;
  description: string;
  labels: Record<string, string>;
  spec: ProfileSpec;
  createdAt: Date;
  updatedAt: Date;
}

export interface ProfileTemplateFields {
  displayName: string;
  description: string;
  labels: Record<string, string>;
  spec: ProfileSpec;
}

export type ProfileWriteMode = { kind: "create" } | { kind: "edit"; id: string };

/**
 * Reads a profile template from a create or edit body: structured or
 * proto-facing, camelCase or snake_case. Every violation of the Profile
 * reference is reported at once, each naming its field.
 */
export function parseProfileTemplate(raw: unknown, mode: ProfileWriteMode): ProfileTemplateFields {
  const violations: FieldViolation[] = [];
  if (!isPlainObject(raw)) {
    throw invalidArgument([
      { field: "profileTemplate", description: `expected an object, found ${kindOf(raw)}` },
    ]);
  }
  const normalized = normalizeProtoKeys(ProfileTemplateTopSchema, raw, [], violations);
  const parsed = ProfileTemplateTopSchema.safeParse(normalized);
  if (!parsed.success) {
    violations.push(...issuesToViolations(parsed.error.issues, normalized, ""));
    throw invalidArgument(violations);
  }
  const top = parsed.data;

  for (const field of OUTPUT_ONLY) {
    const value = top[field];
    if (value === undefined) continue;
    if (mode.kind === "create") {
      violations.push({
        field,
        description: "output-only: the server assigns it, so it may not be set on create",
      });
    } else if (field === "id" && value !== "" && value !== mode.id) {
      violations.push({
        field,
        description: `must be omitted or equal the profile id in the path (${mode.id}), found ${value}`,
      });
    }
  }

  const displayName = top.displayName;
  if (displayName.trim() === "") {
    violations.push({ field: "displayName", description: "required, must not be empty" });
  } else if (displayName.length > MAX_DISPLAY_NAME || displayName.trim() !== displayName) {
    violations.push({
      field: "displayName",
      description: `must be 1-${MAX_DISPLAY_NAME} characters without surrounding spaces, found ${JSON.stringify(displayName)}`,
    });
  }

  let spec: ProfileSpec = {};
  if (top.spec === undefined) {
    violations.push({
      field: "spec",
      description:
        "required (an empty spec {} inherits every field from the runner's zone defaults)",
    });
  } else {
    const before = violations.length;
    spec = readProfileSpec(top.spec, "spec", violations);
    if (violations.length === before) violations.push(...profileSpecViolations(spec, "spec"));
  }
  if (violations.length > 0) throw invalidArgument(violations);
  return { displayName, description: top.description ?? "", labels: top.labels ?? {}, spec };
}

export function toWireProfile(p: ProfileTemplate): ProfileTemplateWire {
  return {
    id: p.id,
    organizationId: p.organizationId,
    displayName: p.displayName,
    description: p.description,
    labels: p.labels,
    spec: toWireSpec(p.spec),
    createdAt: p.createdAt.toISOString(),
    updatedAt: p.updatedAt.toISOString(),
  };
}
