import { describe, expect, it } from "vitest";
import { AppError } from "../errors.js";
import type { ProfileTemplate } from "../profiles/profile.js";
import type { ProfileSpec } from "../profiles/spec-schema.js";
import type { Binding, Runner } from "../runners/runner.js";
import { type PlacementInput, placeSandbox } from "./placement.js";
import {
  DEFAULT_LIFETIME_SECONDS,
  MAX_LIFETIME_SECONDS,
  type StartSandboxRequest,
} from "./sandbox.js";

/** CONTRACT §6 placement, as a pure function: which runner and binding, and the resolved spec. */

const T0 = new Date("2025-01-01T00:00:00Z");

function profile(id: string, displayName: string, spec: ProfileSpec = {}): ProfileTemplate {
  return {
    id,
    organizationId: "acme",
    displayName,
    description: "",
    labels: {},
    spec,
    createdAt: T0,
    updatedAt: T0,
  };
}

function binding(
  profileTemplateId: string,
  extra: { profileName?: string; isDefault?: boolean; overrides?: ProfileSpec } = {},
): Binding {
  return {
    profileTemplateId,
    profileName: extra.profileName ?? "",
    isDefault: extra.isDefault ?? false,
    overridesJson: extra.overrides ? JSON.stringify(extra.overrides) : "",
    overrides: extra.overrides ?? {},
  };
}

function runner(
  runnerId: string,
  bindings: Binding[],
  extra: { connected?: boolean; zoneDefaults?: ProfileSpec } = {},
): Runner {
  return {
    organizationId: "acme",
    runnerId,
    displayName: runnerId,
    zone: "z1",
    clusterId: "",
    releaseChannel: "RELEASE_CHANNEL_STABLE",
    bindings,
    zoneDefaults: extra.zoneDefaults ?? {},
    connectionStatus: extra.connected === false ? "DISCONNECTED" : "CONNECTED",
    lastHeartbeatAt: T0,
    backend: "local",
    agentVersion: "test",
    createdAt: T0,
    updatedAt: T0,
  };
}

const NETWORK: ProfileSpec["network"] = {
  egress: {
    default: "off",
    modes: {
      off: { type: "none" },
      web: { type: "internet" },
      allow: { type: "allowlist", cidrs: ["10.0.0.0/8"] },
    },
  },
  ingress: {
    internal: { scope: "org", service: { serviceType: "ClusterIP" } },
    public: { scope: "any", service: { serviceType: "NodePort" } },
  },
};

const small = profile("p-small", "small", {
  containerImage: "img/small:1",
  resourceDefaults: {
    cpuRequest: "250m",
    cpuLimit: "1",
    memoryRequest: "256Mi",
    memoryLimit: "1Gi",
  },
  network: NETWORK,
});
const big = profile("p-big", "big", { containerImage: "img/big:1" });
const bare = profile("p-bare", "bare", {});

function input(
  request: StartSandboxRequest,
  runners: Runner[],
  extra: Partial<PlacementInput> = {},
): PlacementInput {
  return {
    request,
    organizationId: "acme",
    userId: "alice",
    runners,
    profiles: new Map([small, big, bare].map((p) => [p.id, p])),
    activeSandboxes: new Map(),
    ceiling: { maxCpu: "", maxMemory: "" },
    ...extra,
  };
}

/** Runs placement expecting an AppError; answers it. */
function refusal(i: PlacementInput): AppError {
  try {
    placeSandbox(i);
  } catch (error) {
    if (error instanceof AppError) return error;
    throw error;
  }
  throw new Error("placement succeeded, expected a refusal");
}

