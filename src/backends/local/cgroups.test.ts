import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type CgroupLayout,
  DEFAULT_PIDS_MAX,
  detectLayout,
  limitWrites,
  listSandboxCgroups,
  removeParentGroups,
  SandboxCgroup,
} from "./cgroups.js";

const MiB = 1024 * 1024;
const all = { memoryBytes: 64 * MiB, cpuMillicores: 1500, cpuRequestMillicores: 250, pidsMax: 100 };

describe("limitWrites", () => {
  it("v1: memory, then memory+swap at the same value, cpu quota over a 100 ms period, shares, pids", () => {
    expect(limitWrites(1, all)).toEqual([
      { controller: "memory", file: "memory.limit_in_bytes", value: String(64 * MiB) },
      { controller: "memory", file: "memory.memsw.limit_in_bytes", value: String(64 * MiB) },
      { controller: "cpu", file: "cpu.cfs_period_us", value: "100000" },
      { controller: "cpu", file: "cpu.cfs_quota_us", value: "150000" },
      { controller: "cpu", file: "cpu.shares", value: "256" },
      { controller: "pids", file: "pids.max", value: "100" },
    ]);
  });

  it("v2: memory.max with no swap at all, cpu.max, cpu.weight, pids", () => {
    expect(limitWrites(2, all)).toEqual([
      { controller: "memory", file: "memory.max", value: String(64 * MiB) },
      { controller: "memory", file: "memory.swap.max", value: "0" },
      { controller: "cpu", file: "cpu.max", value: "150000 100000" },
      { controller: "cpu", file: "cpu.weight", value: "25" },
      { controller: "pids", file: "pids.max", value: "100" },
    ]);
  });

  it("always limits pids, even with nothing else asked", () => {
    const none = {
      memoryBytes: undefined,
      cpuMillicores: undefined,
      cpuRequestMillicores: undefined,
      pidsMax: DEFAULT_PIDS_MAX,
    };
    for (const v of [1, 2] as const)
      expect(limitWrites(v, none)).toEqual([
        { controller: "pids", file: "pids.max", value: String(DEFAULT_PIDS_MAX) },
      ]);
  });

  it("memory+swap never exceeds memory, on both layouts", () => {
    for (const bytes of [1, 4096, 64 * MiB, 3 * 1024 * MiB + 1]) {
      const limits = { ...all, memoryBytes: bytes };
      const v1 = Object.fromEntries(limitWrites(1, limits).map((w) => [w.file, w.value]));
      expect(v1["memory.memsw.limit_in_bytes"]).toBe(v1["memory.limit_in_bytes"]);
      const v2 = Object.fromEntries(limitWrites(2, limits).map((w) => [w.file, w.value]));
      expect(v2["memory.swap.max"]).toBe("0");
      // v1 refuses memsw below the memory limit: the memory limit is written first.
      const files = limitWrites(1, limits).map((w) => w.file);
      expect(files.indexOf("memory.limit_in_bytes")).toBeLessThan(
        files.indexOf("memory.memsw.limit_in_bytes"),
      );
    }
  });

  it("clamps tiny cpu values to what the kernel accepts", () => {
    const tiny = { ...all, cpuMillicores: 1, cpuRequestMillicores: 1 };
    const v1 = Object.fromEntries(limitWrites(1, tiny).map((w) => [w.file, w.value]));
    expect(v1["cpu.cfs_quota_us"]).toBe("1000"); // kernel minimum is 1 ms
    expect(v1["cpu.shares"]).toBe("2"); // kernel minimum
    const v2 = Object.fromEntries(limitWrites(2, tiny).map((w) => [w.file, w.value]));
    expect(v2["cpu.max"]).toBe("1000 100000");
    expect(v2["cpu.weight"]).toBe("1");
    const huge = Object.fromEntries(
      limitWrites(2, { ...all, cpuRequestMillicores: 10_000_000 }).map((w) => [w.file, w.value]),
    );
    expect(huge["cpu.weight"]).toBe("10000");
  });
});

