import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp, type TestResponse } from "../../test/support/app.js";

/** CONTRACT §4–5: a runner's profile bindings, over HTTP. */

const PROFILES = "/v1beta2/sandbox/profile-templates";
const RUNNERS = "/v1beta2/sandbox/runners";
const ORGS = "/v1beta2/admin/organizations";
const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";
const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";
const MISSING_ID = "00000000-0000-4000-8000-000000000000";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

let counter = 0;
const unique = (prefix: string) => `${prefix}-${++counter}`;

interface Binding {
  profileTemplateId: string;
  profileName?: string;
  isDefault?: boolean;
  overridesJson?: string;
}

function violations(res: TestResponse): { field: string; description: string }[] {
  const detail = (res.body.details ?? []).find((d: any) => d["@type"] === BAD_REQUEST);
  return detail?.fieldViolations ?? [];
}

function errorInfo(res: TestResponse): any {
  return (res.body.details ?? []).find((d: any) => d["@type"] === ERROR_INFO);
}

function expectInvalid(res: TestResponse, field: string, description?: string | RegExp): void {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.body.code).toBe(3);
  const found = violations(res).find((v) => v.field === field);
  expect(found, `no violation for ${field} in ${JSON.stringify(res.body)}`).toBeDefined();
  if (description !== undefined) expect(found?.description).toMatch(description);
  expect(res.body.message).toContain(field);
}

