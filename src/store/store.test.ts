import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityRepo } from "../identity/identity-repo.js";
import { hashToken, newTokenId, newTokenSecret } from "../identity/tokens.js";
import type { ProfileTemplate } from "../profiles/profile.js";
import { ProfileRepo } from "../profiles/profile-repo.js";
import type { ProfileSpec } from "../profiles/spec-schema.js";
import type { Runner } from "../runners/runner.js";
import { RunnerRepo } from "../runners/runner-repo.js";
import type { Sandbox } from "../sandboxes/sandbox.js";
import { SandboxRepo } from "../sandboxes/sandbox-repo.js";
import { startPostgres, type TestPostgres } from "../testing/postgres.js";
import {
  migrate,
  type OpenedStore,
  openStore,
  PG_FOREIGN_KEY_VIOLATION,
  PG_UNIQUE_VIOLATION,
  pgErrorCode,
  type StoreLocation,
} from "./database.js";
import { readPage } from "./paging.js";

/**
 * One contract for the system of record, run against both stores Paddock
 * supports: embedded PGlite (on disk, as `paddock serve` uses it) and a real
 * PostgreSQL 15 server. Whatever passes here behaves the same on both.
 */

const TABLES = [
  "api_tokens",
  "organizations",
  "profile_templates",
  "runner_bindings",
  "runners",
  "sandboxes",
  "users",
];