describe("runner choice", () => {
  const a = runner("a", [binding(small.id, { isDefault: true }), binding(big.id)]);
  const b = runner("b", [binding(big.id, { profileName: "huge", isDefault: true })]);
  const c = runner("c", [binding(bare.id, { isDefault: true })], { connected: false });

  it("takes a runner named in runnerIds, connected or not", () => {
    expect(placeSandbox(input({ runnerIds: ["c"] }, [a, b, c])).runner.runnerId).toBe("c");
    expect(placeSandbox(input({ runnerIds: ["b"] }, [a, b, c])).runner.runnerId).toBe("b");
  });

  it("refuses an unknown runner in runnerIds with NOT_FOUND naming it", () => {
    const e = refusal(input({ runnerIds: ["a", "nope"] }, [a, b]));
    expect(e.code).toBe("NOT_FOUND");
    expect(e.reason).toBe("RUNNER_NOT_FOUND");
    expect(e.message).toContain("runnerIds[1]");
    expect(e.message).toContain("nope");
  });

  it("refuses a named runner that does not bind the profile", () => {
    const e = refusal(input({ runnerIds: ["b"], profileNames: ["small"] }, [a, b]));
    expect(e.code).toBe("FAILED_PRECONDITION");
    expect(e.reason).toBe("NO_SUITABLE_RUNNER");
  });

  it("finds a connected runner binding the profile name, by binding alias or display name", () => {
    const byAlias = placeSandbox(input({ profileNames: ["huge"] }, [a, b]));
    expect(byAlias.runner.runnerId).toBe("b");
    expect(byAlias.profile.id).toBe(big.id);
    expect(byAlias.profileName).toBe("huge");
    const byDisplayName = placeSandbox(input({ profileNames: ["small"] }, [a, b]));
    expect(byDisplayName.runner.runnerId).toBe("a");
    expect(byDisplayName.profileName).toBe("small");
  });

  it("skips disconnected runners when choosing by profile", () => {
    const cBig = runner("a0", [binding(big.id, { isDefault: true })], { connected: false });
    expect(placeSandbox(input({ profileNames: ["big"] }, [cBig, a])).runner.runnerId).toBe("a");
  });

  it("answers UNAVAILABLE NO_SUITABLE_RUNNER when only disconnected runners bind the profile", () => {
    const e = refusal(input({ profileNames: ["bare"] }, [a, b, c]));
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.reason).toBe("NO_SUITABLE_RUNNER");
    expect(e.message).toContain("c");
  });

  it("finds a runner binding one of profileIds", () => {
    const p = placeSandbox(input({ profileIds: [big.id] }, [b, a]));
    // Both bind it, both idle: the runnerId tie-break picks a.
    expect(p.runner.runnerId).toBe("a");
    expect(p.binding.profileTemplateId).toBe(big.id);
    expect(p.profileName).toBe("big");
  });

  it("uses a runner's default binding when no profile is named", () => {
    const p = placeSandbox(input({}, [b]));
    expect(p.binding.isDefault).toBe(true);
    expect(p.profile.id).toBe(big.id);
    expect(p.profileName).toBe("huge");
    expect(placeSandbox(input({}, [a])).profile.id).toBe(small.id);
  });

  it("prefers the runner with the fewest active sandboxes, ties broken by runnerId", () => {
    const r1 = runner("r1", [binding(small.id, { isDefault: true })]);
    const r2 = runner("r2", [binding(small.id, { isDefault: true })]);
    const r3 = runner("r3", [binding(small.id, { isDefault: true })]);
    const place = (counts: [string, number][]) =>
      placeSandbox(input({}, [r3, r1, r2], { activeSandboxes: new Map(counts) })).runner.runnerId;
    expect(place([])).toBe("r1");
    expect(place([["r1", 2]])).toBe("r2");
    expect(
      place([
        ["r1", 2],
        ["r2", 1],
      ]),
    ).toBe("r3");
    expect(
      place([
        ["r1", 1],
        ["r2", 1],
        ["r3", 1],
      ]),
    ).toBe("r1");
    expect(
      place([
        ["r1", 5],
        ["r2", 3],
        ["r3", 4],
      ]),
    ).toBe("r2");
  });

  it("balances within runnerIds too", () => {
    const r1 = runner("r1", [binding(small.id, { isDefault: true })]);
    const r2 = runner("r2", [binding(small.id, { isDefault: true })]);
    const counts = new Map([["r1", 3]]);
    expect(
      placeSandbox(input({ runnerIds: ["r1", "r2"] }, [r1, r2], { activeSandboxes: counts })).runner
        .runnerId,
    ).toBe("r2");
  });

  it("answers NOT_FOUND PROFILE_NOT_FOUND for a profile nothing knows", () => {
    for (const request of [{ profileNames: ["ghost"] }, { profileIds: ["ghost-id"] }]) {
      const e = refusal(input(request, [a, b]));
      expect(e.code).toBe("NOT_FOUND");
      expect(e.reason).toBe("PROFILE_NOT_FOUND");
      expect(e.message).toContain("ghost");
    }
  });

  it("answers FAILED_PRECONDITION NO_SUITABLE_RUNNER for a known profile no runner binds", () => {
    const lonely = profile("p-lonely", "lonely");
    const profiles = new Map([small, lonely].map((p) => [p.id, p]));
    const e = refusal(input({ profileNames: ["lonely"] }, [a], { profiles }));
    expect(e.code).toBe("FAILED_PRECONDITION");
    expect(e.reason).toBe("NO_SUITABLE_RUNNER");
    expect(e.message).toContain("lonely");
  });

  it("answers NO_SUITABLE_RUNNER when no runner has a default binding", () => {
    const e = refusal(input({}, [runner("x", [])]));
    expect(e.code).toBe("FAILED_PRECONDITION");
    expect(e.reason).toBe("NO_SUITABLE_RUNNER");
    expect(refusal(input({}, [])).reason).toBe("NO_SUITABLE_RUNNER");
  });
});

