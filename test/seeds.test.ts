import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "./support/app.js";
import { seedBindingOverride, seedProfiles, seedRunner } from "./support/seeds.js";

const PROFILES = "/v1beta2/sandbox/profile-templates";
const RUNNERS = "/v1beta2/sandbox/runners";

describe("the seed documents' JSON bodies, sent unchanged", () => {
  let t: TestApp;
  const ids = new Map<string, string>();
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it("has the five profile examples", () => {
    expect(seedProfiles()).toHaveLength(5);
  });

  it.each(
    seedProfiles().map((text) => [JSON.parse(text).profileTemplate.displayName as string, text]),
  )("accepts profile %s", async (name, text) => {
    const res = await t.callRaw("POST", PROFILES, text);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const sent = JSON.parse(text).profileTemplate;
    const got = res.body.profileTemplate;
    expect(got.displayName).toBe(name);
    expect(got.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(got.organizationId).toBe("default");
    expect(got.labels).toEqual(sent.labels);
    expect(got.spec.runtimeClass).toBe(sent.spec.runtimeClass);
    expect(got.spec.resourceDefaults).toEqual(sent.spec.resourceDefaults);
    // Sub-blocks answer as JSON strings holding the same values.
    for (const key of ["namespaceConfigJson", "networkConfigJson"]) {
      expect(JSON.parse(got.spec[key])).toEqual(JSON.parse(sent.spec[key]));
    }
    ids.set(name, got.id);
  });

  it("accepts the multi-profile runner with placeholders replaced by real ids", async () => {
    const text = seedRunner()
      .replace("[YOUR-CKS-CLUSTER-ID]", "cks-test-1")
      .replace("[CI-TEST-RUNNER-ID]", ids.get("ci-test-runner") ?? "")
      .replace("[DS-GPU-H100-ID]", ids.get("ds-gpu-h100") ?? "")
      .replace("[AGENT-ALLOWLIST-ID]", ids.get("agent-allowlist") ?? "")
      .replace("[UNTRUSTED-EXEC-ID]", ids.get("untrusted-exec") ?? "")
      .replace("[WORKER-INTERNAL-SVC-ID]", ids.get("worker-internal-svc") ?? "");
    const res = await t.callRaw("POST", RUNNERS, text);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const runner = res.body.runner;
    expect(runner.runnerId).toBe("shared-runner-us-east-1");
    expect(runner.identity).toEqual({ zone: "us-east-1", clusterId: "cks-test-1" });
    expect(runner.connectionStatus).toBe("DISCONNECTED");
    expect(
      runner.profileBindings.map((b: { profileName: string; isDefault: boolean }) => [
        b.profileName,
        b.isDefault,
      ]),
    ).toEqual([
      ["ci-test-runner", true],
      ["gpu", false],
      ["agent", false],
      ["untrusted", false],
      ["worker", false],
    ]);
  });

  it("accepts the binding override with its double-escaped JSON, leaving exactly the two CIDRs", async () => {
    const binding = JSON.parse(
      seedBindingOverride().replace("[AGENT-ALLOWLIST-ID]", ids.get("agent-allowlist") ?? ""),
    );
    const res = await t.call("POST", RUNNERS, {
      runnerId: "eu-runner",
      runner: {
        identity: { zone: "eu-west-1" },
        profileBindings: [{ ...binding, isDefault: true }],
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const stored = res.body.runner.profileBindings[0];
    expect(stored.profileName).toBe("agent");
    expect(stored.overridesJson).toBe(binding.overridesJson);
    const override = JSON.parse(JSON.parse(stored.overridesJson).networkConfigJson);
    expect(override.egress.modes.allowlist.cidrs).toEqual(["140.82.112.0/20", "10.42.0.0/16"]);
  });
});
