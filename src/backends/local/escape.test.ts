import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../../test/support/app.js";
import {
  cgroupHierarchies,
  FIRST_SANDBOX_UID,
  findSandboxInstance,
  localRoot,
  processFds,
  sandboxCgroupDir,
  sandboxCgroupDirs,
  sandboxProcesses,
  settle,
  stillRunning,
} from "../../../test/support/host-state.js";
import { DEFAULT_PIDS_MAX } from "./cgroups.js";
import { instanceName } from "./local-backend.js";

/**
 * What a sandbox of the local backend must not be able to do, tried from
 * inside through the public API, with the outcome checked on the host. Each
 * attack has a positive control, so that a probe that cannot work at all
 * does not pass for isolation.
 */

const BASE = "/v1beta2/sandboxes";
const TERMINAL = ["SANDBOX_STATUS_COMPLETED", "SANDBOX_STATUS_FAILED", "SANDBOX_STATUS_TERMINATED"];

let t: TestApp;
/** The test app's runner instance and data dir, found from a sandbox's directory on the host. */
let instance: string;
let dataDir: string;
/** An idle sandbox that attacks, and a busy one it attacks. */
let attacker: string;
let victim: string;
const tag = randomBytes(4).toString("hex");
const VICTIM_COMMAND = `sleep 1001${tag.length}`;

interface Run {
  stdout: string;
  stderr: string;
  exitCode: number;
}

async function start(body: Record<string, unknown> = {}): Promise<string> {
  const res = await t.call("POST", `${BASE}?wait=true`, body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body.sandboxStatus, JSON.stringify(res.body)).toBe("SANDBOX_STATUS_RUNNING");
  return res.body.sandboxId as string;
}