let seq = 0;
/** A name unique in this run, so that tests sharing one store never collide. */
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${(seq++).toString(36)}`;

function organization(id: string, at = new Date()) {
  return {
    organizationId: id,
    displayName: id,
    maxCpu: "",
    maxMemory: "",
    createdAt: at,
    updatedAt: at,
  };
}

function profile(organizationId: string, over: Partial<ProfileTemplate> = {}): ProfileTemplate {
  const at = new Date();
  return {
    id: randomUUID(),
    organizationId,
    displayName: unique("p"),
    description: "",
    labels: {},
    spec: {} as ProfileSpec,
    createdAt: at,
    updatedAt: at,
    ...over,
  };
}

function runner(organizationId: string, over: Partial<Runner> = {}): Runner {
  const at = new Date();
  return {
    organizationId,
    runnerId: unique("r"),
    displayName: "runner",
    zone: "zone-a",
    clusterId: "",
    releaseChannel: "RELEASE_CHANNEL_STABLE",
    bindings: [],
    zoneDefaults: {} as ProfileSpec,
    connectionStatus: "DISCONNECTED",
    lastHeartbeatAt: null,
    backend: "",
    agentVersion: "",
    createdAt: at,
    updatedAt: at,
    ...over,
  };
}

function binding(profileTemplateId: string, profileName: string, isDefault = false) {
  return {
    profileTemplateId,
    profileName,
    isDefault,
    overridesJson: "{}",
    overrides: {} as ProfileSpec,
  };
}

/** Resolves with the Postgres error code the promise was rejected with. */
async function errorCodeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return pgErrorCode(error) ?? `no code: ${String(error)}`;
  }
  return "no error";
}

/** Walks every page of a list call with the given page size, through real page tokens. */
async function allPages<T>(
  pageSize: number,
  list: (page: ReturnType<typeof readPage>) => Promise<{ items: T[]; nextPageToken: string }>,
): Promise<{ pages: T[][]; items: T[] }> {
  const pages: T[][] = [];
  let pageToken = "";
  do {
    const result = await list(readPage({ pageSize, pageToken }));
    pages.push(result.items);
    pageToken = result.nextPageToken;
    if (pages.length > 100) throw new Error("paging does not end");
  } while (pageToken);
  return { pages, items: pages.flat() };
}

interface Backend {
  location: StoreLocation;
  close(): Promise<void>;
}

const backends: Record<string, () => Promise<Backend>> = {
  pglite: async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "paddock-store-test-"));
    return {
      location: { kind: "embedded", dataDir },
      close: async () => rmSync(dataDir, { recursive: true, force: true }),
    };
  },
  postgres: async () => {
    const server: TestPostgres = await startPostgres();
    try {
      return {
        location: { kind: "postgres", url: await server.newDatabase() },
        close: server.stop,
      };
    } catch (error) {
      await server.stop();
      throw error;
    }
  },
};

describe.each(Object.keys(backends))("store contract on %s", (kind) => {
  let backend: Backend | undefined;
  let store: OpenedStore;
  let identity: IdentityRepo;
  let profiles: ProfileRepo;
  let runners: RunnerRepo;
  /** An organization of its own for each test that needs one. */
  const newOrg = async () => {
    const id = unique("org");
    await identity.insertOrganization(organization(id));
    return id;
  };

  const reopen = async () => {
    await store?.close();
    store = await openStore((backend as Backend).location);
    identity = new IdentityRepo(store.db);
    profiles = new ProfileRepo(store.db);
    runners = new RunnerRepo(store.db);
  };

  beforeAll(async () => {
    backend = await (backends[kind] as () => Promise<Backend>)();
    await reopen();
  });

  afterAll(async () => {
    await store?.close();
    await backend?.close();
  });

  it("applies the migrations, and applying them again changes nothing", async () => {
    const tables = async () =>
      (
        await sql<{ table_name: string }>`
          select table_name from information_schema.tables
          where table_schema = current_schema() and table_name not like 'kysely_%'
          order by table_name`.execute(store.db)
      ).rows.map((r) => r.table_name);
    const applied = async () =>
      (
        await sql<{ name: string }>`select name from kysely_migration order by name`.execute(
          store.db,
        )
      ).rows.map((r) => r.name);
    expect(await tables()).toEqual(TABLES);
    const migrations = await applied();
    expect(migrations).toEqual([
      "0001_identity_profiles_runners",
      "0002_sandboxes",
      "0003_binding_warm_pools",
    ]);

    const org = await newOrg();
    await migrate(store.db);
    expect(await applied()).toEqual(migrations);
    // A restart opens (and migrates) the same store again; the data stays.
    await reopen();
    expect(await applied()).toEqual(migrations);
    expect(await tables()).toEqual(TABLES);
    expect(await identity.getOrganization(org)).toBeDefined();
  });

  it("inserts, gets and pages organizations and users", async () => {
    const at = new Date("2024-02-29T12:34:56.789Z");
    const orgIds = [unique("org-page"), unique("org-page"), unique("org-page")];
    for (const id of [...orgIds].reverse()) await identity.insertOrganization(organization(id, at));
    expect(await identity.getOrganization(orgIds[0] as string)).toEqual(
      organization(orgIds[0] as string, at),
    );
    expect(await identity.getOrganization(unique("missing"))).toBeUndefined();

    // Organizations are global: page through all of them, ours appear once each, in id order.
    const { items } = await allPages(2, (page) => identity.listOrganizations(page));
    const ids = items.map((o) => o.organizationId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual([...ids].sort());
    expect(ids.filter((id) => orgIds.includes(id))).toEqual(orgIds);
    expect(await identity.countOrganizations()).toBe(ids.length);

    const org = orgIds[0] as string;
    const userIds = ["carol", "alice", "erin", "bob", "dave"];
    for (const userId of userIds) {
      await identity.insertUser({
        organizationId: org,
        userId,
        role: userId === "alice" ? "SANDBOX_ADMIN" : "SANDBOX_USER",
        platformAdmin: false,
        createdAt: at,
      });
    }
    const users = await allPages(2, (page) => identity.listUsers(org, page));
    expect(users.pages.map((p) => p.map((u) => u.userId))).toEqual([
      ["alice", "bob"],
      ["carol", "dave"],
      ["erin"],
    ]);
    expect(await identity.getUser(org, "alice")).toEqual({
      organizationId: org,
      userId: "alice",
      role: "SANDBOX_ADMIN",
      platformAdmin: false,
      createdAt: at,
    });
  });

  it("pages profile templates by creation time, ties broken by id, with no row lost or repeated", async () => {
    const org = await newOrg();
    const base = Date.parse("2025-01-01T00:00:00.000Z");
    const made: ProfileTemplate[] = [];
    // Several share a creation time, so the page boundary falls inside a tie.
    for (const offset of [5, 0, 3, 3, 3, 3, 3, 1, 7, 7, 2]) {
      const at = new Date(base + offset);
      const p = profile(org, { createdAt: at, updatedAt: at });
      await profiles.insert(p);
      made.push(p);
    }
    const expected = [...made]
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1))
      .map((p) => p.id);
    for (const size of [1, 2, 3, 4, 11, 12]) {
      const { pages, items } = await allPages(size, (page) => profiles.list(org, page));
      expect(items.map((p) => p.id)).toEqual(expected);
      expect(pages.length).toBe(Math.max(1, Math.ceil(expected.length / size)));
    }
    // The default page size is 50; an exact fit gives no next page.
    const one = await profiles.list(org, readPage({}));
    expect(one.items).toHaveLength(made.length);
    expect(one.nextPageToken).toBe("");
    expect(await profiles.get(org, made[0]?.id as string)).toEqual(made[0]);
    expect(await profiles.getByDisplayName(org, made[1]?.displayName as string)).toEqual(made[1]);
    expect(await profiles.get(org, "not-a-uuid")).toBeUndefined();
    expect(await profiles.get(org, randomUUID())).toBeUndefined();
  });

  it("pages runners by id and returns each with its own bindings in order", async () => {
    const org = await newOrg();
    const p1 = profile(org);
    const p2 = profile(org);
    await profiles.insert(p1);
    await profiles.insert(p2);
    const ids = ["r-c", "r-a", "r-e", "r-b", "r-d"];
    for (const runnerId of ids) {
      await runners.insert(
        runner(org, {
          runnerId,
          bindings: [binding(p2.id, `two-${runnerId}`), binding(p1.id, `one-${runnerId}`, true)],
        }),
      );
    }
    const { pages, items } = await allPages(2, (page) => runners.list(org, page));
    expect(pages.map((p) => p.map((r) => r.runnerId))).toEqual([
      ["r-a", "r-b"],
      ["r-c", "r-d"],
      ["r-e"],
    ]);
    for (const r of items) {
      expect(r.bindings.map((b) => [b.profileTemplateId, b.profileName, b.isDefault])).toEqual([
        [p2.id, `two-${r.runnerId}`, false],
        [p1.id, `one-${r.runnerId}`, true],
      ]);
    }
    // Update replaces the whole binding list.
    const r = (await runners.get(org, "r-a")) as Runner;
    await runners.update({
      ...r,
      displayName: "renamed",
      bindings: [binding(p1.id, "only", true)],
    });
    const after = await runners.get(org, "r-a");
    expect(after?.displayName).toBe("renamed");
    expect(after?.bindings.map((b) => b.profileName)).toEqual(["only"]);
    expect(await profiles.bindingRunners(org, p2.id)).toEqual(["r-b", "r-c", "r-d", "r-e"]);
    expect((await runners.bindingTemplate(org, p2.id)).map((x) => x.runnerId)).toEqual([
      "r-b",
      "r-c",
      "r-d",
      "r-e",
    ]);
  });

  it("keeps every organization's rows invisible to every other", async () => {
    const a = await newOrg();
    const b = await newOrg();
    const p = profile(a, { displayName: "shared-name" });
    await profiles.insert(p);
    const r = runner(a, { runnerId: "shared-runner", bindings: [binding(p.id, "x", true)] });
    await runners.insert(r);
    await identity.insertUser({
      organizationId: a,
      userId: "alice",
      role: "SANDBOX_ADMIN",
      platformAdmin: false,
      createdAt: new Date(),
    });

    expect(await profiles.get(b, p.id)).toBeUndefined();
    expect(await profiles.get(b, p.id, "update")).toBeUndefined();
    expect(await profiles.getByDisplayName(b, "shared-name")).toBeUndefined();
    expect(await profiles.getMany(b, [p.id], "share")).toEqual([]);
    expect((await profiles.list(b, readPage({}))).items).toEqual([]);
    expect(await profiles.bindingRunners(b, p.id)).toEqual([]);
    expect(await runners.get(b, r.runnerId)).toBeUndefined();
    expect((await runners.list(b, readPage({}))).items).toEqual([]);
    expect(await runners.bindingTemplate(b, p.id)).toEqual([]);
    expect(await identity.getUser(b, "alice")).toBeUndefined();
    expect((await identity.listUsers(b, readPage({}))).items).toEqual([]);

    // Writes through the wrong organization touch nothing.
    await profiles.update({ ...p, organizationId: b, displayName: "hijacked" });
    expect(await profiles.delete(b, p.id)).toBe(false);
    expect(await runners.delete(b, r.runnerId)).toBe(false);
    expect(await profiles.get(a, p.id)).toEqual(p);
    expect((await runners.get(a, r.runnerId))?.bindings).toHaveLength(1);

    // Names are unique per organization only: B may reuse A's.
    const pb = profile(b, { displayName: "shared-name" });
    await profiles.insert(pb);
    await runners.insert(runner(b, { runnerId: "shared-runner" }));
    expect((await profiles.getByDisplayName(a, "shared-name"))?.id).toBe(p.id);
    expect((await profiles.getByDisplayName(b, "shared-name"))?.id).toBe(pb.id);
    expect((await runners.get(b, "shared-runner"))?.bindings).toEqual([]);
  });

  it("reports unique violations as 23505", async () => {
    const org = await newOrg();
    expect(await errorCodeOf(identity.insertOrganization(organization(org)))).toBe(
      PG_UNIQUE_VIOLATION,
    );
    const user = {
      organizationId: org,
      userId: "u",
      role: "SANDBOX_USER" as const,
      platformAdmin: false,
      createdAt: new Date(),
    };
    await identity.insertUser(user);
    expect(await errorCodeOf(identity.insertUser(user))).toBe(PG_UNIQUE_VIOLATION);

    const p = profile(org);
    await profiles.insert(p);
    expect(await errorCodeOf(profiles.insert({ ...p, id: randomUUID() }))).toBe(
      PG_UNIQUE_VIOLATION,
    );
    expect(await errorCodeOf(profiles.insert({ ...p, displayName: "other" }))).toBe(
      PG_UNIQUE_VIOLATION,
    );

    const r = runner(org, { clusterId: "cluster-1" });
    await runners.insert(r);
    expect(await errorCodeOf(runners.insert({ ...r, clusterId: "" }))).toBe(PG_UNIQUE_VIOLATION);
    // A cluster id is unique in the organization; an empty one may repeat.
    const clash = await runners.insert(runner(org, { clusterId: "cluster-1" })).catch((e) => e);
    expect(pgErrorCode(clash)).toBe(PG_UNIQUE_VIOLATION);
    // RunnerService tells this clash from a duplicate runner id by the index's name.
    expect(`${clash.constraint ?? ""} ${clash.message}`).toContain("runners_cluster");
    await runners.insert(runner(org));
    await runners.insert(runner(org));
    // A template is bound at most once per runner.
    expect(
      await errorCodeOf(
        runners.insert(
          runner(org, { bindings: [binding(p.id, "a", true), binding(p.id, "b", false)] }),
        ),
      ),
    ).toBe(PG_UNIQUE_VIOLATION);

    const tokenHash = hashToken(newTokenSecret());
    const token = {
      tokenId: newTokenId(),
      tokenHash,
      organizationId: org,
      userId: "u",
      createdAt: new Date(),
    };
    await identity.insertToken(token);
    expect(await errorCodeOf(identity.insertToken({ ...token, tokenId: newTokenId() }))).toBe(
      PG_UNIQUE_VIOLATION,
    );
    expect(pgErrorCode(new Error("plain"))).toBeUndefined();
    expect(pgErrorCode(null)).toBeUndefined();
  });

  it("refuses to delete a profile template a runner binds (23503), and allows it once unbound", async () => {
    const org = await newOrg();
    const p = profile(org);
    await profiles.insert(p);
    const r = runner(org, { bindings: [binding(p.id, "bound", true)] });
    await runners.insert(r);
    expect(await errorCodeOf(profiles.delete(org, p.id))).toBe(PG_FOREIGN_KEY_VIOLATION);
    expect(await profiles.get(org, p.id)).toEqual(p);
    // A binding to a template that does not exist is refused the same way.
    expect(
      await errorCodeOf(
        runners.insert(runner(org, { bindings: [binding(randomUUID(), "x", true)] })),
      ),
    ).toBe(PG_FOREIGN_KEY_VIOLATION);

    await runners.update({ ...r, bindings: [] });
    expect(await profiles.delete(org, p.id)).toBe(true);
    expect(await profiles.get(org, p.id)).toBeUndefined();
    expect(await profiles.delete(org, p.id)).toBe(false);
  });

  it("deleting a runner deletes its bindings and its runner tokens", async () => {
    const org = await newOrg();
    const p = profile(org);
    await profiles.insert(p);
    const r = runner(org, { bindings: [binding(p.id, "bound", true)] });
    await runners.insert(r);
    const secret = newTokenSecret();
    const tokenId = newTokenId();
    await identity.insertToken({
      tokenId,
      tokenHash: hashToken(secret),
      organizationId: org,
      runnerId: r.runnerId,
      createdAt: new Date(),
    });
    expect(await identity.principalForTokenHash(hashToken(secret))).toEqual({
      kind: "runner",
      organizationId: org,
      runnerId: r.runnerId,
      tokenId,
    });

    expect(await runners.delete(org, r.runnerId)).toBe(true);
    expect(await runners.get(org, r.runnerId)).toBeUndefined();
    expect(await identity.principalForTokenHash(hashToken(secret))).toBeUndefined();
    const left = await store.db
      .selectFrom("runner_bindings")
      .select("runner_id")
      .where("organization_id", "=", org)
      .execute();
    expect(left).toEqual([]);
    const tokens = await store.db
      .selectFrom("api_tokens")
      .select("token_id")
      .where("token_id", "=", tokenId)
      .execute();
    expect(tokens).toEqual([]);
    // Nothing binds the template any more.
    expect(await profiles.delete(org, p.id)).toBe(true);
    expect(await runners.delete(org, r.runnerId)).toBe(false);
  });

  it("finds the principal of a token by its hash, and nothing once it is deleted", async () => {
    const org = await newOrg();
    await identity.insertUser({
      organizationId: org,
      userId: "admin",
      role: "SANDBOX_ADMIN",
      platformAdmin: true,
      createdAt: new Date(),
    });
    const secrets = [newTokenSecret(), newTokenSecret()];
    const tokenIds = [newTokenId(), newTokenId()];
    const created = new Date("2025-06-01T08:00:00.001Z");
    for (const [i, secret] of secrets.entries()) {
      await identity.insertToken({
        tokenId: tokenIds[i] as string,
        tokenHash: hashToken(secret),
        organizationId: org,
        userId: "admin",
        createdAt: created,
      });
    }
    expect(await identity.principalForTokenHash(hashToken(secrets[0] as string))).toEqual({
      kind: "user",
      organizationId: org,
      userId: "admin",
      role: "SANDBOX_ADMIN",
      platformAdmin: true,
      tokenId: tokenIds[0],
    });
    expect(await identity.principalForTokenHash(hashToken(newTokenSecret()))).toBeUndefined();
    expect(await identity.principalForTokenHash(secrets[0] as string)).toBeUndefined();

    const used = new Date("2025-06-02T09:10:11.012Z");
    await identity.touchToken(tokenIds[0] as string, used);
    expect(await identity.listUserTokens(org, "admin")).toEqual(
      [
        { tokenId: tokenIds[0], createdAt: created, lastUsedAt: used },
        { tokenId: tokenIds[1], createdAt: created, lastUsedAt: null },
      ].sort((x, y) => ((x.tokenId as string) < (y.tokenId as string) ? -1 : 1)),
    );

    expect(await identity.deleteUserToken(org, "someone-else", tokenIds[0] as string)).toBe(false);
    expect(await identity.deleteUserToken(org, "admin", tokenIds[0] as string)).toBe(true);
    expect(await identity.principalForTokenHash(hashToken(secrets[0] as string))).toBeUndefined();
    expect(await identity.deleteUserToken(org, "admin", tokenIds[0] as string)).toBe(false);
    // The other token still works.
    expect((await identity.principalForTokenHash(hashToken(secrets[1] as string)))?.tokenId).toBe(
      tokenIds[1],
    );
  });

  it("round-trips jsonb: nested objects, arrays, unicode, escapes, numbers", async () => {
    const org = await newOrg();
    const tricky = {
      nested: { a: { b: { c: [1, 2, { d: [true, false, null] }] } } },
      arrays: [[], [[]], ["x", 1, 1.5, -0.25, 1e21, null, {}]],
      topLevelArrayOfObjects: [{ k: "v" }, { k: "w", extra: { deep: ["z"] } }],
      emptyObject: {},
      emptyArray: [],
      unicode: "héllo wörld — 日本語 한국어 עברית 🐑🚀 e\u0301 \u{1f469}\u200d\u{1f4bb}",
      "kéy with ünïcode ✓": "value",
      escapes: 'quote " backslash \\ newline \n tab \t slash / control \u0001',
      sqlish: "'; drop table profile_templates; --",
      numbers: { zero: 0, negative: -42, fraction: 0.1, big: 9007199254740991 },
      cidrs: ["140.82.112.0/20", "10.42.0.0/16"],
    };
    const labels = { "app.kubernetes.io/name": "sandbox", emoji: "🐑", empty: "" };
    const p = profile(org, {
      labels,
      spec: tricky as unknown as ProfileSpec,
      description: "ünïcode ✓ 🐑",
    });
    await profiles.insert(p);
    const got = await profiles.get(org, p.id);
    expect(got?.spec).toEqual(tricky);
    expect(got?.labels).toEqual(labels);
    expect(got?.description).toBe(p.description);
    expect(Array.isArray((got?.spec as any)?.arrays)).toBe(true);

    // A jsonb value that is itself an array survives too (pg would make a JS array a Postgres array).
    const arraySpec = [1, "two", { three: [3] }] as unknown as ProfileSpec;
    await profiles.update({ ...p, spec: arraySpec, updatedAt: new Date() });
    expect((await profiles.get(org, p.id))?.spec).toEqual(arraySpec);

    const overrides = {
      network: { egress: { default: "allow", modes: { allow: { cidrs: ["1.2.3.0/24"] } } } },
      ключ: "значение",
    };
    const r = runner(org, {
      zoneDefaults: tricky as unknown as ProfileSpec,
      bindings: [
        {
          profileTemplateId: p.id,
          profileName: "名前",
          isDefault: true,
          overridesJson: JSON.stringify(overrides),
          overrides: overrides as unknown as ProfileSpec,
        },
      ],
    });
    await runners.insert(r);
    const gotRunner = await runners.get(org, r.runnerId);
    expect(gotRunner?.zoneDefaults).toEqual(tricky);
    expect(gotRunner?.bindings[0]?.overrides).toEqual(overrides);
    // overrides_json is text: kept byte for byte, unlike jsonb.
    expect(gotRunner?.bindings[0]?.overridesJson).toBe(JSON.stringify(overrides));
    expect(gotRunner?.bindings[0]?.profileName).toBe("名前");
  });

  it("inserts a burst of sandboxes together, and records many runners' observations in one write", async () => {
    const org = await newOrg();
    const r = runner(org);
    await runners.insert(r);
    const repo = new SandboxRepo(store.db);
    const at = new Date("2026-01-02T03:04:05.006Z");
    const sandbox = (over: Partial<Sandbox> = {}): Sandbox => ({
      sandboxId: randomUUID(),
      organizationId: org,
      userId: "u",
      runnerId: r.runnerId,
      profileId: randomUUID(),
      profileName: "p",
      status: "SANDBOX_STATUS_PENDING",
      statusReason: "",
      desired: "running",
      gracefulShutdownSeconds: 10,
      spec: { image: 'é"x' } as unknown as Sandbox["spec"],
      tags: ["t"],
      appliedEgressMode: "none",
      appliedIngressMode: "none",
      serviceAddress: "",
      exposedPorts: [8080],
      exitCode: null,
      startedAt: null,
      expiresAt: at,
      createdAt: at,
      updatedAt: at,
      ...over,
    });
    const [a, b, done] = [
      sandbox(),
      sandbox({ startedAt: at }),
      sandbox({ status: "SANDBOX_STATUS_COMPLETED", exitCode: 0 }),
    ] as [Sandbox, Sandbox, Sandbox];
    // Submitted together: one statement (a unique violation would fail all three).
    await Promise.all([a, b, done].map((s) => repo.insert(s)));
    expect(await repo.get(org, a.sandboxId)).toEqual(a);

    // A duplicate in a burst fails alone; the others of its burst are written.
    const c = sandbox();
    const results = await Promise.allSettled([repo.insert(c), repo.insert({ ...a })]);
    expect(results[0].status).toBe("fulfilled");
    expect(results[1].status === "rejected" && pgErrorCode(results[1].reason)).toBe(
      PG_UNIQUE_VIOLATION,
    );
    expect(await repo.get(org, c.sandboxId)).toEqual(c);

    const later = new Date(at.getTime() + 1_000);
    const observed = (s: Sandbox, over: Partial<Sandbox> = {}) => ({
      sandboxId: s.sandboxId,
      status: "SANDBOX_STATUS_RUNNING" as const,
      statusReason: "up",
      exitCode: null,
      startedAt: null,
      serviceAddress: "10.0.0.1",
      exposedPorts: [],
      updatedAt: later,
      ...over,
    });
    const updated = await repo.recordObserved(org, [
      observed(a, { startedAt: later, exposedPorts: [9090] }),
      observed(b, { status: "SANDBOX_STATUS_COMPLETED", exitCode: 3 }),
      observed(done),
    ]);
    // Terminal states are final: the completed one is left as it was, and not answered.
    expect([...updated.keys()].sort()).toEqual([a.sandboxId, b.sandboxId].sort());
    expect(await repo.get(org, done.sandboxId)).toEqual(done);
    const changed = {
      status: "SANDBOX_STATUS_RUNNING",
      statusReason: "up",
      serviceAddress: "10.0.0.1",
      updatedAt: later,
    };
    expect(updated.get(a.sandboxId)).toEqual({
      ...a,
      ...changed,
      startedAt: later,
      exposedPorts: [9090],
    });
    // Not observed: the start time and ports stay as they were.
    expect(updated.get(b.sandboxId)).toEqual({
      ...b,
      ...changed,
      status: "SANDBOX_STATUS_COMPLETED",
      exitCode: 3,
    });
    for (const s of [a, b])
      expect(await repo.get(org, s.sandboxId)).toEqual(updated.get(s.sandboxId));
    // Another organization's sandbox of the same id is not touched.
    expect((await repo.recordObserved(await newOrg(), [observed(c)])).size).toBe(0);
    expect(await repo.get(org, c.sandboxId)).toEqual(c);
  });

  it("round-trips timestamps as Date, to the millisecond", async () => {
    const org = await newOrg();
    const moments = [
      new Date("1970-01-01T00:00:00.000Z"),
      new Date("1999-12-31T23:59:59.999Z"),
      new Date("2024-02-29T12:00:00.001Z"),
      new Date("2038-01-19T03:14:08.123Z"),
      new Date(),
    ];
    for (const at of moments) {
      const later = new Date(at.getTime() + 1);
      const p = profile(org, { createdAt: at, updatedAt: later });
      await profiles.insert(p);
      const got = await profiles.get(org, p.id);
      expect(got?.createdAt).toBeInstanceOf(Date);
      expect(got?.createdAt.toISOString()).toBe(at.toISOString());
      expect(got?.updatedAt.getTime()).toBe(later.getTime());
    }
    const heartbeat = new Date("2025-03-04T05:06:07.089Z");
    const r = runner(org, { lastHeartbeatAt: heartbeat, createdAt: moments[1] as Date });
    await runners.insert(r);
    const nobeat = runner(org);
    await runners.insert(nobeat);
    const gotRunner = await runners.get(org, r.runnerId);
    expect(gotRunner?.lastHeartbeatAt).toBeInstanceOf(Date);
    expect(gotRunner?.lastHeartbeatAt?.getTime()).toBe(heartbeat.getTime());
    expect(gotRunner?.createdAt.getTime()).toBe(moments[1]?.getTime());
    expect((await runners.get(org, nobeat.runnerId))?.lastHeartbeatAt).toBeNull();
    const o = await identity.getOrganization(org);
    expect(o?.createdAt).toBeInstanceOf(Date);
  });
});
