import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_LOCAL_ROOT } from "../../src/backends/local/local-backend.js";
import { addressFor, tableName } from "../../src/backends/local/network.js";

/**
 * What Paddock's local backend leaves on this host, read straight from the
 * kernel (/proc, /sys/fs/cgroup) and the tools (ip, nft): the tests' own
 * view, independent of the backend's bookkeeping.
 */

const CGROUP_ROOT = "/sys/fs/cgroup";
/** Sandboxes run as host uids from here up. */
export const FIRST_SANDBOX_UID = 300_000;

export interface HostProcess {
  pid: number;
  ppid: number;
  /** Real uid on the host. */
  uid: number;
  comm: string;
  cmdline: string;
  /** Lines of /proc/PID/cgroup. */
  cgroups: string[];
  /** Start time in clock ticks since boot: a pid with another start time is another process. */
  startTime: number;
  /** Process state letter (R, S, Z, ...). */
  state: string;
}

function readOr(path: string, fallback = ""): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return fallback;
  }
}

/** One process, or undefined once it is gone (zombies included: they are still there). */
export function processInfo(pid: number): HostProcess | undefined {
  const stat = readOr(`/proc/${pid}/stat`);
  const status = readOr(`/proc/${pid}/status`);
  if (!stat || !status) return undefined;
  // comm may hold spaces and parentheses: the fields after it start after the last ')'.
  const close = stat.lastIndexOf(")");
  const fields = stat.slice(close + 2).split(" ");
  return {
    pid,
    ppid: Number(fields[1]),
    uid: Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1),
    comm: stat.slice(stat.indexOf("(") + 1, close),
    cmdline: readOr(`/proc/${pid}/cmdline`).split("\0").join(" ").trim(),
    cgroups: readOr(`/proc/${pid}/cgroup`).split("\n").filter(Boolean),
    startTime: Number(fields[19]),
    state: fields[0] ?? "?",
  };
}

/** Every process on the host. */
export function hostProcesses(): HostProcess[] {
  const out: HostProcess[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const p = processInfo(Number(name));
    if (p) out.push(p);
  }
  return out;
}

/** Whether `p` still runs as the same process (same pid and start time). */
export function stillRunning(p: Pick<HostProcess, "pid" | "startTime">): boolean {
  const now = processInfo(p.pid);
  return now !== undefined && now.startTime === p.startTime;
}

/** Whether a process's cgroup (any controller) is this instance's, or one of its sandboxes'. */
export function inInstanceCgroup(p: HostProcess, instance: string): boolean {
  return p.cgroups.some((line) => {
    const path = line.split(":").slice(2).join(":");
    return path === `/paddock/${instance}` || path.startsWith(`/paddock/${instance}/`);
  });
}

/** Every cgroup hierarchy mounted here: v1 controller directories, and the v2 root. */
export function cgroupHierarchies(): string[] {
  const out: string[] = [];
  if (existsSync(join(CGROUP_ROOT, "cgroup.procs"))) out.push(CGROUP_ROOT);
  for (const entry of readdirSync(CGROUP_ROOT, { withFileTypes: true })) {
    const dir = join(CGROUP_ROOT, entry.name);
    if (entry.isDirectory() && existsSync(join(dir, "cgroup.procs"))) out.push(dir);
  }
  return out;
}

/** This instance's cgroup directory under each hierarchy that has one. */
export function instanceCgroupBases(instance: string): string[] {
  return cgroupHierarchies()
    .map((h) => join(h, "paddock", instance))
    .filter((d) => existsSync(d));
}

function walkDirs(dir: string): string[] {
  const out = [dir];
  try {
    for (const e of readdirSync(dir, { withFileTypes: true }))
      if (e.isDirectory()) out.push(...walkDirs(join(dir, e.name)));
  } catch {
    // removed meanwhile
  }
  return out;
}

/** Every cgroup directory of the instance (its group and its sandboxes'), in every hierarchy. */
export function instanceCgroupDirs(instance: string): string[] {
  return instanceCgroupBases(instance).flatMap(walkDirs);
}

