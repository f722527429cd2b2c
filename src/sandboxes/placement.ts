import { AppError, type FieldViolation, invalidArgument } from "../errors.js";
import { layerSpecs } from "../profiles/layering.js";
import { namespaceName } from "../profiles/namespace-name.js";
import type { ProfileTemplate } from "../profiles/profile.js";
import { resourceViolations } from "../profiles/spec-rules.js";
import type { ProfileSpec } from "../profiles/spec-schema.js";
import { compareQuantities } from "../resources/quantity.js";
import { type Binding, effectiveProfileName, type Runner } from "../runners/runner.js";
import { joinPath } from "../wire/proto-json.js";
import {
  DEFAULT_LIFETIME_SECONDS,
  type LaunchSpec,
  MAX_LIFETIME_SECONDS,
  type StartSandboxRequest,
} from "./sandbox.js";

const TAG = /^[A-Za-z0-9._-]{1,59}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export interface PlacementInput {
  request: StartSandboxRequest;
  organizationId: string;
  userId: string;
  runners: Runner[];
  profiles: ReadonlyMap<string, ProfileTemplate>;
  activeSandboxes: ReadonlyMap<string, number>;
  ceiling: { maxCpu: string; maxMemory: string };
}

export interface Placement {
  runner: Runner;
  binding: Binding;
  profile: ProfileTemplate;
  profileName: string;
  launch: LaunchSpec;
  appliedEgressMode: string;
  appliedIngressMode: string;
}

/**
 * Chooses the runner and profile for a start request and resolves the
 * launch spec (CONTRACT section 6). Pure: every input is data.
 */
export function placeSandbox(input: PlacementInput): Placement {
  const { request } = input;
  const wantedName = request.profileNames?.[0];
  const wantedId = request.profileIds?.[0];
  const wanted = wantedName ?? wantedId;

  let candidates = input.runners;
  if (request.runnerIds && request.runnerIds.length > 0) {
    const byId = new Map(input.runners.map((r) => [r.runnerId, r]));
    candidates = request.runnerIds.map((id, i) => {
      const runner = byId.get(id);
      if (!runner) {
        throw new AppError("NOT_FOUND", `runnerIds[${i}]: runner '${id}' not found`, {
          reason: "RUNNER_NOT_FOUND",
          metadata: { runnerId: id },
        });
      }
      return runner;
    });
  }

  const matches: { runner: Runner; binding: Binding }[] = [];
  for (const runner of candidates) {
    const binding = runner.bindings.find((b) => {
      const profile = input.profiles.get(b.profileTemplateId);
      if (wantedName !== undefined)
        return (
          effectiveProfileName(b, profile) === wantedName || profile?.displayName === wantedName
        );
      if (wantedId !== undefined) return b.profileTemplateId === wantedId;
      return b.isDefault;
    });
    if (binding) matches.push({ runner, binding });
  }
  const explicitRunners = (request.runnerIds?.length ?? 0) > 0;
  const usable = explicitRunners
    ? matches
    : matches.filter((m) => m.runner.connectionStatus === "CONNECTED");
  if (usable.length === 0) throw noPlacement(input, wanted, matches, explicitRunners);

  usable.sort(
    (a, b) =>
      (input.activeSandboxes.get(a.runner.runnerId) ?? 0) -
        (input.activeSandboxes.get(b.runner.runnerId) ?? 0) ||
      (a.runner.runnerId < b.runner.runnerId ? -1 : a.runner.runnerId > b.runner.runnerId ? 1 : 0),
  );
  const { runner, binding } = usable[0] as { runner: Runner; binding: Binding };
  const profile = input.profiles.get(binding.profileTemplateId) as ProfileTemplate;
  const spec = layerSpecs(
    runner.zoneDefaults,
    profile.spec,
    binding.overrides,
    requestLayer(request),
  );
  const { launch, appliedEgressMode, appliedIngressMode } = resolveLaunch(input, spec, profile);
  return {
    runner,
    binding,
    profile,
    profileName: effectiveProfileName(binding, profile),
    launch,
    appliedEgressMode,
    appliedIngressMode,
  };
}

function noPlacement(
  input: PlacementInput,
  wanted: string | undefined,
  matches: { runner: Runner }[],
  explicitRunners: boolean,
): AppError {
  const what = wanted === undefined ? "a default profile" : `profile '${wanted}'`;
  if (wanted !== undefined && matches.length === 0) {
    const known = [...input.profiles.values()].some(
      (p) => p.id === wanted || p.displayName === wanted,
    );
    const bound = input.runners.some((r) =>
      r.bindings.some((b) => {
        const p = input.profiles.get(b.profileTemplateId);
        return (
          effectiveProfileName(b, p) === wanted ||
          p?.displayName === wanted ||
          b.profileTemplateId === wanted
        );
      }),
    );
    if (!known && !bound) {
      return new AppError(
        "NOT_FOUND",
        `profile '${wanted}' not found: no profile template or binding has that name or id`,
        {
          reason: "PROFILE_NOT_FOUND",
          metadata: { profile: wanted },
        },
      );
    }
  }
  if (matches.length === 0) {
    const scope = explicitRunners ? "the requested runners" : "any runner of this organization";
    return new AppError(
      "FAILED_PRECONDITION",
      `no suitable runner: ${what} is not bound by ${scope}`,
      {
        reason: "NO_SUITABLE_RUNNER",
      },
    );
  }
  const names = matches.map((m) => m.runner.runnerId).join(", ");
  return new AppError(
    "UNAVAILABLE",
    `no suitable runner: runners binding ${what} are disconnected (${names})`,
    {
      reason: "NO_SUITABLE_RUNNER",
      metadata: { runnerIds: names },
    },
  );
}