async function sh(id: string, script: string, maxTimeoutSeconds = 60): Promise<Run> {
  const res = await t.call("POST", `${BASE}/${id}/exec`, {
    command: ["sh", "-c", script],
    maxTimeoutSeconds,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return {
    stdout: Buffer.from(res.body.stdout, "base64").toString(),
    stderr: Buffer.from(res.body.stderr, "base64").toString(),
    exitCode: res.body.exitCode,
  };
}

async function status(id: string): Promise<any> {
  const res = await t.call("GET", `${BASE}/${id}`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

async function deleteAndWait(id: string): Promise<void> {
  const res = await t.call("DELETE", `${BASE}/${id}`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const gone = await settle(
    async () => (await t.call("GET", `${BASE}/${id}`)).status,
    (s) => s === 404,
    60_000,
  );
  expect(gone, `sandbox ${id} still listed after delete`).toBe(404);
}

/** The sandbox's host uid, from the owner of its processes. */
function hostUid(id: string): number {
  const uids = new Set(sandboxProcesses(instance, id).map((p) => p.uid));
  expect(uids.size, `sandbox ${id} runs as one uid: ${[...uids]}`).toBe(1);
  return [...uids][0] as number;
}

function readCgroup(id: string, controller: string, file: string): string {
  const dir = sandboxCgroupDir(instance, id, controller);
  expect(dir, `no ${controller} cgroup for ${id}`).toBeDefined();
  return readFileSync(join(dir as string, file), "utf8").trim();
}

const cgroupV2 = () => !cgroupHierarchies().some((h) => h.endsWith("/memory"));

beforeAll(async () => {
  t = await startTestApp({ kind: "memory" }, { localRunner: true });
  attacker = await start();
  victim = await start({
    command: "sh",
    args: [
      "-c",
      `echo secret > /tmp/pdkmark-${tag}-victim-tmp; echo secret > /workspace/pdkmark-${tag}-victim-ws; exec ${VICTIM_COMMAND}`,
    ],
  });
  instance = findSandboxInstance(attacker) ?? "";
  expect(instance, "the attacker's directory is under the local root").not.toBe("");
  // Test data dirs are made under the run's own directory (test/global-setup.ts).
  const parent = process.env.PADDOCK_TEST_TMPDIR ?? tmpdir();
  const candidates = readdirSync(parent)
    .filter((d) => d.startsWith("paddock-test-"))
    .map((d) => join(parent, d))
    .filter((d) => instanceName(d) === instance);
  expect(candidates, "exactly one data dir is this runner's").toHaveLength(1);
  dataDir = candidates[0] as string;
  // The victim has written its files once they show on the host.
  const victimTmp = join(localRoot(), instance, "sandboxes", victim, "tmp");
  await settle(
    () => existsSync(join(victimTmp, `pdkmark-${tag}-victim-tmp`)),
    (x) => x,
  );
}, 120_000);

afterAll(async () => {
  await t?.close();
});

describe("filesystem", () => {
  it("cannot read /etc/shadow, by its path or through /proc", async () => {
    expect(existsSync("/etc/shadow"), "the host has a shadow file to protect").toBe(true);
    const r = await sh(
      attacker,
      "cat /etc/shadow; echo rc=$?; cat /proc/1/root/etc/shadow; echo rc=$?; ls /etc",
    );
    expect(r.stdout).toContain("rc=1\n");
    expect(r.stdout).not.toContain("rc=0");
    expect(r.stdout).not.toMatch(/^root:[^x]/m);
    const etc = r.stdout.split("\n");
    expect(etc).toContain("passwd"); // positive control: ls /etc listed it
    expect(etc).not.toContain("shadow");
    expect(etc).not.toContain("gshadow");
    expect(etc).not.toContain("ssh");
  });

  it("cannot write /usr, the helpers, or the host's /etc/passwd", async () => {
    const passwd = readFileSync("/etc/passwd", "utf8");
    const helper = "/.paddock/paddock-pause";
    const r = await sh(
      attacker,
      [
        `touch /usr/pdk-escape-${tag}; echo usr=$?`,
        `touch /bin/pdk-escape-${tag}; echo bin=$?`,
        `mkdir /usr/local/pdk-escape-${tag}; echo usrlocal=$?`,
        `echo x >> ${helper}; echo helper=$?`,
        `echo 'pwned:x:0:0::/:/bin/sh' >> /etc/passwd`,
        "cat /etc/passwd",
      ].join("; "),
    );
    for (const what of ["usr", "bin", "usrlocal", "helper"]) {
      expect(r.stdout, r.stderr).toMatch(new RegExp(`^${what}=[1-9]`, "m"));
    }
    expect(existsSync(`/usr/pdk-escape-${tag}`)).toBe(false);
    expect(existsSync(`/usr/bin/pdk-escape-${tag}`)).toBe(false);
    expect(existsSync(`/usr/local/pdk-escape-${tag}`)).toBe(false);
    // The sandbox's /etc/passwd is its own (whether or not it may edit it), never the host's.
    expect(r.stdout).toMatch(/^root:x:0:0:/m); // positive control: cat ran
    const hostOnly = passwd
      .split("\n")
      .find((l) => l && !l.startsWith("root:") && !l.startsWith("nobody:"));
    expect(hostOnly, "the host has users of its own").toBeDefined();
    expect(r.stdout).not.toContain(hostOnly);
    expect(readFileSync("/etc/passwd", "utf8")).toBe(passwd);
  });

  it("sees neither the data dir, /var/lib/paddock, nor another sandbox's files", async () => {
    const hostMarks = [
      join(dataDir, `pdkmark-${tag}-datadir`),
      join(localRoot(), instance, `pdkmark-${tag}-instance`),
      join(localRoot(), `pdkmark-${tag}-root`),
    ];
    for (const m of hostMarks) writeFileSync(m, "secret\n");
    const victimDir = join(localRoot(), instance, "sandboxes", victim);
    // Positive control for the victim: its files are there on the host.
    expect(readFileSync(join(victimDir, "workspace", `pdkmark-${tag}-victim-ws`), "utf8")).toBe(
      "secret\n",
    );
    try {
      const r = await sh(
        attacker,
        [
          `echo mine > /tmp/pdkmark-${tag}-own`,
          `find / -path /proc -prune -o -name 'pdkmark-${tag}-*' -print 2>/dev/null`,
          ...[...hostMarks, dataDir, "/var/lib/paddock", victimDir, join(victimDir, "tmp")].map(
            (p) => `ls -d ${p} >/dev/null 2>&1 && echo VISIBLE ${p}`,
          ),
          "ls /var",
        ].join("; "),
        120,
      );
      // Its own file, seen twice: /var/tmp is the same directory as /tmp.
      const found = r.stdout.split("\n").filter((l) => l.includes("pdkmark-"));
      expect(found.sort()).toEqual([`/tmp/pdkmark-${tag}-own`, `/var/tmp/pdkmark-${tag}-own`]);
      expect(r.stdout).not.toContain("VISIBLE");
      expect(r.stdout.split("\n")).toContain("tmp"); // ls /var ran: it holds only tmp
      expect(r.stdout.split("\n")).not.toContain("lib");
    } finally {
      for (const m of hostMarks) rmSync(m, { force: true });
    }
  });
});

describe("network", () => {
  let tcp: Server;
  let tcpPort = 0;
  let abstract: Server;
  const abstractName = `pdk-escape-${tag}`;
  const connected: string[] = [];

  beforeAll(async () => {
    tcp = createServer((s) => {
      connected.push("tcp");
      s.end("hello from the host\n");
    });
    await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
    tcpPort = (tcp.address() as { port: number }).port;
    abstract = createServer((s) => {
      connected.push("abstract");
      s.end("hello from the host\n");
    });
    await new Promise<void>((r) => abstract.listen(`\0${abstractName}`, r));
  });
  afterAll(() => {
    tcp?.close();
    abstract?.close();
  });

  const PROBE = `
import socket, sys, threading
def tcp(port, serve):
    if serve:
        srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port)); srv.listen(1)
        threading.Thread(target=lambda: srv.accept()[0].sendall(b"hello from the sandbox\\n"), daemon=True).start()
    try:
        s = socket.create_connection(("127.0.0.1", port), 3)
        return s.recv(100).decode().strip()
    except Exception as e:
        return "unreachable: " + type(e).__name__
def unix(name):
    try:
        s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect("\\0" + name)
        return s.recv(100).decode().strip()
    except Exception as e:
        return "unreachable: " + type(e).__name__
print("host-tcp", tcp(int(sys.argv[1]), False))
print("host-abstract", unix(sys.argv[2]))
print("own-tcp", tcp(int(sys.argv[1]), True))
`;

  it("cannot reach the host's loopback services (TCP or abstract unix sockets)", async () => {
    expect(existsSync("/usr/bin/python3"), "the probe runs python3 from the host's /usr").toBe(
      true,
    );
    const r = await sh(attacker, `python3 -c '${PROBE}' ${tcpPort} ${abstractName}`);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^host-tcp unreachable: /m);
    expect(r.stdout).toMatch(/^host-abstract unreachable: /m);
    // Positive control: the same probe reaches a server on the sandbox's own loopback.
    expect(r.stdout).toMatch(/^own-tcp hello from the sandbox$/m);
    expect(connected).toEqual([]);
  });

  it("has no interface but its own loopback", async () => {
    const r = await sh(attacker, "ls /sys/class/net 2>/dev/null || cat /proc/net/dev");
    const hostIfs = readdirSync("/sys/class/net").filter((i) => i !== "lo");
    expect(hostIfs.length, "the host has interfaces to hide").toBeGreaterThan(0);
    for (const i of hostIfs) expect(r.stdout).not.toContain(`${i}:`);
    expect(r.stdout).toContain("lo");
  });
});

describe("identity and privileges", () => {
  it("maps the sandbox's root to an unprivileged host uid of its own", async () => {
    const r = await sh(
      attacker,
      `id -u; cat /proc/self/uid_map /proc/self/gid_map; echo x > /tmp/owned-${tag}`,
    );
    const [inside, uidMap, gidMap] = r.stdout.trim().split("\n");
    expect(inside).toBe("0");
    // One id mapped, nothing else. (With --disable-userns bubblewrap nests one more
    // user namespace, so the map's outer id is relative to that, not to the host.)
    expect((uidMap ?? "").trim().split(/\s+/).map(Number)).toEqual([0, expect.any(Number), 1]);
    expect((gidMap ?? "").trim().split(/\s+/).map(Number)).toEqual([0, expect.any(Number), 1]);
    const file = join(localRoot(), instance, "sandboxes", attacker, "tmp", `owned-${tag}`);
    const outside = statSync(file).uid;
    expect(outside).toBeGreaterThanOrEqual(FIRST_SANDBOX_UID);
    expect(statSync(file).gid).toBe(outside);
    // Every process of the sandbox runs as that uid on the host, never as root...
    expect(hostUid(attacker)).toBe(outside);
    // ...and another sandbox has another one.
    expect(hostUid(victim)).toBeGreaterThanOrEqual(FIRST_SANDBOX_UID);
    expect(hostUid(victim)).not.toBe(outside);
  });

  // Known gap (see the report): each runner allocates uids from 300000 on its
  // own, so sandboxes of two Paddock instances on one host share a host uid,
  // and with it every per-uid kernel limit (RLIMIT_NPROC, inotify instances,
  // pipe buffer pages, user namespace counts). Flip to `it` once uids are
  // claimed host-wide (as network slots are).
  it("two Paddock instances on one host never give their sandboxes the same uid", async () => {
    const other = await startTestApp({ kind: "memory" }, { localRunner: true });
    try {
      const res = await other.call("POST", `${BASE}?wait=true`, {});
      expect(res.body.sandboxStatus, JSON.stringify(res.body)).toBe("SANDBOX_STATUS_RUNNING");
      const otherInstance = findSandboxInstance(res.body.sandboxId) as string;
      expect(otherInstance).not.toBe(instance);
      const theirs = new Set(sandboxProcesses(otherInstance, res.body.sandboxId).map((p) => p.uid));
      expect(theirs.size).toBe(1);
      const ours = [attacker, victim].map(hostUid);
      for (const uid of theirs) expect(ours).not.toContain(uid);
    } finally {
      await other.close();
    }
  });

  it("has no capabilities and no_new_privs, in its main process and in exec", async () => {
    const procs = sandboxProcesses(instance, victim);
    expect(procs.some((p) => p.cmdline === VICTIM_COMMAND)).toBe(true);
    const hostUserns = readlinkSync("/proc/self/ns/user");
    for (const p of procs) {
      const s = readFileSync(`/proc/${p.pid}/status`, "utf8");
      // bubblewrap's monitor stays in the host's user namespace, holding nothing;
      // everything in the sandbox's namespace has an empty bounding set too.
      const inside = readlinkSync(`/proc/${p.pid}/ns/user`) !== hostUserns;
      const caps = ["CapInh", "CapPrm", "CapEff", "CapAmb", ...(inside ? ["CapBnd"] : [])];
      for (const cap of caps)
        expect(s, `${p.comm}: ${cap}`).toMatch(new RegExp(`^${cap}:\\s+0+$`, "m"));
      expect(s, p.comm).toMatch(/^NoNewPrivs:\s+1$/m);
    }
    expect(
      procs.filter((p) => readlinkSync(`/proc/${p.pid}/ns/user`) !== hostUserns).length,
    ).toBeGreaterThanOrEqual(2);
    const r = await sh(
      attacker,
      [
        "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status",
        "mount -t tmpfs none /tmp 2>/dev/null; echo mount=$?",
        "ip link set lo down 2>/dev/null; echo netadmin=$?",
        "touch /tmp/c && chown 1:1 /tmp/c 2>/dev/null; echo chown=$?",
        "chroot / true 2>/dev/null; echo chroot=$?",
      ].join("; "),
    );
    for (const cap of ["CapEff", "CapPrm", "CapBnd"])
      expect(r.stdout).toMatch(new RegExp(`^${cap}:\\s+0+$`, "m"));
    expect(r.stdout).toMatch(/^NoNewPrivs:\s+1$/m);
    for (const op of ["mount", "netadmin", "chown", "chroot"])
      expect(r.stdout).toMatch(new RegExp(`^${op}=[1-9]`, "m"));
  });

  // Known gap (see the report): bubblewrap is not given --disable-userns, so a
  // sandbox can create a nested user namespace and hold every capability in
  // it (mount, netfilter, ...), the kernel surface most escapes go through.
  // Flip to `it` once bwrap.ts passes --disable-userns.
  it("cannot gain capabilities in a nested user namespace", async () => {
    const NESTED = `
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("unshare", libc.unshare(0x10000000), ctypes.get_errno())
print([l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0])
`;
    const r = await sh(attacker, `python3 -c '${NESTED}'`);
    expect(r.stdout).toMatch(/^unshare -1 \d+$/m);
    expect(r.stdout).toMatch(/^0+$/m);
  });

  it("hands the sandbox no descriptor beyond stdio", async () => {
    const main = sandboxProcesses(instance, victim).find((p) => p.cmdline === VICTIM_COMMAND);
    expect(main).toBeDefined();
    expect(Object.keys(processFds(main?.pid ?? 0)).map(Number)).toEqual([0, 1, 2]);
    const r = await sh(attacker, "ls /proc/self/fd");
    // ls's own directory fd is 3.
    expect(r.stdout.trim().split("\n").map(Number)).toEqual([0, 1, 2, 3]);
  });
});

describe("processes", () => {
  it("sees only its own processes", async () => {
    const r = await sh(attacker, "ps -e -o pid=,args=");
    const lines = r.stdout.trim().split("\n");
    expect(lines.some((l) => l.includes("ps -e -o pid=,args="))).toBe(true);
    expect(lines.some((l) => l.includes("paddock-pause"))).toBe(true);
    expect(r.stdout).not.toContain(VICTIM_COMMAND);
    expect(r.stdout).not.toMatch(/node|vitest|local-runner/);
    expect(lines.length).toBeLessThan(8);
  });

  it("cannot kill another sandbox's processes or the host's", async () => {
    const targets = sandboxProcesses(instance, victim);
    expect(targets.length).toBeGreaterThan(0);
    const runner = process.pid;
    const r = await sh(
      attacker,
      [...targets.map((p) => p.pid), runner]
        .map((pid) => `kill -9 ${pid} 2>/dev/null; echo kill${pid}=$?`)
        .join("; "),
    );
    for (const p of targets) expect(r.stdout).toMatch(new RegExp(`^kill${p.pid}=[1-9]`, "m"));
    expect(r.stdout).toMatch(new RegExp(`^kill${runner}=[1-9]`, "m"));
    // kill -9 -1 kills everything the sender may signal: here, only its own sandbox.
    const doomed = await start();
    const k = await t.call("POST", `${BASE}/${doomed}/exec`, {
      command: ["sh", "-c", "kill -9 -1"],
    });
    expect(k.status, JSON.stringify(k.body)).toBe(200);
    const ended = await settle(
      () => status(doomed),
      (s) => TERMINAL.includes(s.sandboxStatus),
      60_000,
    );
    expect(TERMINAL, "kill -1 ended the sandbox's own main process").toContain(ended.sandboxStatus);
    for (const p of targets) expect(stillRunning(p), `${p.pid} ${p.cmdline}`).toBe(true);
    expect((await status(victim)).sandboxStatus).toBe("SANDBOX_STATUS_RUNNING");
    expect((await sh(victim, "echo alive")).stdout).toBe("alive\n");
    await deleteAndWait(doomed);
  });
});

describe("resource limits", () => {
  const pidsLimitHits = (id: string): number => {
    try {
      return Number(/max (\d+)/.exec(readCgroup(id, "pids", "pids.events"))?.[1] ?? 0);
    } catch {
      return 0;
    }
  };

  it("survives a fork bomb: pids.max holds, the host stays fine, delete cleans up", async () => {
    const id = await start();
    // The bomb forks itself into the background: exec answers, the bomb goes on.
    await sh(id, "f(){ f|f& }; f", 20);
    expect(
      await settle(
        () => pidsLimitHits(id),
        (n) => n > 0,
      ),
      "the limit was hit",
    ).toBeGreaterThan(0);
    expect(readCgroup(id, "pids", "pids.max")).toBe(String(DEFAULT_PIDS_MAX));
    expect(Number(readCgroup(id, "pids", "pids.current"))).toBeLessThanOrEqual(DEFAULT_PIDS_MAX);
    expect(sandboxProcesses(instance, id).length).toBeLessThanOrEqual(DEFAULT_PIDS_MAX);
    // The host still forks, and another sandbox still works.
    expect(execFileSync("sh", ["-c", "echo host-ok"]).toString()).toBe("host-ok\n");
    expect((await sh(attacker, "echo ok")).stdout).toBe("ok\n");
    await deleteAndWait(id);
    expect(sandboxCgroupDirs(instance, id)).toEqual([]);
    expect(sandboxProcesses(instance, id)).toEqual([]);
  });

  it("a fork bomb beside the main process is cleaned up by delete", async () => {
    const id = await start({ command: "sh", args: ["-c", "f(){ f|f& }; f; exec sleep 1000"] });
    expect(
      await settle(
        () => pidsLimitHits(id),
        (n) => n > 0,
      ),
      "the limit was hit",
    ).toBeGreaterThan(0);
    expect((await status(id)).sandboxStatus).toBe("SANDBOX_STATUS_RUNNING");
    await deleteAndWait(id);
    expect(sandboxCgroupDirs(instance, id)).toEqual([]);
    expect(sandboxProcesses(instance, id)).toEqual([]);
  });

  it("memory limits cover swap, and an allocation over the limit is OOM-killed", async () => {
    const limit = 64 * 1024 * 1024;
    const id = await start({ resources: { memory: "64Mi" } });
    if (cgroupV2()) {
      expect(readCgroup(id, "memory", "memory.max")).toBe(String(limit));
      expect(readCgroup(id, "memory", "memory.swap.max")).toBe("0");
    } else {
      expect(readCgroup(id, "memory", "memory.limit_in_bytes")).toBe(String(limit));
      expect(readCgroup(id, "memory", "memory.memsw.limit_in_bytes")).toBe(String(limit));
    }
    const alloc = (mib: number) =>
      sh(id, `python3 -c 'b = b"x" * (${mib} << 20); print(len(b) >> 20)'`);
    // Positive control: under the limit it works.
    const small = await alloc(16);
    expect(small.exitCode, small.stderr).toBe(0);
    expect(small.stdout).toBe("16\n");
    const big = await alloc(200);
    expect(big.exitCode).toBe(137);
    const events = cgroupV2()
      ? readCgroup(id, "memory", "memory.events")
      : readCgroup(id, "memory", "memory.oom_control");
    expect(Number(/oom_kill (\d+)/.exec(events)?.[1])).toBeGreaterThan(0);
    // The sandbox itself lives on.
    expect((await sh(id, "echo ok")).stdout).toBe("ok\n");
    await deleteAndWait(id);
  });

  it("a main process over its memory limit fails the sandbox, saying why", async () => {
    const res = await t.call("POST", `${BASE}?wait=true`, {
      resources: { memory: "64Mi" },
      command: "python3",
      args: ["-c", "import time; b = b'x' * (200 << 20); time.sleep(100)"],
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const id = res.body.sandboxId as string;
    const ended = await settle(
      () => status(id),
      (s) => TERMINAL.includes(s.sandboxStatus),
      60_000,
    );
    expect(ended.sandboxStatus).toBe("SANDBOX_STATUS_FAILED");
    expect(ended.statusReason).toMatch(/out of memory/);
    await deleteAndWait(id);
  });
});
