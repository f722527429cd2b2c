import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const ROOT = "/sys/fs/cgroup";
/** Paddock's cgroups live under this, one subgroup per runner instance. */
const GROUP = "paddock";
const CPU_PERIOD_US = 100_000;
/** Enough for real work, far too few for a fork bomb to hurt the host. */
export const DEFAULT_PIDS_MAX = 1024;

export interface CgroupLimits {
  memoryBytes: number | undefined;
  cpuMillicores: number | undefined;
  cpuRequestMillicores: number | undefined;
  pidsMax: number;
}

/** The write a limit turns into: pure, so both layouts are unit-tested. */
export interface CgroupWrite {
  controller: string;
  file: string;
  value: string;
}

export type CgroupLayout = (
  | { version: 1; controllers: Record<"memory" | "cpu" | "pids" | "freezer", string | undefined> }
  | { version: 2; root: string }
) & {
  /** This runner's own group below each controller: `paddock/<instance>`. */
  group: string;
};

/** Detects cgroup v2 (unified, memory controller present) or v1 (hybrid or legacy) mounts. */
export function detectLayout(instance: string, root = ROOT): CgroupLayout | undefined {
  const group = join(GROUP, instance);
  const controllersFile = join(root, "cgroup.controllers");
  if (
    existsSync(controllersFile) &&
    readFileSync(controllersFile, "utf8").split(/\s+/).includes("memory")
  ) {
    return { version: 2, root, group };
  }
  const v1 = (name: string) =>
    existsSync(join(root, name, "cgroup.procs")) ? join(root, name) : undefined;
  const controllers = {
    memory: v1("memory"),
    cpu: v1("cpu"),
    pids: v1("pids"),
    freezer: v1("freezer"),
  };
  if (!controllers.memory && !controllers.cpu && !controllers.pids) return undefined;
  return { version: 1, controllers, group };
}

/** The files to write for a sandbox's limits, in order (v1 needs memory before memsw). */
export function limitWrites(version: 1 | 2, limits: CgroupLimits): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  if (version === 1) {
    if (limits.memoryBytes !== undefined) {
      out.push({
        controller: "memory",
        file: "memory.limit_in_bytes",
        value: String(limits.memoryBytes),
      });
      // Memory plus swap: a limit swap cannot get around.
      out.push({
        controller: "memory",
        file: "memory.memsw.limit_in_bytes",
        value: String(limits.memoryBytes),
      });
    }
    if (limits.cpuMillicores !== undefined) {
      out.push({ controller: "cpu", file: "cpu.cfs_period_us", value: String(CPU_PERIOD_US) });
      out.push({
        controller: "cpu",
        file: "cpu.cfs_quota_us",
        value: String(cpuQuotaUs(limits.cpuMillicores)),
      });
    }
    if (limits.cpuRequestMillicores !== undefined) {
      out.push({
        controller: "cpu",
        file: "cpu.shares",
        value: String(Math.max(2, Math.round((limits.cpuRequestMillicores * 1024) / 1000))),
      });
    }
    out.push({ controller: "pids", file: "pids.max", value: String(limits.pidsMax) });
  } else {
    if (limits.memoryBytes !== undefined) {
      out.push({ controller: "memory", file: "memory.max", value: String(limits.memoryBytes) });
      out.push({ controller: "memory", file: "memory.swap.max", value: "0" });
    }
    if (limits.cpuMillicores !== undefined) {
      out.push({
        controller: "cpu",
        file: "cpu.max",
        value: `${cpuQuotaUs(limits.cpuMillicores)} ${CPU_PERIOD_US}`,
      });
    }
    if (limits.cpuRequestMillicores !== undefined) {
      // cgroup v2 weight 1..10000, 100 for one CPU's worth.
      out.push({
        controller: "cpu",
        file: "cpu.weight",
        value: String(Math.min(10000, Math.max(1, Math.round(limits.cpuRequestMillicores / 10)))),
      });
    }
    out.push({ controller: "pids", file: "pids.max", value: String(limits.pidsMax) });
  }
  return out;
}

function cpuQuotaUs(millicores: number): number {
  return Math.max(1000, Math.ceil((millicores * CPU_PERIOD_US) / 1000));
}

/** One sandbox's cgroup (a directory per v1 controller, or one v2 directory). */
export class SandboxCgroup {
  private constructor(
    private readonly layout: CgroupLayout,
    readonly sandboxId: string,
  ) {}

  static for(layout: CgroupLayout, sandboxId: string): SandboxCgroup {
    return new SandboxCgroup(layout, sandboxId);
  }

