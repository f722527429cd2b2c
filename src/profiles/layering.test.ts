import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { seedBindingOverride, seedProfiles } from "../../test/support/seeds.js";
import { parseStrictJson } from "../wire/strict-json.js";
import { layerSpecs } from "./layering.js";
import { profileSpecViolations } from "./spec-rules.js";
import type { ProfileSpec } from "./spec-schema.js";
import { parseProfileSpec } from "./spec-wire.js";

const zone: ProfileSpec = {
  containerImage: "zone/image:1",
  runtimeClass: "runc",
  resourceDefaults: {
    cpuRequest: "100m",
    memoryRequest: "128Mi",
    cpuLimit: "1",
    memoryLimit: "1Gi",
  },
  nodeSelector: { pool: "cpu", zone: "us-east-1a" },
  tags: ["zone"],
  instanceTypes: ["cpu-small"],
  namespace: { strategy: "per-org", namespacePrefix: "zone-", labels: { from: "zone" } },
  network: {
    egress: { default: "internet", modes: { internet: { type: "internet" } } },
    ingress: { internal: { scope: "org", service: { serviceType: "ClusterIP" } } },
  },
  pod: { metadata: { labels: { from: "zone" } }, spec: { priorityClassName: "low" } },
};

describe("layerSpecs: zoneDefaults → profile → override → request", () => {
  it("lets each higher layer replace a scalar or list field of the one below", () => {
    const profile: ProfileSpec = { containerImage: "profile/image:2", tags: ["ml"] };
    const override: ProfileSpec = { containerImage: "override/image:3", runtimeClass: "kata" };
    const request: ProfileSpec = { containerImage: "request/image:4" };
    const merged = layerSpecs(zone, profile, override, request);
    expect(merged.containerImage).toBe("request/image:4");
    expect(merged.runtimeClass).toBe("kata");
    expect(merged.tags).toEqual(["ml"]);
    expect(merged.instanceTypes).toEqual(["cpu-small"]);
    expect(layerSpecs(zone, profile, override).containerImage).toBe("override/image:3");
    expect(layerSpecs(zone, profile).containerImage).toBe("profile/image:2");
    expect(layerSpecs(zone).containerImage).toBe("zone/image:1");
  });

  it("replaces lists whole rather than appending", () => {
    const merged = layerSpecs(zone, { instanceTypes: ["h100"], tags: ["a", "b"] }, { tags: ["c"] });
    expect(merged.instanceTypes).toEqual(["h100"]);
    expect(merged.tags).toEqual(["c"]);
  });

  it("merges resourceDefaults key by key", () => {
    const merged = layerSpecs(
      zone,
      { resourceDefaults: { cpuLimit: "4", memoryLimit: "8Gi" } },
      { resourceDefaults: { cpuRequest: "2" } },
      { resourceDefaults: { memoryLimit: "16Gi" } },
    );
    expect(merged.resourceDefaults).toEqual({
      cpuRequest: "2",
      memoryRequest: "128Mi",
      cpuLimit: "4",
      memoryLimit: "16Gi",
    });
  });

  it("merges nodeSelector key by key", () => {
    const merged = layerSpecs(
      zone,
      { nodeSelector: { pool: "gpu" } },
      { nodeSelector: { gpu: "h100" } },
    );
    expect(merged.nodeSelector).toEqual({ pool: "gpu", zone: "us-east-1a", gpu: "h100" });
  });

  it("replaces namespace, network and pod as wholes", () => {
    const profile: ProfileSpec = {
      namespace: { strategy: "static", staticNamespace: "ci" },
      network: { egress: { modes: { none: { type: "none" } } } },
      pod: { spec: { securityContext: { runAsNonRoot: true } } },
    };
    const merged = layerSpecs(zone, profile);
    expect(merged.namespace).toEqual({ strategy: "static", staticNamespace: "ci" });
    expect(merged.network).toEqual({ egress: { modes: { none: { type: "none" } } } });
    expect(merged.pod).toEqual({ spec: { securityContext: { runAsNonRoot: true } } });
  });

  it("keeps a lower layer's block when a higher layer does not give one", () => {
    const merged = layerSpecs(zone, { containerImage: "x" }, {});
    expect(merged.namespace).toEqual(zone.namespace);
    expect(merged.network).toEqual(zone.network);
    expect(merged.pod).toEqual(zone.pod);
  });

  it("does not modify its inputs", () => {
    const a = structuredClone(zone);
    const b: ProfileSpec = { resourceDefaults: { cpuLimit: "8" }, nodeSelector: { x: "y" } };
    const bCopy = structuredClone(b);
    layerSpecs(a, b);
    expect(a).toEqual(zone);
    expect(b).toEqual(bCopy);
  });

  it("the seed's agent override leaves exactly 140.82.112.0/20 and 10.42.0.0/16", () => {
    const agent = seedProfiles()
      .map(
        (text) =>
          parseStrictJson(text) as { profileTemplate: { displayName: string; spec: unknown } },
      )
      .find((p) => p.profileTemplate.displayName === "agent-allowlist");
    expect(agent).toBeDefined();
    const profile = parseProfileSpec(agent?.profileTemplate.spec);
    expect(profile.network?.egress?.modes?.allowlist?.cidrs).toEqual([
      "140.82.112.0/20",
      "151.101.0.0/16",
    ]);
    const binding = parseStrictJson(seedBindingOverride()) as { overridesJson: string };
    const override = parseProfileSpec(parseStrictJson(binding.overridesJson), "overridesJson");

    const merged = layerSpecs(zone, profile, override);
    expect(merged.network).toEqual({
      egress: {
        default: "allowlist",
        modes: { allowlist: { type: "allowlist", cidrs: ["140.82.112.0/20", "10.42.0.0/16"] } },
      },
    });
    // The rest of the profile still applies over the zone defaults.
    expect(merged.runtimeClass).toBe("kata-qemu");
    expect(merged.resourceDefaults).toEqual(profile.resourceDefaults);
    expect(merged.namespace).toEqual({ strategy: "per-user", namespacePrefix: "agent-" });
    expect(merged.nodeSelector).toEqual(zone.nodeSelector);
    expect(profileSpecViolations(merged)).toEqual([]);
  });
});

