import { describe, expect, it } from "vitest";
import type { ProfileTemplate } from "../profiles/profile.js";
import { renderMetrics } from "./metrics.js";
import type { Runner } from "./runner.js";
import { warmPoolsFor } from "./warm-pools.js";

const profile = (id: string, memoryLimit: string): ProfileTemplate => ({
  id,
  organizationId: "org",
  displayName: id,
  description: "",
  labels: {},
  spec: { resourceDefaults: { memoryLimit } },
  createdAt: new Date(0),
  updatedAt: new Date(0),
});

const runner = (bindings: Runner["bindings"]): Runner => ({
  organizationId: "org",
  runnerId: "r1",
  displayName: "r1",
  zone: "z",
  clusterId: "",
  releaseChannel: "RELEASE_CHANNEL_STABLE",
  bindings,
  zoneDefaults: { resourceDefaults: { cpuLimit: "2" } },
  connectionStatus: "DISCONNECTED",
  lastHeartbeatAt: null,
  backend: "",
  agentVersion: "",
  createdAt: new Date(0),
  updatedAt: new Date(0),
});

describe("warmPoolsFor", () => {
  it("gives each binding with a size the spec its sandboxes start with, layers included", () => {
    const profiles = new Map([
      ["p1", profile("p1", "1Gi")],
      ["p2", profile("p2", "2Gi")],
    ]);
    const pools = warmPoolsFor(
      runner([
        {
          profileTemplateId: "p1",
          profileName: "",
          isDefault: true,
          overridesJson: "",
          overrides: { resourceDefaults: { memoryLimit: "512Mi" } },
          warmPoolSize: 3,
        },
        {
          profileTemplateId: "p2",
          profileName: "",
          isDefault: false,
          overridesJson: "",
          overrides: {},
        },
      ]),
      profiles,
    );
    expect(pools).toHaveLength(1);
    expect(pools[0]?.profileId).toBe("p1");
    expect(pools[0]?.size).toBe(3);
    // zoneDefaults → profile → binding overrides
    expect(pools[0]?.spec.memoryLimit).toBe("512Mi");
    expect(pools[0]?.spec.cpuLimit).toBe("2");
  });

  it("gives no pool to a binding whose profile is missing", () => {
    const pools = warmPoolsFor(
      runner([
        {
          profileTemplateId: "gone",
          profileName: "",
          isDefault: true,
          overridesJson: "",
          overrides: {},
          warmPoolSize: 2,
        },
      ]),
      new Map(),
    );
    expect(pools).toEqual([]);
  });
});

describe("renderMetrics", () => {
  it("writes each pool's size, ready shells, hits and misses in the Prometheus text format", () => {
    const text = renderMetrics([
      {
        runnerId: "local",
        pools: [{ profileId: 'p"1', size: 4, ready: 3, hits: 10, misses: 2 }],
      },
    ]);
    expect(text).toContain("# TYPE paddock_warm_pool_ready gauge\n");
    expect(text).toContain("# TYPE paddock_warm_pool_hits_total counter\n");
    expect(text).toContain('paddock_warm_pool_size{runner="local",profile_id="p\\"1"} 4\n');
    expect(text).toContain('paddock_warm_pool_ready{runner="local",profile_id="p\\"1"} 3\n');
    expect(text).toContain('paddock_warm_pool_hits_total{runner="local",profile_id="p\\"1"} 10\n');
    expect(text).toContain('paddock_warm_pool_misses_total{runner="local",profile_id="p\\"1"} 2\n');
  });
});
