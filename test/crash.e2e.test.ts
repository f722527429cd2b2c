import { randomBytes } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_LOCAL_ROOT, instanceName } from "../src/backends/local/local-backend.js";
import {
  type HostProcess,
  hostProcesses,
  instanceProcesses,
  instanceTraces,
  NO_TRACES,
  netnsList,
  nftTables,
  removeInstanceTraces,
  sandboxDirs,
  sandboxNetworkNames,
  settle,
  stillRunning,
} from "./support/host-state.js";
import { type ServerProcess, startServerProcess, tempDir } from "./support/process.js";

/**
 * The real `paddock serve` (its pid is the server; the embedded runner is
 * its child) killed without warning, restarted on the same data dir, and
 * the host checked for anything Paddock left behind (CONTRACT §6).
 */

const BASE = "/v1beta2/sandboxes";
const TERMINAL = ["SANDBOX_STATUS_COMPLETED", "SANDBOX_STATUS_FAILED", "SANDBOX_STATUS_TERMINATED"];
const ROOT = DEFAULT_LOCAL_ROOT;

interface Api {
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  text(path: string): Promise<string>;
}

function api(server: ServerProcess): Api {
  const headers = { authorization: `Bearer ${server.token()}` };
  return {
    async call(method, path, body) {
      const res = await fetch(`${server.url}${path}`, {
        method,
        headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const raw = await res.text();
      let parsed: unknown = raw;
      try {
        parsed = JSON.parse(raw);
      } catch {}
      return { status: res.status, body: parsed };
    },
    async text(path) {
      const res = await fetch(`${server.url}${path}`, { headers });
      const body = await res.text();
      expect(res.status, body).toBe(200);
      return body;
    },
  };
}

const servers: ServerProcess[] = [];
const dataDirs: string[] = [];
const created: string[] = [];
afterEach(async () => {
  // After a failure: end what is left, then remove the instance's traces and files.
  for (const s of servers.splice(0)) await s.stop("SIGTERM");
  for (const d of dataDirs.splice(0)) {
    await removeInstanceTraces(instanceName(d), created, ROOT);
    rmSync(d, { recursive: true, force: true });
    rmSync(join(ROOT, instanceName(d)), { recursive: true, force: true });
  }
  created.splice(0);
});

async function serve(dataDir: string): Promise<{ server: ServerProcess; a: Api }> {
  const server = await startServerProcess({ dataDir });
  servers.push(server);
  return { server, a: api(server) };
}

/** The embedded runner: the server's child running local-runner-process. */
function runnerOf(server: ServerProcess): HostProcess {
  const runner = hostProcesses().find(
    (p) => p.ppid === server.child.pid && p.cmdline.includes("local-runner-process"),
  );
  expect(runner, "the server runs its local runner as a child").toBeDefined();
  return runner as HostProcess;
}

async function start(a: Api, body: Record<string, unknown>): Promise<string> {
  const res = await a.call("POST", `${BASE}?wait=true`, body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body.sandboxStatus, JSON.stringify(res.body)).toBe("SANDBOX_STATUS_RUNNING");
  created.push(res.body.sandboxId);
  return res.body.sandboxId;
}

async function exec(a: Api, id: string, script: string) {
  return a.call("POST", `${BASE}/${id}/exec`, {
    command: ["sh", "-c", script],
    maxTimeoutSeconds: 30,
  });
}

/** A profile with egress, bound to the local runner beside its existing bindings. */
async function bindNetworkProfile(a: Api): Promise<string> {
  const name = `crash-net-${randomBytes(3).toString("hex")}`;
  const created = await a.call("POST", "/v1beta2/sandbox/profile-templates", {
    profileTemplate: {
      displayName: name,
      spec: {
        network: {
          egress: {
            default: "allow",
            modes: { allow: { type: "allowlist", cidrs: ["198.51.100.0/24"] } },
          },
        },
      },
    },
  });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  const runner = await a.call("GET", "/v1beta2/sandbox/runners/local");
  expect(runner.status, JSON.stringify(runner.body)).toBe(200);
  const existing = (runner.body.runner.profileBindings ?? []).map((b: any) => ({
    profileTemplateId: b.profileTemplateId,
    isDefault: b.isDefault ?? false,
  }));
  const patched = await a.call("PATCH", "/v1beta2/sandbox/runners/local", {
    runner: {
      profileBindings: [...existing, { profileTemplateId: created.body.profileTemplate.id }],
    },
  });
  expect(patched.status, JSON.stringify(patched.body)).toBe(200);
  return name;
}

interface Fleet {
  idle: string;
  sleeper: string;
  networked: string;
  marker: string;
}

/** An idle sandbox, one running `sleep 1000` after a log line, and one with a network. */
async function startFleet(a: Api): Promise<Fleet> {
  const profile = await bindNetworkProfile(a);
  const marker = `started-${randomBytes(4).toString("hex")}`;
  return {
    idle: await start(a, {}),
    sleeper: await start(a, { command: "sh", args: ["-c", `echo ${marker}; exec sleep 1000`] }),
    networked: await start(a, { profileNames: [profile], network: { egressMode: "allow" } }),
    marker,
  };
}

/** Waits until the sandbox is usable (RUNNING and exec works) or reported ended; returns which. */
async function settled(a: Api, id: string): Promise<{ status: string; reason: string }> {
  const final = await settle(
    async () => {
      const s = await a.call("GET", `${BASE}/${id}`);
      expect(s.status, JSON.stringify(s.body)).toBe(200);
      if (s.body.sandboxStatus === "SANDBOX_STATUS_RUNNING") {
        const r = await exec(a, id, "echo usable");
        const usable =
          r.status === 200 && Buffer.from(r.body.stdout, "base64").toString() === "usable\n";
        return {
          status: usable ? "usable" : "running-but-unusable",
          reason: JSON.stringify(r.body),
        };
      }
      return { status: s.body.sandboxStatus as string, reason: s.body.statusReason as string };
    },
    (x) => x.status === "usable" || TERMINAL.includes(x.status),
    60_000,
  );
  expect(
    final.status === "usable" || TERMINAL.includes(final.status),
    `sandbox ${id} is neither usable nor ended: ${JSON.stringify(final)}`,
  ).toBe(true);
  if (final.status !== "usable")
    expect(final.reason, `sandbox ${id} ended without a reason`).not.toBe("");
  return final;
}

async function deleteAll(a: Api, ids: string[]): Promise<void> {
  for (const id of ids) {
    const res = await a.call("DELETE", `${BASE}/${id}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
  for (const id of ids) {
    const gone = await settle(
      async () => (await a.call("GET", `${BASE}/${id}`)).status,
      (s) => s === 404,
      60_000,
    );
    expect(gone, `sandbox ${id} is still listed after delete`).toBe(404);
  }
}

/** SIGTERM: exits 0, and nothing of this instance's remains on the host. */
async function stopAndExpectClean(server: ServerProcess, instance: string, ids: string[]) {
  const runner = runnerOf(server);
  expect(await server.stop("SIGTERM")).toBe(0);
  expect(stillRunning(runner), "the runner ends with the server").toBe(false);
  expect(instanceTraces(instance, ids, ROOT)).toEqual(NO_TRACES);
  expect(sandboxDirs(instance, ROOT), "deleted sandboxes keep no files").toEqual([]);
  expect(existsSync(join(ROOT, instance)), "the instance's directory goes too").toBe(false);
}

/** Positive control: while the fleet runs, the probes do see its traces. */
function expectFleetVisible(instance: string, fleet: Fleet): HostProcess[] {
  const procs = instanceProcesses(instance);
  expect(procs.filter((p) => p.uid >= 300_000).length).toBeGreaterThanOrEqual(3);
  expect(procs.some((p) => p.cmdline === "sleep 1000")).toBe(true);
  expect(procs.some((p) => p.comm === "paddock-pause")).toBe(true);
  const traces = instanceTraces(instance, Object.values(fleet), ROOT);
  expect(traces.cgroups.length).toBeGreaterThan(0);
  expect(traces.netns).toEqual([sandboxNetworkNames(instance, fleet.networked).netns]);
  expect(traces.nftTables).toEqual([`inet paddock_${instance}`]);
  expect(netnsList()).toContain(sandboxNetworkNames(instance, fleet.networked).netns);
  expect(nftTables()).toContain(`inet paddock_${instance}`);
  return procs;
}

async function expectAllGone(procs: HostProcess[]): Promise<void> {
  const left = await settle(
    () => procs.filter(stillRunning),
    (l) => l.length === 0,
  );
  expect(left.map((p) => `${p.pid} ${p.comm}: ${p.cmdline}`)).toEqual([]);
}

describe("crash and restart of paddock serve", () => {
  it.each([
    ["the server alone (its runner sees the link drop)", false],
    ["the server and its runner together (as an OOM kill of the service would)", true],
  ])(
    "SIGKILL of %s: no orphan, every sandbox usable or ended with a reason, nothing left after delete",
    async (_name, killRunner) => {
      const dataDir = tempDir("paddock-crash-");
      dataDirs.push(dataDir);
      const instance = instanceName(dataDir);
      const first = await serve(dataDir);
      const fleet = await startFleet(first.a);
      const ids = [fleet.idle, fleet.sleeper, fleet.networked];
      const procs = expectFleetVisible(instance, fleet);
      const runner = runnerOf(first.server);

      first.server.child.kill("SIGKILL");
      if (killRunner) process.kill(runner.pid, "SIGKILL");
      expect(await first.server.stop()).toBeNull(); // killed: no exit code
      // Right away: the runner goes, and no sandbox process outlives it.
      const runnerLeft = await settle(
        () => stillRunning(runner),
        (x) => !x,
      );
      expect(runnerLeft, "the runner outlived its server").toBe(false);
      await expectAllGone(procs);
      expect(instanceProcesses(instance)).toEqual([]);

      const second = await serve(dataDir);
      const outcomes: Record<string, { status: string; reason: string }> = {};
      for (const id of ids) outcomes[id] = await settled(second.a, id);
      // Logs stay readable until the sandbox is deleted.
      expect(await second.a.text(`${BASE}/${fleet.sleeper}/logs`)).toContain(fleet.marker);
      // The restarted runner takes new work.
      const fresh = await start(second.a, {});
      const r = await exec(second.a, fresh, "echo fresh");
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(Buffer.from(r.body.stdout, "base64").toString()).toBe("fresh\n");
      // Whatever was reported running must really run: its processes exist on the host.
      for (const id of ids)
        if (outcomes[id]?.status === "usable")
          expect(
            instanceProcesses(instance).some((p) => p.cgroups.some((c) => c.endsWith(`/${id}`))),
          ).toBe(true);

      await deleteAll(second.a, [...ids, fresh]);
      await stopAndExpectClean(second.server, instance, [...ids, fresh]);
    },
    240_000,
  );
});

describe("CONTRACT §6: nothing of Paddock's remains once every sandbox is deleted and serve stops", () => {
  it("running, completed, failed and stopped sandboxes, with and without a network", async () => {
    const dataDir = tempDir("paddock-hygiene-");
    dataDirs.push(dataDir);
    const instance = instanceName(dataDir);
    const { server, a } = await serve(dataDir);
    const fleet = await startFleet(a);
    expectFleetVisible(instance, fleet);
    const completed = await start(a, { command: "sh", args: ["-c", "sleep 0.2; exit 0"] });
    const failed = await start(a, { command: "sh", args: ["-c", "sleep 0.2; exit 3"] });
    const stopped = await start(a, {});
    const stop = await a.call("POST", `${BASE}/${stopped}/stop`, { gracefulShutdownSeconds: 1 });
    expect(stop.status, JSON.stringify(stop.body)).toBe(200);
    for (const [id, want] of [
      [completed, "SANDBOX_STATUS_COMPLETED"],
      [failed, "SANDBOX_STATUS_FAILED"],
      [stopped, "SANDBOX_STATUS_TERMINATED"],
    ] as const) {
      const s = await settle(
        async () => (await a.call("GET", `${BASE}/${id}`)).body,
        (b) => TERMINAL.includes(b.sandboxStatus),
        60_000,
      );
      expect(s.sandboxStatus, JSON.stringify(s)).toBe(want);
    }
    const ids = [fleet.idle, fleet.sleeper, fleet.networked, completed, failed, stopped];
    await deleteAll(a, ids);
    await stopAndExpectClean(server, instance, ids);
  }, 240_000);
});