describe("layering: zoneDefaults → profile → binding overrides → request", () => {
  const zone: ProfileSpec = {
    containerImage: "zone/img",
    runtimeClass: "runc",
    resourceDefaults: { cpuRequest: "100m", cpuLimit: "500m", memoryRequest: "64Mi" },
    nodeSelector: { zone: "z1", disk: "hdd" },
    network: { egress: { default: "zone", modes: { zone: { type: "internet" } } } },
  };
  const prof = profile("p-layer", "layered", {
    containerImage: "profile/img",
    resourceDefaults: { cpuLimit: "2", memoryLimit: "2Gi" },
    nodeSelector: { disk: "ssd" },
    network: {
      egress: {
        default: "allow",
        modes: {
          allow: { type: "allowlist", cidrs: ["10.0.0.0/8"] },
          web: { type: "internet" },
        },
      },
    },
  });
  const overrides: ProfileSpec = {
    resourceDefaults: { memoryRequest: "128Mi" },
    network: {
      egress: {
        default: "allow",
        modes: { allow: { type: "allowlist", cidrs: ["140.82.112.0/20", "10.42.0.0/16"] } },
      },
    },
  };
  const r = runner("r", [binding(prof.id, { isDefault: true, overrides })], { zoneDefaults: zone });
  const place = (request: StartSandboxRequest) =>
    placeSandbox(input(request, [r], { profiles: new Map([[prof.id, prof]]) }));

  it("takes each field from the highest layer that sets it; resources and nodeSelector merge by key", () => {
    const { launch } = place({});
    expect(launch.image).toBe("profile/img");
    expect(launch.runtimeClass).toBe("runc");
    expect(launch.cpuRequest).toBe("100m");
    expect(launch.cpuLimit).toBe("2");
    expect(launch.memoryRequest).toBe("128Mi");
    expect(launch.memoryLimit).toBe("2Gi");
    expect(launch.nodeSelector).toEqual({ zone: "z1", disk: "ssd" });
  });

  it("replaces network as a whole: the override's allowlist is exactly its own", () => {
    const p = place({});
    expect(p.appliedEgressMode).toBe("allow");
    expect(p.launch.egress).toEqual({
      mode: "allow",
      type: "allowlist",
      cidrs: ["140.82.112.0/20", "10.42.0.0/16"],
    });
    // The profile's "web" mode is gone with the profile's network block.
    const e = refusal(
      input({ network: { egressMode: "web" } }, [r], { profiles: new Map([[prof.id, prof]]) }),
    );
    expect(e.code).toBe("INVALID_ARGUMENT");
  });

  it("puts the request on top: image, requests and limits", () => {
    const { launch } = place({
      containerImage: "mine/img",
      resourceRequests: { cpu: "1" },
      resourceLimits: { memory: "4Gi" },
    });
    expect(launch.image).toBe("mine/img");
    expect(launch.cpuRequest).toBe("1");
    expect(launch.cpuLimit).toBe("2");
    expect(launch.memoryRequest).toBe("128Mi");
    expect(launch.memoryLimit).toBe("4Gi");
  });

  it("`resources` sets requests and limits; resourceRequests/resourceLimits win over it", () => {
    const both = place({ resources: { cpu: "3", memory: "3Gi" } }).launch;
    expect([both.cpuRequest, both.cpuLimit, both.memoryRequest, both.memoryLimit]).toEqual([
      "3",
      "3",
      "3Gi",
      "3Gi",
    ]);
    const mixed = place({ resources: { cpu: "3" }, resourceRequests: { cpu: "1500m" } }).launch;
    expect([mixed.cpuRequest, mixed.cpuLimit]).toEqual(["1500m", "3"]);
  });

  it("may go above the profile's defaults (no ceiling set)", () => {
    const { launch } = place({ resources: { cpu: "64", memory: "256Gi" } });
    expect([launch.cpuLimit, launch.memoryLimit]).toEqual(["64", "256Gi"]);
  });

  it("carries the command, args, env, annotations and mounted files", () => {
    const { launch } = place({
      command: "python3",
      args: ["-c", "print(1)"],
      environmentVariables: { A: "1" },
      podAnnotations: { note: "x" },
      mountedFiles: [{ mountPath: "/etc/app.conf", fileContent: "aGk=" }],
    });
    expect(launch.command).toEqual(["python3", "-c", "print(1)"]);
    expect(launch.env).toEqual({ A: "1" });
    expect(launch.annotations).toEqual({ note: "x" });
    expect(launch.mountedFiles).toEqual([
      { mountPath: "/etc/app.conf", fileContentBase64: "aGk=" },
    ]);
    expect(place({}).launch.command).toEqual([]);
  });
});