  /** Directories, one per controller this host has. */
  dirs(): string[] {
    return groupBases(this.layout).map((base) => join(base, this.sandboxId));
  }

  /** `cgroup.procs` files: writing a pid to each moves it in. */
  procsFiles(): string[] {
    return this.dirs().map((d) => join(d, "cgroup.procs"));
  }

  create(limits: CgroupLimits): void {
    if (this.layout.version === 2) {
      mkdirSync(join(this.layout.root, this.layout.group), { recursive: true });
      enableV2Controllers(this.layout.root);
      enableV2Controllers(join(this.layout.root, GROUP));
      enableV2Controllers(join(this.layout.root, this.layout.group));
    }
    for (const dir of this.dirs()) mkdirSync(dir, { recursive: true });
    for (const w of limitWrites(this.layout.version, limits)) {
      const dir = this.controllerDir(w.controller);
      if (!dir) {
        throw new Error(
          `cgroup controller '${w.controller}' is not available on this host, so ${w.file} cannot be enforced`,
        );
      }
      const file = join(dir, w.file);
      if (!existsSync(file)) {
        throw new Error(
          `${file} does not exist: this host cannot enforce ${w.file} (for v1 memory+swap, boot with swapaccount=1)`,
        );
      }
      writeFileSync(file, w.value);
    }
  }

  private controllerDir(controller: string): string | undefined {
    if (this.layout.version === 2) return join(this.layout.root, this.layout.group, this.sandboxId);
    const base = this.layout.controllers[controller as "memory"];
    return base ? join(base, this.layout.group, this.sandboxId) : undefined;
  }

  pids(): number[] {
    const pids = new Set<number>();
    for (const file of this.procsFiles()) {
      try {
        for (const line of readFileSync(file, "utf8").split("\n")) if (line) pids.add(Number(line));
      } catch {
        // already gone
      }
    }
    return [...pids];
  }

  /** Whether the memory controller recorded an out-of-memory kill. */
  oomKilled(): boolean {
    const dir = this.controllerDir("memory");
    if (!dir) return false;
    try {
      if (this.layout.version === 2)
        return /oom_kill [1-9]/.test(readFileSync(join(dir, "memory.events"), "utf8"));
      return /oom_kill [1-9]/.test(readFileSync(join(dir, "memory.oom_control"), "utf8"));
    } catch {
      return false;
    }
  }

  /** Kills every process in the cgroup and removes its directories. */
  async destroy(): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const pids = this.pids();
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // exited meanwhile
        }
      }
      await sleep(attempt < 10 ? 5 : 50);
    }
    for (const dir of this.dirs()) await removeDir(dir);
  }
}

function enableV2Controllers(dir: string): void {
  const file = join(dir, "cgroup.subtree_control");
  const enabled = readFileSync(file, "utf8");
  const wanted = ["memory", "cpu", "pids"].filter((c) => !enabled.split(/\s+/).includes(c));
  if (wanted.length > 0) writeFileSync(file, wanted.map((c) => `+${c}`).join(" "));
}

/**
 * Removes an emptied cgroup. On v2 a killed task leaves cgroup.procs before
 * the group stops counting as populated, so rmdir can answer EBUSY for a
 * moment after the last pid is gone: retry with a pause, as runc does.
 */
async function removeDir(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 60; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (code !== "EBUSY") throw error;
    }
    await sleep(attempt < 10 ? 5 : 50);
  }
}

/** Sandbox ids that have a cgroup on this host (to clean up after a crash). */
export function listSandboxCgroups(layout: CgroupLayout): string[] {
  const bases = groupBases(layout);
  const ids = new Set<string>();
  for (const base of bases) {
    if (!existsSync(base)) continue;
    for (const entry of readdirSync(base, { withFileTypes: true }))
      if (entry.isDirectory()) ids.add(entry.name);
  }
  return [...ids];
}

/** Removes Paddock's parent cgroups once no sandbox uses them. */
export function removeParentGroups(layout: CgroupLayout): void {
  const bases = groupBases(layout);
  for (const base of bases) {
    for (const dir of [base, dirname(base)]) {
      try {
        rmdirSync(dir);
      } catch {
        // still in use (another runner's group) or already gone
      }
    }
  }
}

/** Paddock's parent cgroup directory under each controller. */
function groupBases(layout: CgroupLayout): string[] {
  if (layout.version === 2) return [join(layout.root, layout.group)];
  return Object.values(layout.controllers)
    .filter((c): c is string => c !== undefined)
    .map((c) => join(c, layout.group));
}