/**
 * Environment variables a process can actually have: a name that is not
 * empty and holds no `=` or NUL, a value without NUL.
 */
export function environmentViolations(
  env: Record<string, string>,
  basePath: string,
): FieldViolation[] {
  const out: FieldViolation[] = [];
  for (const [name, value] of Object.entries(env)) {
    const field = joinPath(basePath, [name]);
    if (name === "" || name.includes("=") || name.includes("\0")) {
      out.push({
        field,
        description: `a variable name must be non-empty and hold no '=' or NUL, found ${JSON.stringify(name)}`,
      });
    } else if (value.includes("\0")) {
      out.push({ field, description: "the value must not hold a NUL character" });
    }
  }
  return out;
}

/** The request as the top layer: only fields it sets. */
function requestLayer(request: StartSandboxRequest): ProfileSpec {
  const layer: ProfileSpec = {};
  if (request.containerImage) layer.containerImage = request.containerImage;
  const resources: Record<string, string> = {};
  const both = request.resources ?? {};
  const requests = { ...both, ...request.resourceRequests };
  const limits = { ...both, ...request.resourceLimits };
  if (requests.cpu) resources.cpuRequest = requests.cpu;
  if (requests.memory) resources.memoryRequest = requests.memory;
  if (limits.cpu) resources.cpuLimit = limits.cpu;
  if (limits.memory) resources.memoryLimit = limits.memory;
  if (Object.keys(resources).length > 0) layer.resourceDefaults = resources;
  return layer;
}

