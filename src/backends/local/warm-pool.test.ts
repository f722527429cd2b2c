import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../../test/support/app.js";
import {
  FIRST_SANDBOX_UID,
  findSandboxInstance,
  instanceCgroupDirs,
  instanceProcesses,
  localRoot,
  netnsList,
  sandboxCgroupDir,
  sandboxProcesses,
  sandboxShell,
  settle,
  slotClaims,
} from "../../../test/support/host-state.js";
import { STARTER_PROFILE_BODY } from "../../bootstrap.js";
import { addressFor } from "./network.js";

/**
 * Warm pools on the local backend, through the API, checked on the host:
 * shells are built ahead, a start takes one, the pool refills, a changed
 * profile never gets an old shell, and stopping the runner releases them.
 */

const BASE = "/v1beta2/sandboxes";
const RUNNER = "/v1beta2/sandbox/runners/local";
let t: TestApp;
let instance: string;
let profileId: string;

function ok(res: { status: number; body: any }): any {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

async function start(body: Record<string, unknown> = {}): Promise<string> {
  const s = ok(await t.call("POST", `${BASE}?wait=true`, body));
  expect(s.sandboxStatus, JSON.stringify(s)).toBe("SANDBOX_STATUS_RUNNING");
  return s.sandboxId;
}

async function sh(id: string, script: string): Promise<string> {
  const r = ok(await t.call("POST", `${BASE}/${id}/exec`, { command: ["sh", "-c", script] }));
  expect(r.exitCode, Buffer.from(r.stderr, "base64").toString()).toBe(0);
  return Buffer.from(r.stdout, "base64").toString();
}

async function remove(id: string): Promise<void> {
  ok(await t.call("DELETE", `${BASE}/${id}`));
  await settle(
    async () => (await t.call("GET", `${BASE}/${id}`)).status,
    (s) => s === 404,
  );
}

/** Network interfaces inside the sandbox (it has no /sys). */
async function interfaces(id: string): Promise<string[]> {
  const dev = await sh(id, "cat /proc/net/dev");
  return dev
    .split("\n")
    .slice(2)
    .map((l) => l.split(":")[0]?.trim() ?? "")
    .filter(Boolean)
    .sort();
}

const poolDir = () => join(localRoot(), instance, "pool");
/** Ready shells, seen on the host: their directories. */
const readyShells = () => (existsSync(poolDir()) ? readdirSync(poolDir()) : []);
const untilReady = (n: number) =>
  settle(readyShells, (shells) => shells.length === n, 30_000).then((s) => s.length);

function setPoolSize(size: number) {
  return t.call("PATCH", RUNNER, {
    runner: {
      profileBindings: [{ profileTemplateId: profileId, isDefault: true, warmPoolSize: size }],
    },
  });
}

beforeAll(async () => {
  t = await startTestApp({ kind: "memory" }, { localRunner: true });
  const first = await start();
  instance = findSandboxInstance(first) ?? "";
  await remove(first);
  profileId = ok(await t.call("GET", RUNNER)).runner.profileBindings[0].profileTemplateId;
}, 60_000);

let closed = false;
afterAll(async () => {
  if (!closed) await t?.close();
});

describe("warm pools (local backend)", () => {
  it("a binding's warmPoolSize is validated, and shown only when set", async () => {
    const bad = await setPoolSize(-1);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain("profileBindings[0].warmPoolSize");
    expect(ok(await setPoolSize(0)).runner.profileBindings[0]).not.toHaveProperty("warmPoolSize");
    expect(ok(await setPoolSize(3)).runner.profileBindings[0].warmPoolSize).toBe(3);
  });

  it("keeps shells ready: uid, directories, cgroup with the profile's limits, loopback-only namespace", async () => {
    expect(await untilReady(3)).toBe(3);
    const shells = readyShells();
    // A shell's directory comes first as it is built: its cgroup follows.
    const groups = await settle(
      () => instanceCgroupDirs(instance).map((d) => d.split("/").pop()),
      (names) => shells.every((shell) => names.includes(shell)),
    );
    for (const shell of shells) expect(groups).toContain(shell);
    const claimed = slotClaims(instance).map((o) => o.split("/")[1]);
    expect(claimed.sort()).toEqual([...shells].sort());
    // Positive control for the cleanup checks below: the namespaces exist.
    const namespaces = await settle(
      () => netnsList().filter((n) => n.startsWith("pdk-")).length,
      (n) => n >= 3,
    );
    expect(namespaces).toBeGreaterThanOrEqual(3);
  });

  it("a ready shell's helper waits in a mount namespace of its own, without the host's network namespace mounts", async () => {
    expect(await untilReady(3)).toBe(3);
    const netnsMounts = (pid: number | "self") =>
      readFileSync(`/proc/${pid}/mountinfo`, "utf8")
        .split("\n")
        .filter((l) => l.split(" ")[4]?.startsWith("/run/netns/"));
    // The start helpers, not the exec services they forked (which join the sandbox's later).
    const helpers = await settle(
      () => {
        const nsexec = instanceProcesses(instance).filter((p) => p.comm === "paddock-nsexec");
        return nsexec.filter((p) => !nsexec.some((parent) => parent.pid === p.ppid));
      },
      (found) => found.length >= 3,
    );
    expect(helpers.length).toBeGreaterThanOrEqual(3);
    const hostMounts = readlinkSync("/proc/self/ns/mnt");
    for (const helper of helpers) {
      expect(readlinkSync(`/proc/${helper.pid}/ns/mnt`)).not.toBe(hostMounts);
      expect(netnsMounts(helper.pid)).toEqual([]);
    }
    // Detached there only: the host keeps one per shell (the detach did not propagate).
    expect(netnsMounts("self").length).toBeGreaterThanOrEqual(3);
  });

  it("a start takes a ready shell, runs isolated in it, and the pool refills behind it", async () => {
    const before = readyShells();
    const id = await start();
    const shell = sandboxShell(instance, id);
    expect(before).toContain(shell);
    expect(readyShells()).not.toContain(shell);
    // Its own hostname, no interface but loopback, not root on the host, the profile's limits.
    expect((await sh(id, "hostname")).trim()).toBe(`sandbox-${id.slice(0, 8)}`);
    expect(await interfaces(id)).toEqual(["lo"]);
    const hostUids = sandboxProcesses(instance, id).map((p) => p.uid);
    expect(hostUids.length).toBeGreaterThan(0);
    for (const uid of hostUids) expect(uid).toBeGreaterThanOrEqual(FIRST_SANDBOX_UID);
    const memory = sandboxCgroupDir(instance, id, "memory");
    expect(memory?.endsWith(`/${shell}`)).toBe(true);
    const limitFile = existsSync(join(memory as string, "memory.max"))
      ? "memory.max"
      : "memory.limit_in_bytes";
    expect(readFileSync(join(memory as string, limitFile), "utf8").trim()).toBe(String(2 ** 30));
    expect(await untilReady(3)).toBe(3);
    await remove(id);
    expect(existsSync(memory as string)).toBe(false);
  });

  it("reports size, ready shells, hits and misses in /metrics", async () => {
    const res = await t.fetch("GET", "/metrics");
    expect(res.status).toBe(200);
    // Agents report with their heartbeat (every 5 s).
    const text = await settle(
      async () => (await t.fetch("GET", "/metrics")).text(),
      (body) => /paddock_warm_pool_hits_total\{[^}]*\} [1-9]/.test(body),
      15_000,
    );
    expect(text).toContain(`paddock_warm_pool_size{runner="local",profile_id="${profileId}"} 3`);
    expect(text).toMatch(/paddock_warm_pool_ready\{[^}]*\} 3/);
  }, 20_000);

  it("never hands out a shell built for an older profile: a changed spec gets new shells", async () => {
    const old = readyShells();
    const spec = structuredClone(STARTER_PROFILE_BODY.spec);
    spec.resourceDefaults.memoryLimit = "512Mi";
    ok(
      await t.call("PATCH", `/v1beta2/sandbox/profile-templates/${profileId}`, {
        profileTemplate: { ...STARTER_PROFILE_BODY, spec },
      }),
    );
    const id = await start();
    expect(old).not.toContain(sandboxShell(instance, id));
    const memory = sandboxCgroupDir(instance, id, "memory") as string;
    const limitFile = existsSync(join(memory, "memory.max"))
      ? "memory.max"
      : "memory.limit_in_bytes";
    expect(readFileSync(join(memory, limitFile), "utf8").trim()).toBe(String(512 * 2 ** 20));
    await remove(id);
    const renewed = await settle(
      readyShells,
      (shells) => shells.length === 3 && shells.every((s) => !old.includes(s)),
    );
    expect(renewed.filter((s) => old.includes(s))).toEqual([]);
    // The old shells' cgroups went with them.
    const groups = instanceCgroupDirs(instance).map((d) => d.split("/").pop());
    for (const shell of old) expect(groups).not.toContain(shell);
  });

  it("a start whose spec no pool holds builds its own shell (egress internet)", async () => {
    const id = await start({ network: { egressMode: "internet" } });
    expect(sandboxShell(instance, id)).toBe(id);
    expect(await interfaces(id)).toEqual(["eth0", "lo"]);
    await remove(id);
  });

  it("size 0 releases the pool: no shell, cgroup, namespace or claim is left", async () => {
    const shells = readyShells();
    ok(await setPoolSize(0));
    expect(await untilReady(0)).toBe(0);
    // A shell being built when the size changed is destroyed once built.
    expect(
      await settle(
        () => slotClaims(instance),
        (c) => c.length === 0,
      ),
    ).toEqual([]);
    const groups = instanceCgroupDirs(instance).map((d) => d.split("/").pop());
    for (const shell of shells) expect(groups).not.toContain(shell);
  });

  it("stopping the runner releases every ready shell", async () => {
    ok(await setPoolSize(2));
    expect(await untilReady(2)).toBe(2);
    const names = slotClaims(instance).map((o) => addressFor(instance, o.split("/")[1] ?? "", 0));
    expect(names).toHaveLength(2);
    for (const n of names) expect(netnsList()).toContain(n.netns);
    closed = true;
    await t.close();
    expect(readyShells()).toEqual([]);
    expect(instanceCgroupDirs(instance)).toEqual([]);
    expect(slotClaims(instance)).toEqual([]);
    for (const n of names) expect(netnsList()).not.toContain(n.netns);
  });
});
