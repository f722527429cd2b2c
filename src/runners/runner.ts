import * as z from "zod";
import { AppError, type FieldViolation, invalidArgument } from "../errors.js";
import { layerSpecs } from "../profiles/layering.js";
import { profileSpecViolations } from "../profiles/spec-rules.js";
import {
  type ProfileSpec,
  ProfileSpecInputSchema,
  ProfileSpecWireSchema,
} from "../profiles/spec-schema.js";
import { kindOf, readProfileSpec, toWireSpec } from "../profiles/spec-wire.js";
import { dns1123LabelProblem } from "../resources/names.js";
import { isPlainObject, issuesToViolations, normalizeProtoKeys } from "../wire/proto-json.js";
import { PayloadSyntaxError, parseStrictJson } from "../wire/strict-json.js";

export const RELEASE_CHANNELS = ["RELEASE_CHANNEL_STABLE", "RELEASE_CHANNEL_RAPID"] as const;
export type ReleaseChannel = (typeof RELEASE_CHANNELS)[number];
export const CONNECTION_STATUSES = ["CONNECTED", "DISCONNECTED"] as const;
export type ConnectionStatus = (typeof CONNECTION_STATUSES)[number];
export const MAX_PROFILE_NAME = 63;

const IdentitySchema = z
  .strictObject({ zone: z.string(), clusterId: z.string().optional() })
  .meta({ id: "RunnerIdentity" });

const ManagedSpecSchema = z
  .strictObject({
    releaseChannel: z.enum([...RELEASE_CHANNELS, "RELEASE_CHANNEL_UNSPECIFIED"]).optional(),
  })
  .meta({ id: "ManagedSpec" });

/** Shells a binding may keep warm: each holds a uid, a cgroup and a network namespace. */
export const MAX_WARM_POOL_SIZE = 1000;

const BindingInputSchema = z
  .strictObject({
    profileTemplateId: z.string(),
    profileName: z.string().optional(),
    isDefault: z.boolean().optional(),
    overridesJson: z.string().optional(),
    /** Paddock's own: prepared shells kept ready for this binding's sandboxes (default 0). */
    warmPoolSize: z.number().int().min(0).max(MAX_WARM_POOL_SIZE).optional(),
  })
  .meta({ id: "ProfileBindingInput" });

const OUTPUT_ONLY = [
  "organizationId",
  "connectionStatus",
  "lastHeartbeatAt",
  "backend",
  "agentVersion",
  "createdAt",
  "updatedAt",
] as const;

const runnerShape = {
  runnerId: z.string().optional(),
  displayName: z.string().optional(),
  identity: IdentitySchema.optional(),
  managedSpec: ManagedSpecSchema.optional(),
  profileBindings: z.array(BindingInputSchema).optional(),
  organizationId: z.string().optional(),
  connectionStatus: z.string().optional(),
  lastHeartbeatAt: z.string().nullable().optional(),
  backend: z.string().optional(),
  agentVersion: z.string().optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
};

const RunnerTopSchema = z.strictObject({ ...runnerShape, zoneDefaults: z.unknown().optional() });

export const RunnerInputSchema = z
  .strictObject({ ...runnerShape, zoneDefaults: ProfileSpecInputSchema.optional() })
  .meta({ id: "RunnerInput" });

export const CreateRunnerRequestSchema = z
  .strictObject({ runnerId: z.string().optional(), runner: RunnerInputSchema })
  .meta({ id: "CreateRunnerRequest" });

export const ProfileBindingWireSchema = z
  .strictObject({
    profileTemplateId: z.string(),
    profileName: z.string(),
    isDefault: z.boolean(),
    overridesJson: z.string(),
    /** Present only when set: answers for bindings without a pool keep the CoreWeave shape. */
    warmPoolSize: z.number().optional(),
  })
  .meta({ id: "ProfileBinding" });