describe("detectLayout and create (on a fake cgroup tree)", () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "paddock-cgroups-"));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const touch = (path: string, content = "") => {
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, content);
  };

  it("detects v2 only when the unified root offers memory", () => {
    touch(join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n");
    expect(detectLayout("inst", root)).toEqual({ version: 2, root, group: "paddock/inst" });
  });

  it("detects hybrid v1 (a v2 mount with only hugetlb), naming the controllers it has", () => {
    touch(join(root, "cgroup.controllers"), "hugetlb\n");
    for (const c of ["memory", "pids", "cpu"]) touch(join(root, c, "cgroup.procs"));
    expect(detectLayout("inst", root)).toEqual({
      version: 1,
      controllers: {
        memory: join(root, "memory"),
        cpu: join(root, "cpu"),
        pids: join(root, "pids"),
        freezer: undefined,
      },
      group: "paddock/inst",
    });
  });

  it("finds nothing without memory, cpu or pids", () => {
    expect(detectLayout("inst", root)).toBeUndefined();
  });

  function v1Layout(withMemsw: boolean): CgroupLayout {
    const controllers = {
      memory: join(root, "memory"),
      cpu: join(root, "cpu"),
      pids: join(root, "pids"),
      freezer: undefined,
    };
    const dir = (c: string) => join(root, c, "paddock", "inst", "sb1");
    for (const f of [
      "memory.limit_in_bytes",
      ...(withMemsw ? ["memory.memsw.limit_in_bytes"] : []),
    ])
      touch(join(dir("memory"), f));
    for (const f of ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"])
      touch(join(dir("cpu"), f));
    touch(join(dir("pids"), "pids.max"));
    return { version: 1, controllers, group: "paddock/inst" };
  }

  it("writes every limit into the sandbox's group under paddock/<instance>", () => {
    const cg = SandboxCgroup.for(v1Layout(true), "sb1");
    cg.create(all);
    const read = (c: string, f: string) =>
      readFileSync(join(root, c, "paddock", "inst", "sb1", f), "utf8");
    expect(read("memory", "memory.limit_in_bytes")).toBe(String(64 * MiB));
    expect(read("memory", "memory.memsw.limit_in_bytes")).toBe(String(64 * MiB));
    expect(read("cpu", "cpu.cfs_quota_us")).toBe("150000");
    expect(read("pids", "pids.max")).toBe("100");
    expect(cg.procsFiles()).toEqual(
      ["memory", "cpu", "pids"].map((c) => join(root, c, "paddock", "inst", "sb1", "cgroup.procs")),
    );
    expect(listSandboxCgroups(v1Layout(true))).toEqual(["sb1"]);
  });

  it("refuses to start when swap cannot be limited, rather than leave swap open", () => {
    const cg = SandboxCgroup.for(v1Layout(false), "sb1");
    expect(() => cg.create(all)).toThrow(/memsw.*swapaccount=1/s);
  });

  it("refuses a limit whose controller the host lacks", () => {
    const layout = v1Layout(true);
    if (layout.version === 1) layout.controllers.pids = undefined;
    expect(() => SandboxCgroup.for(layout, "sb1").create(all)).toThrow(/'pids' is not available/);
  });

  it("v2: enables the controllers down the tree and writes into one directory", () => {
    touch(join(root, "cgroup.controllers"), "cpu memory pids\n");
    touch(join(root, "cgroup.subtree_control"), "");
    touch(join(root, "paddock", "cgroup.subtree_control"), "");
    touch(join(root, "paddock", "inst", "cgroup.subtree_control"), "memory\n");
    const sb = join(root, "paddock", "inst", "sb1");
    for (const f of ["memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "pids.max"])
      touch(join(sb, f));
    const layout = detectLayout("inst", root) as CgroupLayout;
    SandboxCgroup.for(layout, "sb1").create(all);
    expect(readFileSync(join(root, "cgroup.subtree_control"), "utf8")).toBe("+memory +cpu +pids");
    expect(readFileSync(join(root, "paddock", "inst", "cgroup.subtree_control"), "utf8")).toBe(
      "+cpu +pids",
    );
    expect(readFileSync(join(sb, "memory.swap.max"), "utf8")).toBe("0");
    expect(readFileSync(join(sb, "cpu.max"), "utf8")).toBe("150000 100000");
  });
});

const isRoot = process.getuid?.() === 0;
const realLayout = isRoot ? detectLayout(`pdktest-${randomBytes(4).toString("hex")}`) : undefined;

describe.skipIf(!realLayout)("SandboxCgroup on this host's cgroups", () => {
  const layout = realLayout as CgroupLayout;
  const children: ChildProcess[] = [];
  afterEach(async () => {
    for (const c of children) c.kill("SIGKILL");
    for (const id of listSandboxCgroups(layout)) await SandboxCgroup.for(layout, id).destroy();
    removeParentGroups(layout);
  });

  /** A shell moved into the cgroup before it forks two sleeps. */
  async function populate(cg: SandboxCgroup): Promise<ChildProcess> {
    const child = spawn("sh", ["-c", "read go; sleep 1000 & sleep 1000 & wait"], {
      stdio: ["pipe", "ignore", "ignore"],
    });
    children.push(child);
    await new Promise((r) => child.once("spawn", r));
    for (const f of cg.procsFiles()) writeFileSync(f, String(child.pid));
    child.stdin?.write("go\n");
    while (cg.pids().length < 3) await new Promise((r) => setTimeout(r, 5));
    return child;
  }

  it("enforces the limits it was given", () => {
    const cg = SandboxCgroup.for(layout, "limits");
    cg.create(all);
    const file = (controller: string, name: string) => {
      const dir =
        layout.version === 2
          ? join(layout.root, layout.group, "limits")
          : join(layout.controllers[controller as "memory"] as string, layout.group, "limits");
      return readFileSync(join(dir, name), "utf8").trim();
    };
    for (const w of limitWrites(layout.version, all))
      expect(file(w.controller, w.file), w.file).toBe(w.value);
  });

  it("destroy kills every process in the group and removes its directories", async () => {
    const cg = SandboxCgroup.for(layout, "busy");
    cg.create({ ...all, memoryBytes: undefined });
    const child = await populate(cg);
    const exited = new Promise((r) => child.once("exit", (_code, signal) => r(signal)));
    const pids = cg.pids();
    expect(pids).toHaveLength(3);
    await cg.destroy();
    expect(await exited).toBe("SIGKILL");
    for (const pid of pids) {
      const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, "utf8") : "";
      // Gone, or a zombie waiting for its parent (the shell's sleeps, reaped by init).
      expect(stat === "" || / Z /.test(stat), stat).toBe(true);
    }
    for (const dir of cg.dirs()) expect(existsSync(dir), dir).toBe(false);
    expect(listSandboxCgroups(layout)).toEqual([]);
  });

  it("removeParentGroups removes the instance's group once it is empty, and only then", async () => {
    const a = SandboxCgroup.for(layout, "a");
    a.create({ ...all, memoryBytes: undefined });
    const bases = a.dirs().map((d) => join(d, ".."));
    removeParentGroups(layout);
    for (const b of bases) expect(existsSync(b), `${b} still holds a sandbox`).toBe(true);
    await a.destroy();
    removeParentGroups(layout);
    for (const b of bases) expect(existsSync(b), b).toBe(false);
  });
});