describe("layerSpecs: algebra", () => {
  const text = fc.string({ minLength: 1, maxLength: 6 });
  const quantity = fc.constantFrom("100m", "1", "2", "1Gi", "512Mi");
  const spec: fc.Arbitrary<ProfileSpec> = fc.record(
    {
      containerImage: text,
      runtimeClass: text,
      tags: fc.array(text, { minLength: 1, maxLength: 3 }),
      resourceDefaults: fc.record(
        {
          cpuRequest: quantity,
          memoryRequest: quantity,
          cpuLimit: quantity,
          memoryLimit: quantity,
        },
        { requiredKeys: [] },
      ),
      nodeSelector: fc.dictionary(fc.constantFrom("a", "b", "c"), text, { minKeys: 1 }),
      namespace: fc.record({ strategy: fc.constantFrom("per-user", "per-org") }),
      network: fc.record({ egress: fc.record({ default: text }) }),
    },
    { requiredKeys: [] },
  );

  it("is associative, with {} as identity", () => {
    fc.assert(
      fc.property(spec, spec, spec, (a, b, c) => {
        expect(layerSpecs(layerSpecs(a, b), c)).toEqual(layerSpecs(a, b, c));
        expect(layerSpecs(a, layerSpecs(b, c))).toEqual(layerSpecs(a, b, c));
        expect(layerSpecs({}, a)).toEqual(a);
        expect(layerSpecs(a, {})).toEqual(a);
      }),
    );
  });

  it("takes each field from the highest layer that has it, merging the keyed maps", () => {
    fc.assert(
      fc.property(fc.array(spec, { maxLength: 4 }), (layers) => {
        const merged = layerSpecs(...layers) as Record<string, unknown>;
        for (const key of ["containerImage", "runtimeClass", "tags", "namespace", "network"]) {
          const top = [...layers].reverse().find((l) => key in l) as
            | Record<string, unknown>
            | undefined;
          expect(merged[key]).toEqual(top?.[key]);
        }
        for (const key of ["resourceDefaults", "nodeSelector"] as const) {
          const expected = Object.assign({}, ...layers.map((l) => l[key] ?? {}));
          if (layers.some((l) => key in l)) expect(merged[key]).toEqual(expected);
          else expect(key in merged).toBe(false);
        }
      }),
    );
  });
});