export const RunnerWireSchema = z
  .strictObject({
    runnerId: z.string(),
    organizationId: z.string(),
    displayName: z.string(),
    identity: z.strictObject({ zone: z.string(), clusterId: z.string() }),
    managedSpec: z.strictObject({ releaseChannel: z.enum(RELEASE_CHANNELS) }),
    profileBindings: z.array(ProfileBindingWireSchema),
    zoneDefaults: ProfileSpecWireSchema,
    connectionStatus: z.enum(CONNECTION_STATUSES),
    lastHeartbeatAt: z.string().nullable(),
    backend: z.string(),
    agentVersion: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: "Runner" });

export type RunnerWire = z.infer<typeof RunnerWireSchema>;

/** A binding as written: `profileName` may be empty (then the template's display name applies). */
export interface BindingInput {
  profileTemplateId: string;
  profileName: string;
  isDefault: boolean;
  overridesJson: string;
  /** Prepared shells kept ready for this binding's sandboxes; absent means none. */
  warmPoolSize?: number;
}

export interface Binding extends BindingInput {
  overrides: ProfileSpec;
}

export interface RunnerFields {
  displayName?: string;
  identity?: { zone: string; clusterId: string };
  releaseChannel?: ReleaseChannel;
  bindings?: BindingInput[];
  zoneDefaults?: ProfileSpec;
}

export interface Runner {
  organizationId: string;
  runnerId: string;
  displayName: string;
  zone: string;
  clusterId: string;
  releaseChannel: ReleaseChannel;
  bindings: Binding[];
  zoneDefaults: ProfileSpec;
  connectionStatus: ConnectionStatus;
  lastHeartbeatAt: Date | null;
  backend: string;
  agentVersion: string;
  createdAt: Date;
  updatedAt: Date;
}

/** The parts of a profile that binding rules look at. */
export interface BoundProfile {
  id: string;
  displayName: string;
  spec: ProfileSpec;
}

export function runnerIdProblem(id: string): string | undefined {
  return dns1123LabelProblem(id);
}

/**
 * Reads a create body (`{"runnerId", "runner"}`) into the runner id and fields.
 * Output-only fields are refused on create; on edit they are ignored, so a
 * `get -o json` answer can be edited and sent back.
 */
export function parseCreateRunner(raw: unknown): { runnerId: string; fields: RunnerFields } {
  if (!isPlainObject(raw))
    throw invalidArgument([
      { field: "runner", description: `expected an object, found ${kindOf(raw)}` },
    ]);
  const violations: FieldViolation[] = [];
  const outer = normalizeProtoKeys(
    z.strictObject({ runnerId: z.string().optional(), runner: z.unknown().optional() }),
    raw,
    [],
    violations,
  ) as Record<string, unknown>;
  for (const key of Object.keys(outer)) {
    if (key !== "runnerId" && key !== "runner")
      violations.push({ field: key, description: "unknown field" });
  }
  const outerId = outer.runnerId;
  if (outerId !== undefined && typeof outerId !== "string") {
    violations.push({
      field: "runnerId",
      description: `expected string, found ${kindOf(outerId)}`,
    });
  }
  if (outer.runner === undefined) violations.push({ field: "runner", description: "required" });
  if (violations.length > 0) throw invalidArgument(violations);

  const { fields, innerRunnerId } = parseRunnerFields(outer.runner, "create");
  const runnerId = (typeof outerId === "string" && outerId) || innerRunnerId || "";
  if (typeof outerId === "string" && outerId && innerRunnerId && innerRunnerId !== outerId) {
    violations.push({
      field: "runnerId",
      description: `must equal runnerId (${outerId}), found ${innerRunnerId}`,
    });
  }
  if (runnerId === "") violations.push({ field: "runnerId", description: "required" });
  else {
    const problem = runnerIdProblem(runnerId);
    if (problem) violations.push({ field: "runnerId", description: problem });
  }
  if (!fields.identity) violations.push({ field: "identity.zone", description: "required" });
  if (violations.length > 0) throw invalidArgument(violations);
  return { runnerId, fields };
}