describe("network modes", () => {
  const r = runner("r", [binding(small.id, { isDefault: true }), binding(bare.id)]);

  it("applies the profile's egress default when none is requested", () => {
    const p = placeSandbox(input({}, [r]));
    expect(p.appliedEgressMode).toBe("off");
    expect(p.launch.egress).toEqual({ mode: "off", type: "none", cidrs: [] });
    expect(p.appliedIngressMode).toBe("none");
    expect(p.launch.ingress).toBeNull();
  });

  it("applies a requested egress mode", () => {
    const web = placeSandbox(input({ network: { egressMode: "web" } }, [r]));
    expect(web.appliedEgressMode).toBe("web");
    expect(web.launch.egress).toEqual({ mode: "web", type: "internet", cidrs: [] });
    const allow = placeSandbox(input({ network: { egressMode: "allow" } }, [r]));
    expect(allow.launch.egress?.cidrs).toEqual(["10.0.0.0/8"]);
  });

  it("refuses an egress mode the profile lacks, listing the modes there are", () => {
    const e = refusal(input({ network: { egressMode: "wild" } }, [r]));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.fieldViolations[0]?.field).toBe("network.egressMode");
    expect(e.message).toContain("network.egressMode");
    expect(e.message).toContain("wild");
    for (const mode of ["off", "web", "allow"]) expect(e.message).toContain(mode);
  });

  it("applies a requested ingress level with the exposed ports", () => {
    const p = placeSandbox(
      input({ network: { ingressMode: "public", exposedPorts: [8080, 9090] } }, [r]),
    );
    expect(p.appliedIngressMode).toBe("public");
    expect(p.launch.ingress).toEqual({
      level: "public",
      scope: "any",
      serviceType: "NodePort",
      ports: [8080, 9090],
      serviceAnnotations: {},
      expectsExternalAddress: false,
    });
    const fromPorts = placeSandbox(
      input({ network: { ingressMode: "internal" }, ports: [{ containerPort: 7000 }] }, [r]),
    );
    expect(fromPorts.launch.ingress).toMatchObject({ scope: "org", ports: [7000] });
    expect(fromPorts.launch.ports).toEqual([{ containerPort: 7000, name: "", protocol: "TCP" }]);
  });

  it("refuses an ingress level the profile lacks, listing the levels there are", () => {
    const e = refusal(input({ network: { ingressMode: "world" } }, [r]));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.fieldViolations[0]?.field).toBe("network.ingressMode");
    expect(e.message).toContain("internal");
    expect(e.message).toContain("public");
  });

  it("refuses exposed ports outside 1-65535, naming the entry", () => {
    const e = refusal(
      input({ network: { ingressMode: "public", exposedPorts: [80, 70000] } }, [r]),
    );
    expect(e.fieldViolations.map((v) => v.field)).toEqual(["network.exposedPorts[1]"]);
  });

  it("with no network in the resolved profile: no egress, no exposure, appliedEgressMode none", () => {
    const p = placeSandbox(input({ profileNames: ["bare"] }, [r]));
    expect(p.appliedEgressMode).toBe("none");
    expect(p.appliedIngressMode).toBe("none");
    expect(p.launch.egress).toBeNull();
    expect(p.launch.ingress).toBeNull();
    const e = refusal(input({ profileNames: ["bare"], network: { egressMode: "web" } }, [r]));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toContain("network.egressMode");
    const ingress = refusal(
      input({ profileNames: ["bare"], network: { ingressMode: "public" } }, [r]),
    );
    expect(ingress.fieldViolations[0]?.field).toBe("network.ingressMode");
  });
});