/**
 * The shell a sandbox runs in, which names its cgroup and network: its own
 * id, or the warm shell it took (as its state.json says, while it exists).
 */
export function sandboxShell(instance: string, sandboxId: string, root = localRoot()): string {
  try {
    const state = JSON.parse(
      readFileSync(join(root, instance, "sandboxes", sandboxId, "state.json"), "utf8"),
    ) as { shell?: unknown };
    return typeof state.shell === "string" ? state.shell : sandboxId;
  } catch {
    return sandboxId;
  }
}

/** A sandbox's cgroup directory in each hierarchy that has one. */
export function sandboxCgroupDirs(instance: string, sandboxId: string): string[] {
  const shell = sandboxShell(instance, sandboxId);
  return instanceCgroupBases(instance)
    .map((b) => join(b, shell))
    .filter((d) => existsSync(d));
}

/** A sandbox's cgroup directory for one v1 controller (memory, pids, ...), or the v2 one. */
export function sandboxCgroupDir(
  instance: string,
  sandboxId: string,
  controller: string,
): string | undefined {
  const shell = sandboxShell(instance, sandboxId);
  const v1 = join(CGROUP_ROOT, controller, "paddock", instance, shell);
  if (existsSync(v1)) return v1;
  const v2 = join(CGROUP_ROOT, "paddock", instance, shell);
  return existsSync(join(v2, "cgroup.controllers")) ? v2 : undefined;
}

/** Pids listed in cgroup.procs of the given directories. */
export function cgroupPids(dirs: string[]): number[] {
  const pids = new Set<number>();
  for (const dir of dirs)
    for (const line of readOr(join(dir, "cgroup.procs")).split("\n"))
      if (line) pids.add(Number(line));
  return [...pids].sort((a, b) => a - b);
}

/**
 * Processes of this instance: those in its cgroups (by cgroup.procs and by
 * /proc/PID/cgroup), and any sandbox-uid, bubblewrap or Paddock helper
 * process whose cgroup is the instance's.
 */
export function instanceProcesses(instance: string): HostProcess[] {
  const found = new Map<number, HostProcess>();
  for (const pid of cgroupPids(instanceCgroupDirs(instance))) {
    const p = processInfo(pid);
    if (p) found.set(pid, p);
  }
  for (const p of hostProcesses()) {
    const sandboxLike =
      p.uid >= FIRST_SANDBOX_UID || /^(bwrap|paddock-pause|paddock-nsexec)$/.test(p.comm);
    if (inInstanceCgroup(p, instance) && (sandboxLike || !found.has(p.pid))) found.set(p.pid, p);
  }
  return [...found.values()];
}

/** The host's network namespaces (`ip netns list`). */
export function netnsList(): string[] {
  const out = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  return out
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter(Boolean);
}

/** nftables tables, as "family name" (`nft list tables`). */
export function nftTables(): string[] {
  const out = execFileSync("nft", ["list", "tables"], { encoding: "utf8" });
  return out
    .split("\n")
    .map((l) => l.trim().replace(/^table /, ""))
    .filter(Boolean);
}

/** Host network interface names. */
export function hostLinks(): string[] {
  return readdirSync("/sys/class/net");
}

/** Names the network of a sandbox of this instance would have on the host. */
export function sandboxNetworkNames(
  instance: string,
  sandboxId: string,
): { netns: string; hostIf: string } {
  const a = addressFor(instance, sandboxShell(instance, sandboxId), 0);
  return { netns: a.netns, hostIf: a.hostIf };
}

export function localRoot(): string {
  return process.env.PADDOCK_LOCAL_ROOT ?? DEFAULT_LOCAL_ROOT;
}

/** Address slot claims the instance holds (files under the local root's net-slots). */
export function slotClaims(instance: string, root = localRoot()): string[] {
  const dir = join(root, "net-slots");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((slot) => readOr(join(dir, slot)))
    .filter((owner) => owner.startsWith(`${instance}/`));
}

/** Sandbox directories the instance keeps under the local root. */
export function sandboxDirs(instance: string, root = localRoot()): string[] {
  const dir = join(root, instance, "sandboxes");
  return existsSync(dir) ? readdirSync(dir) : [];
}