export function parseEditRunner(raw: unknown, runnerId: string): RunnerFields {
  if (!isPlainObject(raw))
    throw invalidArgument([
      { field: "runner", description: `expected an object, found ${kindOf(raw)}` },
    ]);
  let body: unknown = raw;
  if ("runner" in raw) {
    const extra = Object.keys(raw).find((k) => k !== "runner");
    if (extra) throw invalidArgument([{ field: extra, description: "unknown field" }]);
    body = raw.runner;
  }
  const { fields, innerRunnerId } = parseRunnerFields(body, "edit");
  if (innerRunnerId && innerRunnerId !== runnerId) {
    throw invalidArgument([
      {
        field: "runnerId",
        description: `must be omitted or equal the runner id in the path (${runnerId}), found ${innerRunnerId}`,
      },
    ]);
  }
  return fields;
}

function parseRunnerFields(
  raw: unknown,
  mode: "create" | "edit",
): { fields: RunnerFields; innerRunnerId: string | undefined } {
  const violations: FieldViolation[] = [];
  if (!isPlainObject(raw))
    throw invalidArgument([
      { field: "runner", description: `expected an object, found ${kindOf(raw)}` },
    ]);
  const normalized = normalizeProtoKeys(RunnerTopSchema, raw, [], violations);
  const parsed = RunnerTopSchema.safeParse(normalized);
  if (!parsed.success) {
    violations.push(...issuesToViolations(parsed.error.issues, normalized, ""));
    throw invalidArgument(violations);
  }
  const r = parsed.data;
  if (mode === "create") {
    for (const field of OUTPUT_ONLY) {
      if (r[field] !== undefined) {
        violations.push({
          field: field,
          description: "output-only: the server sets it, so it may not be set on create",
        });
      }
    }
  }
  const fields: RunnerFields = {};
  if (r.displayName !== undefined) fields.displayName = r.displayName;
  if (r.identity !== undefined) {
    if (r.identity.zone.trim() === "")
      violations.push({ field: "identity.zone", description: "required, must not be empty" });
    fields.identity = { zone: r.identity.zone, clusterId: r.identity.clusterId ?? "" };
  }
  if (r.managedSpec !== undefined) {
    const channel = r.managedSpec.releaseChannel;
    fields.releaseChannel =
      channel === "RELEASE_CHANNEL_RAPID" ? channel : "RELEASE_CHANNEL_STABLE";
  }
  if (r.profileBindings !== undefined) {
    fields.bindings = r.profileBindings.map((b) => ({
      profileTemplateId: b.profileTemplateId,
      profileName: b.profileName ?? "",
      isDefault: b.isDefault ?? false,
      overridesJson: b.overridesJson ?? "",
      warmPoolSize: b.warmPoolSize ?? 0,
    }));
  }
  if (r.zoneDefaults !== undefined && r.zoneDefaults !== null) {
    const before = violations.length;
    const spec = readProfileSpec(r.zoneDefaults, "zoneDefaults", violations);
    if (violations.length === before)
      violations.push(...profileSpecViolations(spec, "zoneDefaults"));
    fields.zoneDefaults = spec;
  }
  if (violations.length > 0) throw invalidArgument(violations);
  return { fields, innerRunnerId: r.runnerId || undefined };
}

/** The name sandboxes use to pick a binding: its alias, else the template's display name. */
export function effectiveProfileName(
  binding: BindingInput,
  profile: BoundProfile | undefined,
): string {
  return binding.profileName || profile?.displayName || "";
}

/**
 * The binding rules of CONTRACT section 5, pure: every template exists
 * (else NOT_FOUND), is bound once, effective names are unique, exactly one
 * default, and each override parses and merges into a valid spec.
 */