describe("resources", () => {
  const r = runner("r", [binding(small.id, { isDefault: true })]);

  it("refuses requests above limits, naming the request field", () => {
    const e = refusal(input({ resourceRequests: { cpu: "2" }, resourceLimits: { cpu: "1" } }, [r]));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.fieldViolations.map((v) => v.field)).toEqual(["resourceRequests.cpu"]);
    expect(e.message).toContain("resourceRequests.cpu");
    const mem = refusal(input({ resourceRequests: { memory: "2Gi" } }, [r]));
    expect(mem.fieldViolations.map((v) => v.field)).toEqual(["resourceRequests.memory"]);
    expect(mem.message).toContain("1Gi");
  });

  it("refuses a quantity that is not one, naming the field", () => {
    const e = refusal(input({ resourceLimits: { memory: "lots" } }, [r]));
    expect(e.fieldViolations.map((v) => v.field)).toEqual(["resourceLimits.memory"]);
    expect(e.message).toContain("lots");
  });

  it("enforces the organization ceiling on resolved requests and limits", () => {
    const ceiling = { maxCpu: "4", maxMemory: "8Gi" };
    const ok = placeSandbox(input({ resources: { cpu: "4", memory: "8Gi" } }, [r], { ceiling }));
    expect(ok.launch.cpuLimit).toBe("4");
    for (const request of [
      { resourceLimits: { cpu: "4001m" } },
      { resources: { memory: "9Gi" } },
      { resourceLimits: { memory: "16Gi" } },
    ]) {
      const e = refusal(input(request, [r], { ceiling }));
      expect(e.code).toBe("RESOURCE_EXHAUSTED");
      expect(e.reason).toBe("RESOURCE_CEILING_EXCEEDED");
      expect(e.message).toMatch(/maxCpu|maxMemory/);
    }
  });

  it("refuses a profile whose own defaults exceed the ceiling", () => {
    const e = refusal(input({}, [r], { ceiling: { maxCpu: "500m", maxMemory: "" } }));
    expect(e.code).toBe("RESOURCE_EXHAUSTED");
    expect(e.reason).toBe("RESOURCE_CEILING_EXCEEDED");
    expect(e.message).toContain("cpuLimit 1");
  });
});

