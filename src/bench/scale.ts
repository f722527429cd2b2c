import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { DEFAULT_ORG } from "../bootstrap.js";
import type { PaddockClient } from "../client/client.js";
import { SandboxRepo } from "../sandboxes/sandbox-repo.js";
import type { Db } from "../store/database.js";
import { type Figure, figure, timed } from "./stats.js";

const BASE = "/v1beta2/sandboxes";

/**
 * Fills the store with `count` ended sandboxes shaped like `templateId`
 * (straight into the store: 10,000 real starts would measure the runner).
 * Answers their ids.
 */
export async function seedSandboxes(db: Db, templateId: string, count: number): Promise<string[]> {
  const repo = new SandboxRepo(db);
  // The bench's token is the bootstrap admin's, of the bootstrap organization.
  const original = await repo.get(DEFAULT_ORG, templateId);
  if (!original) throw new Error(`no sandbox ${templateId} to copy`);
  const ids: string[] = [];
  for (let at = 0; at < count; at += 100) {
    const batch = Array.from({ length: Math.min(100, count - at) }, (_, i) => {
      const createdAt = new Date(Date.now() - (count - at - i) * 1000);
      return {
        ...original,
        sandboxId: randomUUID(),
        status: "SANDBOX_STATUS_COMPLETED" as const,
        desired: "stopped" as const,
        exitCode: 0,
        createdAt,
        updatedAt: createdAt,
      };
    });
    await Promise.all(batch.map((s) => repo.insert(s)));
    ids.push(...batch.map((s) => s.sandboxId));
  }
  return ids;
}

/** Sandbox get (random ids) and list (first page) on the store as it is. */
export async function getAndList(
  client: PaddockClient,
  ids: string[],
  label: string,
  runs: number,
  reference?: { get: Figure; list: Figure },
): Promise<{ get: Figure; list: Figure }> {
  const pick = () => ids[Math.floor(Math.random() * ids.length)] as string;
  const get = figure(
    `sandbox get (sequential), ${label}`,
    await timed(runs, () => client.get(`${BASE}/${pick()}`)),
    reference?.get,
  );
  const list = figure(
    `sandbox list, first page of 50 (sequential), ${label}`,
    await timed(runs, () => client.get(`${BASE}?pageSize=50`)),
    reference?.list,
  );
  return { get, list };
}

/** Used host memory (MemTotal − MemAvailable), in bytes. */
function hostMemoryUsed(): number {
  const info = readFileSync("/proc/meminfo", "utf8");
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(info)?.[1] ?? 0);
  return (kib("MemTotal") - kib("MemAvailable")) * 1024;
}

/** Proportional set size of every process under a `bwrap`: the sandboxes' own processes. */
function sandboxProcessesPss(): number {
  const parent = new Map<number, number>();
  const names = new Map<number, string>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      names.set(Number(entry), stat.slice(stat.indexOf("(") + 1, close));
      parent.set(Number(entry), Number(stat.slice(close + 2).split(" ")[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const underBwrap = (pid: number): boolean => {
    for (let p: number | undefined = pid; p && p > 1; p = parent.get(p))
      if (names.get(p) === "bwrap") return true;
    return false;
  };
  let bytes = 0;
  for (const pid of parent.keys()) {
    if (!underBwrap(pid)) continue;
    try {
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
      bytes += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0) * 1024;
    } catch {
      // Gone meanwhile, or a kernel thread.
    }
  }
  return bytes;
}

/**
 * Starts `count` idle sandboxes and answers what each costs the host beyond
 * its own processes (network namespace, veth, nftables, cgroups, the
 * runner's and control plane's bookkeeping), and their own processes' PSS.
 */
export async function idleSandboxes(
  client: PaddockClient,
  count: number,
): Promise<{ started: number; beyondMiB: number; ownMiB: number; ids: string[] }> {
  const settle = () => new Promise((resolve) => setTimeout(resolve, 2000));
  await settle();
  const before = hostMemoryUsed() - sandboxProcessesPss();
  const ids: string[] = [];
  for (let at = 0; at < count; at += 25) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(25, count - at) }, () =>
        client.post<{ sandboxId: string; sandboxStatus: string; statusReason: string }>(
          `${BASE}?wait=true`,
          { command: "sleep", args: ["infinity"] },
        ),
      ),
    );
    for (const s of batch) {
      ids.push(s.sandboxId);
      if (s.sandboxStatus !== "SANDBOX_STATUS_RUNNING")
        throw new Error(`idle sandbox ${ids.length} did not run: ${s.statusReason}`);
    }
  }
  await settle();
  const own = sandboxProcessesPss();
  const beyond = hostMemoryUsed() - own - before;
  return {
    started: ids.length,
    beyondMiB: beyond / count / 2 ** 20,
    ownMiB: own / count / 2 ** 20,
    ids,
  };
}