function resolveLaunch(
  input: PlacementInput,
  spec: ProfileSpec,
  profile: ProfileTemplate,
): { launch: LaunchSpec; appliedEgressMode: string; appliedIngressMode: string } {
  const { request } = input;
  const violations: FieldViolation[] = [];

  const resources = spec.resourceDefaults ?? {};
  for (const v of resourceViolations(resources, "resources")) {
    // Name the request field the user can change.
    violations.push({
      field: v.field
        .replace("resources.cpuRequest", "resourceRequests.cpu")
        .replace("resources.memoryRequest", "resourceRequests.memory")
        .replace("resources.cpuLimit", "resourceLimits.cpu")
        .replace("resources.memoryLimit", "resourceLimits.memory"),
      description: v.description,
    });
  }

  const egress = spec.network?.egress;
  let egressMode: LaunchSpec["egress"] = null;
  let appliedEgressMode = "none";
  const modes = egress?.modes ?? {};
  const modeNames = Object.keys(modes);
  const requestedEgress = request.network?.egressMode;
  if (requestedEgress) {
    const mode = modes[requestedEgress];
    if (!mode) {
      violations.push({
        field: "network.egressMode",
        description: `'${requestedEgress}' is not a mode of profile '${profile.displayName}'; modes: ${modeNames.join(", ") || "(none: the profile allows no egress)"}`,
      });
    } else {
      egressMode = { mode: requestedEgress, type: mode.type, cidrs: mode.cidrs ?? [] };
      appliedEgressMode = requestedEgress;
    }
  } else if (modeNames.length > 0) {
    const name = egress?.default || (modeNames[0] as string);
    const mode = modes[name];
    if (mode) {
      egressMode = { mode: name, type: mode.type, cidrs: mode.cidrs ?? [] };
      appliedEgressMode = name;
    }
  }

  const levels = spec.network?.ingress ?? {};
  const requestedIngress = request.network?.ingressMode;
  let ingress: LaunchSpec["ingress"] = null;
  let appliedIngressMode = "none";
  const ports = (request.ports ?? []).map((p, i) => {
    if (p.containerPort < 1 || p.containerPort > 65535) {
      violations.push({
        field: `ports[${i}].containerPort`,
        description: `must be 1-65535, found ${p.containerPort}`,
      });
    }
    return {
      containerPort: p.containerPort,
      name: p.name ?? "",
      protocol: (p.protocol || "TCP").toUpperCase(),
    };
  });
  const exposedPorts = request.network?.exposedPorts ?? ports.map((p) => p.containerPort);
  exposedPorts.forEach((port, i) => {
    if (port < 1 || port > 65535)
      violations.push({
        field: `network.exposedPorts[${i}]`,
        description: `must be 1-65535, found ${port}`,
      });
  });
  if (requestedIngress && requestedIngress !== "none") {
    const level = levels[requestedIngress];
    if (!level) {
      violations.push({
        field: "network.ingressMode",
        description: `'${requestedIngress}' is not an exposure level of profile '${profile.displayName}'; levels: ${Object.keys(levels).join(", ") || "(none: the profile exposes nothing)"}`,
      });
    } else {
      ingress = {
        level: requestedIngress,
        scope: level.scope ?? "any",
        serviceType: level.service?.serviceType ?? "ClusterIP",
        ports: exposedPorts,
        serviceAnnotations: Object.fromEntries(
          [level.service?.serviceSelectorAnnotation, level.service?.dnsAnnotation]
            .filter((pair) => pair !== undefined)
            .map((pair) => [pair.key, pair.value]),
        ),
        ...(level.ingress
          ? {
              ingress: {
                controllerName: level.ingress.controllerName ?? "",
                template: level.ingress.template ?? "",
              },
            }
          : {}),
        expectsExternalAddress: level.expectsExternalAddress ?? false,
      };
      appliedIngressMode = requestedIngress;
    }
  }

  let lifetime = request.maxLifetimeSeconds ?? DEFAULT_LIFETIME_SECONDS;
  if (
    request.maxLifetimeSeconds !== undefined &&
    (lifetime < 1 || lifetime > MAX_LIFETIME_SECONDS)
  ) {
    violations.push({
      field: "maxLifetimeSeconds",
      description: `must be from 1 to ${MAX_LIFETIME_SECONDS} (30 days), found ${lifetime}`,
    });
    lifetime = DEFAULT_LIFETIME_SECONDS;
  }
  (request.tags ?? []).forEach((tag, i) => {
    if (!TAG.test(tag))
      violations.push({
        field: `tags[${i}]`,
        description: `must be 1-59 letters, digits, '.', '_' or '-', found ${JSON.stringify(tag)}`,
      });
  });
  const mountedFiles = (request.mountedFiles ?? []).map((f, i) => {
    if (!f.mountPath.startsWith("/"))
      violations.push({
        field: `mountedFiles[${i}].mountPath`,
        description: `must be an absolute path, found ${JSON.stringify(f.mountPath)}`,
      });
    const content = f.fileContent ?? "";
    if (!BASE64.test(content))
      violations.push({ field: `mountedFiles[${i}].fileContent`, description: "must be base64" });
    return { mountPath: f.mountPath, fileContentBase64: content };
  });
  violations.push(
    ...environmentViolations(request.environmentVariables ?? {}, "environmentVariables"),
  );
  if (
    request.command !== undefined &&
    request.command.trim() === "" &&
    (request.args?.length ?? 0) > 0
  ) {
    violations.push({ field: "command", description: "required when args are given" });
  }
  if (violations.length > 0) throw invalidArgument(violations);

  for (const [field, limitField, ceiling, label] of [
    ["cpuRequest", "cpuLimit", input.ceiling.maxCpu, "maxCpu"],
    ["memoryRequest", "memoryLimit", input.ceiling.maxMemory, "maxMemory"],
  ] as const) {
    if (!ceiling) continue;
    for (const key of [field, limitField]) {
      const value = resources[key];
      if (value && (compareQuantities(value, ceiling) ?? 0) > 0) {
        throw new AppError(
          "RESOURCE_EXHAUSTED",
          `${key} ${value} exceeds the organization's per-sandbox ceiling ${label} ${ceiling}`,
          { reason: "RESOURCE_CEILING_EXCEEDED", metadata: { [key]: value, [label]: ceiling } },
        );
      }
    }
  }

  const command = request.command ? [request.command, ...(request.args ?? [])] : [];
  const launch: LaunchSpec = {
    image: spec.containerImage ?? "",
    runtimeClass: spec.runtimeClass ?? "",
    command,
    env: request.environmentVariables ?? {},
    cpuRequest: resources.cpuRequest ?? "",
    cpuLimit: resources.cpuLimit ?? "",
    memoryRequest: resources.memoryRequest ?? "",
    memoryLimit: resources.memoryLimit ?? "",
    namespace: namespaceName(spec.namespace, {
      organizationId: input.organizationId,
      userId: input.userId,
      profileId: profile.id,
      profileDisplayName: profile.displayName,
    }),
    namespaceConfig: {
      strategy: spec.namespace?.strategy || "per-user",
      autoCreate: spec.namespace?.autoCreate ?? true,
      labels: spec.namespace?.labels ?? {},
      annotations: spec.namespace?.annotations ?? {},
    },
    egress: egressMode,
    ingress,
    ports,
    mountedFiles,
    labels: spec.pod?.metadata?.labels ?? {},
    annotations: { ...spec.pod?.metadata?.annotations, ...request.podAnnotations },
    nodeSelector: spec.nodeSelector ?? {},
    instanceTypes: spec.instanceTypes ?? spec.pod?.placement?.instanceTypes ?? [],
    pod: (spec.pod ?? {}) as Record<string, unknown>,
    maxLifetimeSeconds: lifetime,
  };
  return { launch, appliedEgressMode, appliedIngressMode };
}