describe("lifetime, tags and other request fields", () => {
  const r = runner("r", [binding(small.id, { isDefault: true })]);

  it("defaults the lifetime and accepts up to 30 days", () => {
    expect(placeSandbox(input({}, [r])).launch.maxLifetimeSeconds).toBe(DEFAULT_LIFETIME_SECONDS);
    expect(MAX_LIFETIME_SECONDS).toBe(30 * 24 * 3600);
    expect(
      placeSandbox(input({ maxLifetimeSeconds: MAX_LIFETIME_SECONDS }, [r])).launch
        .maxLifetimeSeconds,
    ).toBe(MAX_LIFETIME_SECONDS);
    expect(placeSandbox(input({ maxLifetimeSeconds: 60 }, [r])).launch.maxLifetimeSeconds).toBe(60);
  });

  it("refuses a lifetime above 30 days or below one second", () => {
    for (const seconds of [MAX_LIFETIME_SECONDS + 1, -5]) {
      const e = refusal(input({ maxLifetimeSeconds: seconds }, [r]));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.fieldViolations.map((v) => v.field)).toEqual(["maxLifetimeSeconds"]);
      expect(e.message).toContain(String(seconds));
    }
  });

  it("accepts tags of letters, digits, '.', '_' and '-' up to 59 characters", () => {
    expect(() =>
      placeSandbox(input({ tags: ["ci", "build-42", "a.b_c", "x".repeat(59)] }, [r])),
    ).not.toThrow();
  });

  it("refuses other tags, naming each", () => {
    const e = refusal(input({ tags: ["ok", "has space", "", "x".repeat(60), "ünï"] }, [r]));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.fieldViolations.map((v) => v.field)).toEqual([
      "tags[1]",
      "tags[2]",
      "tags[3]",
      "tags[4]",
    ]);
    expect(e.message).toContain("tags[1]");
  });

  it("refuses mounted files with relative paths or content that is not base64", () => {
    const e = refusal(
      input(
        {
          mountedFiles: [
            { mountPath: "etc/x", fileContent: "aGk=" },
            { mountPath: "/ok", fileContent: "not base64!" },
          ],
        },
        [r],
      ),
    );
    expect(e.fieldViolations.map((v) => v.field)).toEqual([
      "mountedFiles[0].mountPath",
      "mountedFiles[1].fileContent",
    ]);
  });

  it("refuses args without a command", () => {
    const e = refusal(input({ command: "", args: ["x"] }, [r]));
    expect(e.fieldViolations.map((v) => v.field)).toEqual(["command"]);
  });

  it("refuses environment variable names a process cannot have", () => {
    for (const name of ["", "A=B", "NUL\0"]) {
      const e = refusal(input({ environmentVariables: { [name]: "v" } }, [r]));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.fieldViolations[0]?.field).toBe(`environmentVariables[${JSON.stringify(name)}]`);
    }
    expect(
      placeSandbox(input({ environmentVariables: { my_var1: "a=b" } }, [r])).launch.env,
    ).toEqual({ my_var1: "a=b" });
  });

  it("names the namespace from the profile's strategy", () => {
    const ns = profile("p-ns", "ns", { namespace: { strategy: "static", staticNamespace: "ci" } });
    const p = placeSandbox(
      input({}, [runner("r", [binding(ns.id, { isDefault: true })])], {
        profiles: new Map([[ns.id, ns]]),
      }),
    );
    expect(p.launch.namespace).toBe("ci");
  });
});