export function resolveBindings(
  inputs: BindingInput[],
  profiles: ReadonlyMap<string, BoundProfile>,
  zoneDefaults: ProfileSpec,
  basePath = "profileBindings",
): Binding[] {
  inputs.forEach((b, i) => {
    if (!profiles.has(b.profileTemplateId)) {
      throw new AppError(
        "NOT_FOUND",
        `${basePath}[${i}].profileTemplateId: profile template '${b.profileTemplateId}' not found`,
        {
          reason: "PROFILE_NOT_FOUND",
          metadata: { profileTemplateId: b.profileTemplateId },
          fieldViolations: [
            {
              field: `${basePath}[${i}].profileTemplateId`,
              description: "no such profile template in this organization",
            },
          ],
        },
      );
    }
  });
  const violations: FieldViolation[] = [];
  const seenTemplates = new Map<string, number>();
  const seenNames = new Map<string, number>();
  const resolved: Binding[] = [];
  inputs.forEach((b, i) => {
    const at = `${basePath}[${i}]`;
    const profile = profiles.get(b.profileTemplateId) as BoundProfile;
    const firstTemplate = seenTemplates.get(b.profileTemplateId);
    if (firstTemplate !== undefined) {
      violations.push({
        field: `${at}.profileTemplateId`,
        description: `template ${b.profileTemplateId} is already bound by ${basePath}[${firstTemplate}]; bind a template once per runner`,
      });
    } else seenTemplates.set(b.profileTemplateId, i);

    const name = effectiveProfileName(b, profile);
    if (name.length > MAX_PROFILE_NAME) {
      violations.push({
        field: `${at}.profileName`,
        description: `must be at most ${MAX_PROFILE_NAME} characters, found ${name.length}`,
      });
    }
    const firstName = seenNames.get(name);
    if (firstName !== undefined) {
      violations.push({
        field: `${at}.profileName`,
        description: `profile name '${name}' is already used by ${basePath}[${firstName}]; names must be unique within a runner`,
      });
    } else seenNames.set(name, i);

    const overrides = readOverrides(b.overridesJson, `${at}.overridesJson`, violations);
    if (overrides) {
      for (const v of profileSpecViolations(
        layerSpecs(zoneDefaults, profile.spec, overrides),
        "spec",
      )) {
        violations.push({
          field: `${at}.overridesJson`,
          description: `the merged spec of profile '${name}' is invalid: ${v.field}: ${v.description}`,
        });
      }
      resolved.push({ ...b, overrides });
    }
  });
  const defaults = inputs.map((b, i) => (b.isDefault ? i : -1)).filter((i) => i >= 0);
  if (inputs.length > 0 && defaults.length !== 1) {
    violations.push({
      field: defaults.length === 0 ? basePath : `${basePath}[${defaults[1]}].isDefault`,
      description: `exactly one binding must have isDefault: true, found ${defaults.length}${defaults.length > 1 ? ` (bindings ${defaults.join(", ")})` : ""}`,
    });
  }
  if (violations.length > 0) throw invalidArgument(violations);
  return resolved;
}

function readOverrides(
  text: string,
  field: string,
  violations: FieldViolation[],
): ProfileSpec | undefined {
  if (text.trim() === "") return {};
  let raw: unknown;
  try {
    raw = parseStrictJson(text);
  } catch (error) {
    const reason = error instanceof PayloadSyntaxError ? error.message : String(error);
    violations.push({ field, description: `must hold a JSON-encoded ProfileSpec: ${reason}` });
    return undefined;
  }
  const before = violations.length;
  const spec = readProfileSpec(raw, field, violations);
  return violations.length === before ? spec : undefined;
}

export function toWireRunner(r: Runner, profiles: ReadonlyMap<string, BoundProfile>): RunnerWire {
  return {
    runnerId: r.runnerId,
    organizationId: r.organizationId,
    displayName: r.displayName,
    identity: { zone: r.zone, clusterId: r.clusterId },
    managedSpec: { releaseChannel: r.releaseChannel },
    profileBindings: r.bindings.map((b) => ({
      profileTemplateId: b.profileTemplateId,
      profileName: effectiveProfileName(b, profiles.get(b.profileTemplateId)),
      isDefault: b.isDefault,
      overridesJson: b.overridesJson,
      ...(b.warmPoolSize ? { warmPoolSize: b.warmPoolSize } : {}),
    })),
    zoneDefaults: toWireSpec(r.zoneDefaults),
    connectionStatus: r.connectionStatus,
    lastHeartbeatAt: r.lastHeartbeatAt ? r.lastHeartbeatAt.toISOString() : null,
    backend: r.backend,
    agentVersion: r.agentVersion,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}