function expectOk(res: TestResponse): any {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

async function createProfile(spec: unknown = {}, displayName = unique("profile")): Promise<string> {
  const res = await t.call("POST", PROFILES, { profileTemplate: { displayName, spec } });
  return expectOk(res).profileTemplate.id;
}

function createRunner(
  profileBindings: Binding[],
  extra: Record<string, unknown> = {},
  runnerId = unique("runner"),
): Promise<TestResponse> {
  return t.call("POST", RUNNERS, {
    runnerId,
    runner: { identity: { zone: "us-east-1" }, profileBindings, ...extra },
  });
}

const overrides = (spec: unknown) => JSON.stringify(spec);

describe("valid bindings", () => {
  it("answers each binding's effective profileName and isDefault", async () => {
    const alpha = await createProfile({}, unique("alpha"));
    const beta = await createProfile();
    const res = expectOk(
      await createRunner([
        { profileTemplateId: alpha, isDefault: true },
        { profileTemplateId: beta, profileName: "b" },
      ]),
    );
    const names = await t.call("GET", `${PROFILES}/${alpha}`);
    expect(res.runner.profileBindings).toEqual([
      {
        profileTemplateId: alpha,
        profileName: names.body.profileTemplate.displayName,
        isDefault: true,
        overridesJson: "",
      },
      { profileTemplateId: beta, profileName: "b", isDefault: false, overridesJson: "" },
    ]);
  });

  it("accepts snake_case binding fields", async () => {
    const p = await createProfile();
    const res = await t.call("POST", RUNNERS, {
      runner_id: unique("runner"),
      runner: {
        identity: { zone: "z" },
        profile_bindings: [
          {
            profile_template_id: p,
            profile_name: "snake",
            is_default: true,
            overrides_json: overrides({ container_image: "img" }),
          },
        ],
      },
    });
    expect(expectOk(res).runner.profileBindings).toEqual([
      {
        profileTemplateId: p,
        profileName: "snake",
        isDefault: true,
        overridesJson: overrides({ container_image: "img" }),
      },
    ]);
  });

  it("accepts a runner without bindings", async () => {
    expect(expectOk(await createRunner([])).runner.profileBindings).toEqual([]);
  });

  it("accepts an override in structured or proto-facing form", async () => {
    const p = await createProfile({ network: { egress: { modes: { a: { type: "none" } } } } });
    const q = await createProfile();
    const network = { egress: { modes: { b: { type: "internet" } } } };
    expectOk(
      await createRunner([
        { profileTemplateId: p, isDefault: true, overridesJson: overrides({ network }) },
        {
          profileTemplateId: q,
          overridesJson: overrides({ networkConfigJson: JSON.stringify(network) }),
        },
      ]),
    );
  });

  it("replaces the whole list on edit", async () => {
    const a = await createProfile();
    const b = await createProfile();
    const runnerId = unique("runner");
    expectOk(await createRunner([{ profileTemplateId: a, isDefault: true }], {}, runnerId));
    const edited = expectOk(
      await t.call("PATCH", `${RUNNERS}/${runnerId}`, {
        runner: { profileBindings: [{ profileTemplateId: b, isDefault: true }] },
      }),
    );
    expect(edited.runner.profileBindings.map((x: Binding) => x.profileTemplateId)).toEqual([b]);
  });
});

describe("binding rules", () => {
  it("answers NOT_FOUND for a profileTemplateId that does not exist", async () => {
    const p = await createProfile();
    const res = await createRunner([
      { profileTemplateId: p, isDefault: true },
      { profileTemplateId: MISSING_ID },
    ]);
    expect(res.status, JSON.stringify(res.body)).toBe(404);
    expect(res.body.code).toBe(5);
    expect(res.body.message).toContain("profileBindings[1].profileTemplateId");
    expect(res.body.message).toContain(MISSING_ID);
    expect(violations(res).map((v) => v.field)).toEqual(["profileBindings[1].profileTemplateId"]);
    expect(errorInfo(res).reason).toBe("PROFILE_NOT_FOUND");
  });

  it("answers NOT_FOUND for a profileTemplateId that is not a UUID", async () => {
    const res = await createRunner([{ profileTemplateId: "not-a-uuid", isDefault: true }]);
    expect(res.status, JSON.stringify(res.body)).toBe(404);
    expect(res.body.code).toBe(5);
    expect(res.body.message).toContain("profileBindings[0].profileTemplateId");
  });

  it("answers NOT_FOUND for a profile of another organization", async () => {
    expectOk(await t.call("POST", ORGS, { organizationId: "other", displayName: "Other" }));
    const token = expectOk(
      await t.call("POST", `${ORGS}/other/users`, { userId: "olga", role: "SANDBOX_ADMIN" }),
    ).token;
    const theirs = expectOk(
      await t.call(
        "POST",
        PROFILES,
        { profileTemplate: { displayName: "theirs", spec: {} } },
        token,
      ),
    ).profileTemplate.id;
    const res = await createRunner([{ profileTemplateId: theirs, isDefault: true }]);
    expect(res.status, JSON.stringify(res.body)).toBe(404);
    expect(res.body.code).toBe(5);
    expect(res.body.message).toContain("profileBindings[0].profileTemplateId");
  });

  it("refuses a template bound twice", async () => {
    const p = await createProfile();
    const res = await createRunner([
      { profileTemplateId: p, profileName: "one", isDefault: true },
      { profileTemplateId: p, profileName: "two" },
    ]);
    expectInvalid(
      res,
      "profileBindings[1].profileTemplateId",
      /already bound by profileBindings\[0\]/,
    );
  });

  it("refuses a duplicate explicit profileName", async () => {
    const a = await createProfile();
    const b = await createProfile();
    const res = await createRunner([
      { profileTemplateId: a, profileName: "same", isDefault: true },
      { profileTemplateId: b, profileName: "same" },
    ]);
    expectInvalid(
      res,
      "profileBindings[1].profileName",
      /'same' is already used by profileBindings\[0\]/,
    );
  });

  it("refuses a duplicate effective profileName (alias equal to another template's display name)", async () => {
    const name = unique("shared");
    const a = await createProfile({}, name);
    const b = await createProfile();
    const res = await createRunner([
      { profileTemplateId: b, profileName: name, isDefault: true },
      { profileTemplateId: a },
    ]);
    expectInvalid(res, "profileBindings[1].profileName", name);
  });

  it("refuses bindings without a default", async () => {
    const a = await createProfile();
    const b = await createProfile();
    const res = await createRunner([
      { profileTemplateId: a },
      { profileTemplateId: b, isDefault: false },
    ]);
    expectInvalid(res, "profileBindings", /exactly one binding must have isDefault: true, found 0/);
  });

  it("refuses two defaults, naming the second", async () => {
    const a = await createProfile();
    const b = await createProfile();
    const c = await createProfile();
    const res = await createRunner([
      { profileTemplateId: a },
      { profileTemplateId: b, isDefault: true },
      { profileTemplateId: c, isDefault: true },
    ]);
    expectInvalid(res, "profileBindings[2].isDefault", /found 2/);
  });

  it("refuses isDefault that is not a boolean", async () => {
    const a = await createProfile();
    const res = await createRunner([
      { profileTemplateId: a, isDefault: "true" as unknown as boolean },
    ]);
    expectInvalid(res, "profileBindings[0].isDefault", /expected boolean/);
  });

  it("refuses a binding without profileTemplateId", async () => {
    const res = await createRunner([{ isDefault: true } as Binding]);
    expectInvalid(res, "profileBindings[0].profileTemplateId", /required/);
  });

  it.each([
    ["not JSON", "{nope", /invalid JSON/],
    [
      "a duplicate key",
      '{"containerImage":"a","containerImage":"b"}',
      /duplicate key "containerImage"/,
    ],
  ])("refuses overridesJson holding %s", async (_what, text, why) => {
    const a = await createProfile();
    const res = await createRunner([
      { profileTemplateId: a, isDefault: true, overridesJson: text },
    ]);
    expectInvalid(res, "profileBindings[0].overridesJson", why);
  });

  it("refuses overridesJson that is not an object", async () => {
    const a = await createProfile();
    const res = await createRunner([
      { profileTemplateId: a, isDefault: true, overridesJson: "[1]" },
    ]);
    expectInvalid(res, "profileBindings[0].overridesJson", /found an array/);
  });

  it("refuses an unknown field inside overridesJson, naming it", async () => {
    const a = await createProfile();
    const res = await createRunner([
      { profileTemplateId: a, isDefault: true, overridesJson: overrides({ bogus: 1 }) },
    ]);
    expectInvalid(res, "profileBindings[0].overridesJson.bogus", "unknown field");
  });

  it("refuses an override that mixes a structured key with its alias", async () => {
    const a = await createProfile();
    const res = await createRunner([
      {
        profileTemplateId: a,
        isDefault: true,
        overridesJson: overrides({ namespace: {}, namespaceConfigJson: "{}" }),
      },
    ]);
    expectInvalid(
      res,
      "profileBindings[0].overridesJson.namespaceConfigJson",
      /cannot be combined/,
    );
  });

  it("refuses an override that makes the merged spec invalid", async () => {
    const a = await createProfile();
    const p = await createProfile({ resourceDefaults: { cpuRequest: "500m", cpuLimit: "1" } });
    const res = await createRunner([
      { profileTemplateId: a, isDefault: true },
      {
        profileTemplateId: p,
        overridesJson: overrides({ resourceDefaults: { cpuLimit: "100m" } }),
      },
    ]);
    expectInvalid(
      res,
      "profileBindings[1].overridesJson",
      /merged spec.*spec\.resourceDefaults\.cpuRequest/,
    );
  });

  it("refuses an override whose own rules fail (egress default missing)", async () => {
    const p = await createProfile();
    const network = { egress: { modes: { a: { type: "none" }, b: { type: "internet" } } } };
    const res = await createRunner([
      {
        profileTemplateId: p,
        isDefault: true,
        overridesJson: overrides({ networkConfigJson: JSON.stringify(network) }),
      },
    ]);
    expectInvalid(res, "profileBindings[0].overridesJson", /spec\.network\.egress\.default/);
  });

  it("refuses zoneDefaults that make a binding's merged spec invalid", async () => {
    const p = await createProfile({ resourceDefaults: { cpuLimit: "1" } });
    const res = await createRunner([{ profileTemplateId: p, isDefault: true }], {
      zoneDefaults: { resourceDefaults: { cpuRequest: "2" } },
    });
    expectInvalid(res, "profileBindings[0].overridesJson", /spec\.resourceDefaults\.cpuRequest/);
  });

  it("refuses invalid zoneDefaults, naming the field under zoneDefaults", async () => {
    const res = await createRunner([], {
      zoneDefaults: { resourceDefaults: { cpuRequest: "lots" } },
    });
    expectInvalid(res, "zoneDefaults.resourceDefaults.cpuRequest", /quantity/);
    const alias = await createRunner([], {
      zoneDefaults: { namespaceConfigJson: '{"strategy":"static","staticNamespace":"Bad"}' },
    });
    expectInvalid(alias, "zoneDefaults.namespace.staticNamespace", /DNS-1123/);
  });

  it("refuses a runner without identity.zone", async () => {
    const res = await t.call("POST", RUNNERS, { runnerId: unique("runner"), runner: {} });
    expectInvalid(res, "identity.zone", /required/);
    const empty = await t.call("POST", RUNNERS, {
      runnerId: unique("runner"),
      runner: { identity: { zone: "" } },
    });
    expectInvalid(empty, "identity.zone", /required/);
  });

  it("checks the rules again on runner edit", async () => {
    const a = await createProfile();
    const b = await createProfile();
    const runnerId = unique("runner");
    expectOk(await createRunner([{ profileTemplateId: a, isDefault: true }], {}, runnerId));
    const res = await t.call("PATCH", `${RUNNERS}/${runnerId}`, {
      runner: {
        profileBindings: [
          { profileTemplateId: a, isDefault: true },
          { profileTemplateId: b, isDefault: true },
        ],
      },
    });
    expectInvalid(res, "profileBindings[1].isDefault");
    const unchanged = expectOk(await t.call("GET", `${RUNNERS}/${runnerId}`));
    expect(unchanged.runner.profileBindings.map((x: Binding) => x.profileTemplateId)).toEqual([a]);
  });
});

describe("profiles that runners bind", () => {
  it("refuses deleting a bound profile with FAILED_PRECONDITION PROFILE_BOUND, naming the runner", async () => {
    const p = await createProfile();
    const spare = await createProfile();
    const runnerId = unique("binder");
    expectOk(await createRunner([{ profileTemplateId: p, isDefault: true }], {}, runnerId));

    const res = await t.call("DELETE", `${PROFILES}/${p}`);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.code).toBe(9);
    expect(res.body.message).toContain(runnerId);
    expect(errorInfo(res).reason).toBe("PROFILE_BOUND");
    expect(errorInfo(res).metadata.runnerIds).toContain(runnerId);
    expectOk(await t.call("GET", `${PROFILES}/${p}`));

    // Detached, it can go.
    expectOk(
      await t.call("PATCH", `${RUNNERS}/${runnerId}`, {
        runner: { profileBindings: [{ profileTemplateId: spare, isDefault: true }] },
      }),
    );
    expect(expectOk(await t.call("DELETE", `${PROFILES}/${p}`))).toEqual({});
    expect((await t.call("GET", `${PROFILES}/${p}`)).status).toBe(404);
  });

  it("refuses a profile edit that makes a binding's merged spec invalid, naming the runner", async () => {
    const p = await createProfile({ resourceDefaults: { cpuRequest: "500m" } }, unique("tight"));
    const runnerId = unique("strict");
    expectOk(
      await createRunner(
        [
          {
            profileTemplateId: p,
            isDefault: true,
            overridesJson: overrides({ resourceDefaults: { cpuLimit: "1" } }),
          },
        ],
        {},
        runnerId,
      ),
    );
    const before = expectOk(await t.call("GET", `${PROFILES}/${p}`)).profileTemplate;

    const res = await t.call("PATCH", `${PROFILES}/${p}`, {
      profileTemplate: {
        displayName: before.displayName,
        spec: { resourceDefaults: { cpuRequest: "2" } },
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.code).toBe(3);
    expect(res.body.message).toContain(runnerId);
    expect(res.body.message).toContain("spec.resourceDefaults.cpuRequest");
    expect(violations(res).some((v) => v.description.includes(runnerId))).toBe(true);

    const after = expectOk(await t.call("GET", `${PROFILES}/${p}`)).profileTemplate;
    expect(after.spec.resourceDefaults.cpuRequest).toBe("500m");
    expect(after.updatedAt).toBe(before.updatedAt);

    // An edit that keeps the merged spec valid goes through.
    expectOk(
      await t.call("PATCH", `${PROFILES}/${p}`, {
        profileTemplate: {
          displayName: before.displayName,
          spec: { resourceDefaults: { cpuRequest: "1" } },
        },
      }),
    );
  });

  it("refuses a profile rename that collides with another binding's name, naming the runner", async () => {
    const a = await createProfile();
    const b = await createProfile();
    const runnerId = unique("named");
    expectOk(
      await createRunner(
        [
          { profileTemplateId: a, isDefault: true },
          { profileTemplateId: b, profileName: "taken" },
        ],
        {},
        runnerId,
      ),
    );
    const res = await t.call("PATCH", `${PROFILES}/${a}`, {
      profileTemplate: { displayName: "taken", spec: {} },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.code).toBe(3);
    expect(res.body.message).toContain(runnerId);
  });

  it("answers the renamed profile's display name as the effective profileName", async () => {
    const a = await createProfile();
    const runnerId = unique("rename");
    expectOk(await createRunner([{ profileTemplateId: a, isDefault: true }], {}, runnerId));
    expectOk(
      await t.call("PATCH", `${PROFILES}/${a}`, {
        profileTemplate: { displayName: "renamed-x", spec: {} },
      }),
    );
    const runner = expectOk(await t.call("GET", `${RUNNERS}/${runnerId}`)).runner;
    expect(runner.profileBindings[0].profileName).toBe("renamed-x");
  });
});