export interface InstanceTraces {
  processes: string[];
  cgroups: string[];
  netns: string[];
  links: string[];
  nftTables: string[];
  slotClaims: string[];
}

/**
 * Everything of Paddock's this instance has on the host (empty lists when
 * nothing): `sandboxIds` names the sandboxes whose network names to look for.
 */
export function instanceTraces(
  instance: string,
  sandboxIds: string[],
  root = localRoot(),
): InstanceTraces {
  // Network names follow the shell: the sandbox's own id, a warm shell it took, or a warm
  // shell still held (named by its slot claim).
  const owners = new Set([
    ...sandboxIds,
    ...sandboxIds.map((id) => sandboxShell(instance, id, root)),
    ...slotClaims(instance, root).map((owner) => owner.slice(instance.length + 1)),
  ]);
  const names = [...owners].map((owner) => addressFor(instance, owner, 0));
  const netns = new Set(netnsList());
  const links = new Set(hostLinks());
  return {
    processes: instanceProcesses(instance).map(
      (p) => `${p.pid} uid=${p.uid} ${p.comm}: ${p.cmdline.slice(0, 120)}`,
    ),
    cgroups: instanceCgroupDirs(instance),
    netns: names.map((n) => n.netns).filter((n) => netns.has(n)),
    links: names.map((n) => n.hostIf).filter((n) => links.has(n)),
    nftTables: nftTables().filter((t) => t.split(" ")[1] === tableName(instance)),
    slotClaims: slotClaims(instance, root),
  };
}

export const NO_TRACES: InstanceTraces = {
  processes: [],
  cgroups: [],
  netns: [],
  links: [],
  nftTables: [],
  slotClaims: [],
};

/** The sandbox's processes, seen from the host (pid in the host's namespace). */
export function sandboxProcesses(instance: string, sandboxId: string): HostProcess[] {
  return cgroupPids(sandboxCgroupDirs(instance, sandboxId))
    .map(processInfo)
    .filter((p): p is HostProcess => p !== undefined);
}

/** The instance directory holding a sandbox under the local root (found by its id). */
export function findSandboxInstance(sandboxId: string, root = localRoot()): string | undefined {
  if (!existsSync(root)) return undefined;
  for (const instance of readdirSync(root))
    if (existsSync(join(root, instance, "sandboxes", sandboxId))) return instance;
  return undefined;
}

/** Polls `probe` until `done` holds on its value or `timeoutMs` passes; returns the last value. */
export async function settle<T>(
  probe: () => T | Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() >= deadline) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A process's open fds and what each refers to (from the host). */
export function processFds(pid: number): Record<number, string> {
  const out: Record<number, string> = {};
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        out[Number(fd)] = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // gone
  }
  return out;
}

/**
 * Test teardown after a failure: removes whatever this instance left (its
 * processes, by pid; its cgroups; the named sandboxes' network namespaces and
 * links; its nftables table; its slot claims). Touches nothing of any other instance.
 */
export async function removeInstanceTraces(
  instance: string,
  sandboxIds: string[],
  root = localRoot(),
): Promise<void> {
  for (let round = 0; round < 100; round++) {
    const procs = instanceProcesses(instance);
    if (procs.length === 0) break;
    for (const p of procs) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const dir of instanceCgroupDirs(instance).sort((a, b) => b.length - a.length)) {
    try {
      rmdirSync(dir);
    } catch {
      // busy or gone
    }
  }
  const quiet = { stdio: "ignore" } as const;
  for (const id of sandboxIds) {
    const n = sandboxNetworkNames(instance, id);
    try {
      execFileSync("ip", ["netns", "delete", n.netns], quiet);
    } catch {}
    try {
      execFileSync("ip", ["link", "delete", n.hostIf], quiet);
    } catch {}
  }
  try {
    execFileSync("nft", ["delete", "table", "inet", tableName(instance)], quiet);
  } catch {}
  const slots = join(root, "net-slots");
  if (existsSync(slots))
    for (const slot of readdirSync(slots))
      if (readOr(join(slots, slot)).startsWith(`${instance}/`))
        rmSync(join(slots, slot), { force: true });
}
