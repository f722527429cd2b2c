import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "./support/app.js";

const PROFILES = "/v1beta2/sandbox/profile-templates";
const RUNNERS = "/v1beta2/sandbox/runners";
const ORGS = "/v1beta2/admin/organizations";

/** Tenancy and roles: another organization's objects are NOT_FOUND; writes need SANDBOX_ADMIN. */
describe("tenancy and roles", () => {
  let t: TestApp;
  let acmeAdmin: string;
  let acmeUser: string;
  let defaultUser: string;
  let profileId: string;
  const expectStatus = (res: { status: number; body: any }, status: number, code: number) => {
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    expect(res.body.code).toBe(code);
  };

  beforeAll(async () => {
    t = await startTestApp();
    expect(
      (await t.call("POST", ORGS, { organizationId: "acme", displayName: "Acme" })).status,
    ).toBe(200);
    acmeAdmin = (
      await t.call("POST", `${ORGS}/acme/users`, { userId: "ada", role: "SANDBOX_ADMIN" })
    ).body.token;
    acmeUser = (await t.call("POST", `${ORGS}/acme/users`, { userId: "bob", role: "SANDBOX_USER" }))
      .body.token;
    defaultUser = (
      await t.call("POST", `${ORGS}/default/users`, { userId: "carol", role: "SANDBOX_USER" })
    ).body.token;
    const created = await t.call("POST", PROFILES, {
      profileTemplate: { displayName: "private", spec: {} },
    });
    profileId = created.body.profileTemplate.id;
    expect(acmeAdmin).toMatch(/^pdk_/);
    expect(acmeUser).toMatch(/^pdk_/);
  });
  afterAll(() => t.close());

  const otherOrgCalls: [string, string, () => string, unknown?][] = [
    ["GET", "profile by id", () => `${PROFILES}/${profileId}`],
    ["GET", "profile by name", () => `${PROFILES}/private`],
    [
      "PATCH",
      "profile",
      () => `${PROFILES}/${profileId}`,
      { profileTemplate: { displayName: "x", spec: {} } },
    ],
    ["DELETE", "profile", () => `${PROFILES}/${profileId}`],
    ["GET", "runner", () => `${RUNNERS}/local`],
    ["PATCH", "runner", () => `${RUNNERS}/local`, { runner: { displayName: "mine now" } }],
    ["DELETE", "runner", () => `${RUNNERS}/local`],
    ["POST", "runner token", () => `${RUNNERS}/local/tokens`, {}],
  ];

  it.each(otherOrgCalls)(
    "%s %s of another organization answers 404 to its admin",
    async (method, _what, path, body) => {
      expectStatus(await t.call(method, path(), body, acmeAdmin), 404, 5);
    },
  );

  it("lists show only the caller's organization", async () => {
    const profiles = await t.call("GET", PROFILES, undefined, acmeAdmin);
    expect(profiles.status).toBe(200);
    expect(profiles.body).toEqual({ profileTemplates: [], nextPageToken: "" });
    const runners = await t.call("GET", RUNNERS, undefined, acmeUser);
    expect(runners.body).toEqual({ runners: [], nextPageToken: "" });
    const own = await t.call("GET", PROFILES, undefined, defaultUser);
    expect(own.body.profileTemplates.map((p: any) => p.displayName).sort()).toEqual([
      "default",
      "private",
    ]);
  });

  const writes: [string, string, () => string, unknown?][] = [
    ["POST", "profile", () => PROFILES, { profileTemplate: { displayName: "u", spec: {} } }],
    [
      "PATCH",
      "profile",
      () => `${PROFILES}/${profileId}`,
      { profileTemplate: { displayName: "u", spec: {} } },
    ],
    ["DELETE", "profile", () => `${PROFILES}/${profileId}`],
    ["POST", "runner", () => RUNNERS, { runnerId: "r1", runner: { identity: { zone: "z" } } }],
    ["PATCH", "runner", () => `${RUNNERS}/local`, { runner: { displayName: "x" } }],
    ["DELETE", "runner", () => `${RUNNERS}/local`],
    ["POST", "runner token", () => `${RUNNERS}/local/tokens`, {}],
  ];

  it.each(writes)("%s %s by a SANDBOX_USER answers 403", async (method, _what, path, body) => {
    expectStatus(await t.call(method, path(), body, defaultUser), 403, 7);
  });

  it("a SANDBOX_USER may read profiles and runners of their organization", async () => {
    expect((await t.call("GET", `${PROFILES}/${profileId}`, undefined, defaultUser)).status).toBe(
      200,
    );
    expect((await t.call("GET", `${RUNNERS}/local`, undefined, defaultUser)).status).toBe(200);
  });

  it("an organization admin manages users and tokens of its own organization only", async () => {
    expect(
      (
        await t.call(
          "POST",
          `${ORGS}/acme/users`,
          { userId: "dan", role: "SANDBOX_USER" },
          acmeAdmin,
        )
      ).status,
    ).toBe(200);
    expect(
      (await t.call("GET", `${ORGS}/acme/users`, undefined, acmeAdmin)).body.users.map(
        (u: any) => u.userId,
      ),
    ).toEqual(["ada", "bob", "dan"]);
    expect((await t.call("POST", `${ORGS}/acme/users/bob/tokens`, {}, acmeAdmin)).status).toBe(200);
    expectStatus(
      await t.call(
        "POST",
        `${ORGS}/default/users`,
        { userId: "eve", role: "SANDBOX_ADMIN" },
        acmeAdmin,
      ),
      404,
      5,
    );
    expectStatus(await t.call("GET", `${ORGS}/default/users`, undefined, acmeAdmin), 404, 5);
    expectStatus(await t.call("POST", `${ORGS}/default/users/admin/tokens`, {}, acmeAdmin), 404, 5);
    expectStatus(
      await t.call("GET", `${ORGS}/default/users/admin/tokens`, undefined, acmeAdmin),
      404,
      5,
    );
    expectStatus(
      await t.call("DELETE", `${ORGS}/default/users/admin/tokens/x`, undefined, acmeAdmin),
      404,
      5,
    );
    expectStatus(await t.call("GET", `${ORGS}/default`, undefined, acmeAdmin), 404, 5);
  });

  it("organizations are for platform admins only", async () => {
    expectStatus(await t.call("POST", ORGS, { organizationId: "evil" }, acmeAdmin), 403, 7);
    expectStatus(await t.call("GET", ORGS, undefined, acmeAdmin), 403, 7);
    expectStatus(
      await t.call("PATCH", `${ORGS}/acme`, { organization: { maxCpu: "64" } }, acmeAdmin),
      403,
      7,
    );
    expect((await t.call("GET", `${ORGS}/acme`, undefined, acmeUser)).status).toBe(200);
  });

  it("a SANDBOX_USER cannot create users but may manage their own tokens", async () => {
    expectStatus(
      await t.call(
        "POST",
        `${ORGS}/acme/users`,
        { userId: "mallory", role: "SANDBOX_ADMIN" },
        acmeUser,
      ),
      403,
      7,
    );
    expect((await t.call("POST", `${ORGS}/acme/users/bob/tokens`, {}, acmeUser)).status).toBe(200);
    expectStatus(await t.call("POST", `${ORGS}/acme/users/ada/tokens`, {}, acmeUser), 403, 7);
  });

  it("a revoked token is refused on the next call; token lists never show secrets", async () => {
    const issued = await t.call("POST", `${ORGS}/acme/users/dan/tokens`, {}, acmeAdmin);
    const { tokenId, token } = issued.body;
    expect((await t.call("GET", PROFILES, undefined, token)).status).toBe(200);
    const listed = await t.call("GET", `${ORGS}/acme/users/dan/tokens`, undefined, acmeAdmin);
    expect(listed.body.tokens.map((x: any) => x.tokenId)).toContain(tokenId);
    expect(JSON.stringify(listed.body)).not.toContain(token);
    const used = listed.body.tokens.find((x: any) => x.tokenId === tokenId);
    expect(used.lastUsedAt).not.toBeNull();
    expect(
      (await t.call("DELETE", `${ORGS}/acme/users/dan/tokens/${tokenId}`, undefined, acmeAdmin))
        .status,
    ).toBe(200);
    expectStatus(await t.call("GET", PROFILES, undefined, token), 401, 16);
  });

  it("calls without a valid bearer token answer 401", async () => {
    expectStatus(await t.call("GET", PROFILES, undefined, ""), 401, 16);
    expectStatus(await t.call("GET", PROFILES, undefined, "pdk_not-a-token"), 401, 16);
    expect((await t.call("GET", "/healthz", undefined, "")).status).toBe(200);
    expect((await t.call("GET", "/readyz", undefined, "")).status).toBe(200);
    expect((await t.call("GET", "/openapi.json", undefined, "")).status).toBe(200);
  });

  it("a runner token works only for its runner's agent, not the user API", async () => {
    const { token } = (await t.call("POST", `${RUNNERS}/local/tokens`, {})).body;
    expect(token).toMatch(/^pdk_/);
    expectStatus(await t.call("GET", PROFILES, undefined, token), 403, 7);
  });

  it("organization and user ids are DNS-1123 labels without '--'", async () => {
    for (const bad of ["Acme", "a--b", "-a", "a_b", "x".repeat(64)]) {
      const res = await t.call("POST", ORGS, { organizationId: bad });
      expectStatus(res, 400, 3);
      expect(res.body.details[0].fieldViolations[0].field).toBe("organizationId");
    }
    const res = await t.call("POST", `${ORGS}/acme/users`, {
      userId: "a--b",
      role: "SANDBOX_USER",
    });
    expectStatus(res, 400, 3);
    expectStatus(await t.call("POST", ORGS, { organizationId: "acme" }), 409, 6);
  });

  it("organization ceilings are quantities, and fields present replace the stored ones", async () => {
    const bad = await t.call("PATCH", `${ORGS}/acme`, { organization: { maxCpu: "lots" } });
    expectStatus(bad, 400, 3);
    expect(bad.body.details[0].fieldViolations[0].field).toBe("organization.maxCpu");
    const ok = await t.call("PATCH", `${ORGS}/acme`, {
      organization: { maxCpu: "8", maxMemory: "32Gi" },
    });
    expect(ok.body.organization).toMatchObject({
      organizationId: "acme",
      displayName: "Acme",
      maxCpu: "8",
      maxMemory: "32Gi",
    });
    const renamed = await t.call("PATCH", `${ORGS}/acme`, {
      organization: { display_name: "Acme Inc" },
    });
    expect(renamed.body.organization).toMatchObject({
      displayName: "Acme Inc",
      maxCpu: "8",
      maxMemory: "32Gi",
    });
  });
});
