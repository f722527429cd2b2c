import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  accessSync,
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { writeFile as writeFileAsync } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { networkInterfaces } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { AppError } from "../../errors.js";
import { cpuMillicores, memoryBytes } from "../../resources/quantity.js";
import type { LaunchSpec } from "../../sandboxes/sandbox.js";
import { PACKAGE_ROOT } from "../../version.js";
import {
  type Backend,
  type ExecRequest,
  type ExecResult,
  failedObserved,
  type InteractiveSession,
  type LogRequest,
  type ObservedSandbox,
  type SandboxAssignment,
  type WarmPoolConfig,
  type WarmPoolStats,
} from "../backend.js";
import { WarmPool } from "../warm-pool.js";
import { bwrapArgs, etcFiles, sandboxEnv, WORKDIR } from "./bwrap.js";
import {
  type CgroupLayout,
  DEFAULT_PIDS_MAX,
  detectLayout,
  listSandboxCgroups,
  removeParentGroups,
  SandboxCgroup,
} from "./cgroups.js";
import { SlotClaims } from "./claims.js";
import {
  ExecServiceGone,
  ExecServiceUnreachable,
  joinExecService,
  runThroughService,
  type ServiceCommand,
} from "./exec-service.js";
import { type HelperResult, runHelper } from "./helper-process.js";
import { ImageStore } from "./images.js";
import { LogWriter, streamLog } from "./logs.js";
import {
  groupSetsOf,
  LocalNetwork,
  type SandboxAddress,
  type SandboxNetworkSpec,
} from "./network.js";

/** Sandboxes run as host uids from here up, one per sandbox: never as host root. */
const FIRST_UID = 300_000;
const MAX_SANDBOXES = 60_000;
/** Runtime classes the local backend runs with bubblewrap. */
const BWRAP_CLASSES = new Set(["", "runc", "bwrap", "bubblewrap"]);

/**
 * Sandboxes' files and logs live here, not in the data dir: bubblewrap runs
 * as each sandbox's unprivileged uid and must be able to reach its own
 * directories, which a private data dir (or a home directory) forbids.
 */
export const DEFAULT_LOCAL_ROOT = "/var/lib/paddock/local";

/** The local backend's settings for a runner whose state is under `dataDir` (env: PADDOCK_LOCAL_ROOT, PADDOCK_IMAGE_ROOT). */
export function localBackendOptions(dataDir: string, env: NodeJS.ProcessEnv): LocalBackendOptions {
  return {
    instance: instanceName(dataDir),
    helperDir: join(PACKAGE_ROOT, "dist", "native"),
    ...(env.PADDOCK_LOCAL_ROOT ? { root: env.PADDOCK_LOCAL_ROOT } : {}),
    ...(env.PADDOCK_IMAGE_ROOT ? { imageRoot: env.PADDOCK_IMAGE_ROOT } : {}),
  };
}

/** A stable name for a data dir's runner, so that restarts find their own sandboxes and nobody else's. */
export function instanceName(dataDir: string): string {
  return createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 12);
}

export interface LocalBackendOptions {
  /** Names this runner's sandboxes apart from other Paddock instances' on the host (stable across restarts). */
  instance: string;
  /** The local image store (default /var/lib/paddock/images). */
  imageRoot?: string;
  /** Root for sandbox directories; each instance gets its own subdirectory. */
  root?: string;
  /** Directory holding paddock-nsexec and paddock-pause. */
  helperDir: string;
  bwrapPath?: string;
}

/**
 * What a sandbox runs in before its process exists: a host uid, directories,
 * a cgroup with its limits and, when prepared ahead, a network namespace.
 * Built at start, or ahead of time for the warm pool.
 */
interface Shell {
  /** The sandbox id, or `w-…` for a shell built for the warm pool. */
  name: string;
  uid: number;
  dir: string;
  cgroup: SandboxCgroup;
  /** A prepared network namespace (a veth link too when the spec has network). */
  address: SandboxAddress | undefined;
  /**
   * A warm shell's start helper, already in its cgroups and network
   * namespace (the slow part of a start), waiting for bubblewrap's arguments.
   */
  staged?: ChildProcess | undefined;
  /** A warm shell's main-process log, opened ahead; a start hands it to its LogWriter. */
  logFd?: number | undefined;
}

/** Everything a shell is built for: a start takes only a shell whose spec is equal. */
export interface ShellSpec {
  memoryLimit: string;
  cpuLimit: string;
  cpuRequest: string;
  /** Egress other than none, or an exposure: a veth link and rules. */
  network: boolean;
}

export function shellSpecOf(spec: LaunchSpec): ShellSpec {
  return {
    memoryLimit: spec.memoryLimit,
    cpuLimit: spec.cpuLimit,
    cpuRequest: spec.cpuRequest,
    network: (spec.egress !== null && spec.egress.type !== "none") || spec.ingress !== null,
  };
}

export const shellKey = (spec: ShellSpec): string => JSON.stringify(spec);
const WARM_SHELL_PREFIX = "w-";
const SHELL_DIRS = ["tmp", "home", "workspace", "etc", "upper", "work"] as const;

interface LocalSandbox {
  id: string;
  shell: Shell;
  process: ChildProcess | undefined;
  /** Host pid of the sandbox's pid 1 (bubblewrap's init inside the namespaces). */
  initPid: number;
  env: Record<string, string>;
  observed: ObservedSandbox;
  /** Set once the sandbox's nftables rules are in place. */
  rules: { groupSets: string[] } | undefined;
  /** Why a stop was asked for, once it was. */
  stopRequested: string | undefined;
  exited: Promise<void>;
  /**
   * Whether the sandbox's exec service (paddock-nsexec -Z) joined it: commands
   * then fork from inside its cgroups instead of each attaching to them.
   */
  execService: Promise<boolean>;
}

/** The exec service's socket, in a shell's directory (never mounted into the sandbox). */
const EXEC_SOCKET = "exec.sock";
/** How long a start waits for the exec service to join; commands go the slow way without it. */
const EXEC_SERVICE_WAIT_MS = 2000;

/**
 * Runs sandboxes on this machine with bubblewrap: user, pid, ipc, uts,
 * mount and network namespaces, every capability dropped, no-new-privs,
 * cgroup limits, the sandbox's root mapped to an unprivileged host uid.
 */
export class LocalBackend implements Backend {
  readonly kind = "local" as const;
  private readonly sandboxes = new Map<string, LocalSandbox>();
  private readonly cgroups: CgroupLayout | undefined;
  private readonly bwrap: string;
  private readonly nsexec: string;
  private readonly stateDir: string;
  private readonly network: LocalNetwork;
  private readonly images: ImageStore;
  private readonly uids: SlotClaims;
  private readonly pool: WarmPool<Shell>;
  private readonly shellSpecs = new Map<string, ShellSpec>();
  private poolConfig: WarmPoolConfig[] = [];
  /** Starts not yet answered: a warm pool's refill waits for them, their polls thin out (commandStarted). */
  private startsUnderWay = 0;
  private readonly poolUse = new Map<string, { hits: number; misses: number }>();

  constructor(private readonly options: LocalBackendOptions) {
    this.cgroups = detectLayout(options.instance);
    this.bwrap = options.bwrapPath ?? findExecutable("bwrap") ?? "bwrap";
    this.nsexec = join(options.helperDir, "paddock-nsexec");
    this.stateDir = join(options.root ?? DEFAULT_LOCAL_ROOT, options.instance);
    // Searchable, not listable: each sandbox's uid reaches only its own directories.
    makeSearchable(options.root ?? DEFAULT_LOCAL_ROOT, this.stateDir);
    this.images = new ImageStore(options.imageRoot);
    this.uids = new SlotClaims(
      join(options.root ?? DEFAULT_LOCAL_ROOT, "uid-slots"),
      MAX_SANDBOXES,
      "sandbox uid",
    );
    this.network = new LocalNetwork(options.instance, options.root ?? DEFAULT_LOCAL_ROOT);
    // Shells a previous run of this instance left are stale: observe() frees what they held.
    rmSync(join(this.stateDir, "pool"), { recursive: true, force: true });
    mkdirSync(join(this.stateDir, "pool"), { mode: 0o711 });
    this.pool = new WarmPool<Shell>({
      make: (key) => this.makeShell(newShellName(), this.shellSpecs.get(key) as ShellSpec, true),
      destroy: (shell) => this.destroyShell(shell, undefined),
      busy: () => this.startsUnderWay > 0,
      onError: (error, key) =>
        process.stderr.write(
          `paddock: warm shell for ${key} could not be built: ${(error as Error).message}\n`,
        ),
    });
  }

  /** Keeps `size` prepared shells ready for each pool's spec (CONTRACT: warm pools are released on stop). */
  setWarmPools(pools: WarmPoolConfig[]): void {
    if (this.unavailableReason()) return;
    this.poolConfig = pools;
    const targets = new Map<string, number>();
    for (const pool of pools) {
      const spec = shellSpecOf(pool.spec);
      const key = shellKey(spec);
      this.shellSpecs.set(key, spec);
      targets.set(key, (targets.get(key) ?? 0) + pool.size);
    }
    this.pool.configure(targets);
  }

  warmPoolStats(): WarmPoolStats[] {
    return this.poolConfig.map((pool) => {
      const { ready } = this.pool.counts(shellKey(shellSpecOf(pool.spec)));
      const use = this.poolUse.get(pool.profileId) ?? { hits: 0, misses: 0 };
      return { profileId: pool.profileId, size: pool.size, ready, ...use };
    });
  }

  private async makeShell(name: string, spec: ShellSpec, warm: boolean): Promise<Shell> {
    // A host uid no other sandbox on this host (of any Paddock instance) holds.
    const uid = FIRST_UID + this.uids.claim(`${this.options.instance}/${name}`);
    const shell: Shell = {
      name,
      uid,
      dir: join(this.stateDir, warm ? "pool" : "sandboxes", name),
      cgroup: SandboxCgroup.for(this.cgroups as CgroupLayout, name),
      address: undefined,
    };
    try {
      mkdirSync(shell.dir, { recursive: true, mode: 0o711 });
      for (const d of SHELL_DIRS) {
        mkdirSync(join(shell.dir, d), { mode: 0o755 });
        chownSync(join(shell.dir, d), uid, uid);
      }
      for (const [file, content] of Object.entries(etcFiles("sandbox"))) {
        writeFileSync(join(shell.dir, "etc", file), content);
        chownSync(join(shell.dir, "etc", file), uid, uid);
      }
      // Which shell a sandbox's directory holds (its cgroup's and namespace's name), for after a restart.
      writeFileSync(join(shell.dir, "state.json"), JSON.stringify({ uid, shell: name }));
      if (warm) shell.logFd = openSync(join(shell.dir, "log"), "a", 0o600);
      shell.cgroup.create({
        memoryBytes: spec.memoryLimit ? memoryBytes(spec.memoryLimit) : undefined,
        cpuMillicores: spec.cpuLimit ? cpuMillicores(spec.cpuLimit) : undefined,
        cpuRequestMillicores: spec.cpuRequest ? cpuMillicores(spec.cpuRequest) : undefined,
        pidsMax: DEFAULT_PIDS_MAX,
      });
      // A cold start without network lets bubblewrap make the (empty) namespace.
      if (warm || spec.network) shell.address = await this.network.prepare(name, spec.network);
      if (warm) shell.staged = await this.stage(shell);
      return shell;
    } catch (error) {
      await this.destroyShell(shell, undefined);
      throw error;
    }
  }

  /** Starts a warm shell's helper and waits until it has joined the shell's cgroups and namespace. */
  private async stage(shell: Shell): Promise<ChildProcess> {
    const netns = shell.address ? ["-n", `/run/netns/${shell.address.netns}`] : [];
    const procs = shell.cgroup.procsFiles().flatMap((f) => ["-c", f]);
    const service = ["-Z", join(shell.dir, EXEC_SOCKET)];
    const child = spawn(
      this.nsexec,
      ["-u", String(shell.uid), ...procs, ...netns, ...service, "-S"],
      {
        stdio: ["pipe", "pipe", "pipe", "pipe"],
      },
    );
    child.stdin?.on("error", () => undefined);
    const status = child.stdio[3] as NodeJS.ReadableStream;
    let stderr = "";
    const collect = (c: Buffer) => {
      stderr += c.toString();
    };
    child.stderr?.on("data", collect);
    try {
      await new Promise<void>((resolve, reject) => {
        const exited = () =>
          reject(new Error(`the start helper exited while staging: ${stderr.trim()}`));
        child.once("exit", exited);
        child.once("error", reject);
        status.once("data", () => {
          status.pause();
          child.off("exit", exited);
          child.off("error", reject);
          resolve();
        });
      });
    } finally {
      child.stderr?.off("data", collect);
    }
    return child;
  }

  /** Everything the shell holds on the host. */
  private async destroyShell(shell: Shell, rules: { groupSets: string[] } | undefined) {
    if (shell.logFd !== undefined) closeSync(shell.logFd);
    shell.logFd = undefined;
    await this.releaseProcessesAndNetwork(shell, rules);
    rmSync(shell.dir, { recursive: true, force: true });
    this.uids.release(shell.uid - FIRST_UID);
  }

  /** Its processes, cgroup and network; its files (logs) and uid stay. */
  private async releaseProcessesAndNetwork(
    shell: Shell,
    rules: { groupSets: string[] } | undefined,
  ): Promise<void> {
    if (shell.staged?.exitCode === null) shell.staged.kill("SIGKILL");
    shell.staged = undefined;
    await shell.cgroup.destroy();
    if (shell.address)
      await this.network.destroy(shell.address, rules?.groupSets ?? [], rules !== undefined);
    shell.address = undefined;
  }

  unavailableReason(): string | undefined {
    if (process.platform !== "linux")
      return `the local backend needs Linux namespaces; this host runs ${process.platform}`;
    if (!existsSync(this.bwrap))
      return "bubblewrap (bwrap) is not installed: install the 'bubblewrap' package";
    for (const helper of ["paddock-nsexec", "paddock-pause"]) {
      if (!isExecutable(join(this.options.helperDir, helper))) {
        return `${helper} is missing from ${this.options.helperDir}: run 'npm run build' (it needs a C compiler)`;
      }
    }
    if (process.getuid?.() !== 0)
      return "the local backend currently runs sandboxes as root only (to map each sandbox to its own host uid and cgroup)";
    if (!this.cgroups)
      return "no cgroup hierarchy with memory, cpu or pids controllers is mounted under /sys/fs/cgroup";
    return undefined;
  }

  async start(
    assignment: SandboxAssignment,
    onChange: (o: ObservedSandbox) => void,
  ): Promise<ObservedSandbox> {
    this.startsUnderWay++;
    try {
      return await this.startSandbox(assignment, onChange);
    } finally {
      this.startsUnderWay--;
    }
  }

  private async startSandbox(
    assignment: SandboxAssignment,
    onChange: (o: ObservedSandbox) => void,
  ): Promise<ObservedSandbox> {
    const { sandboxId, spec } = assignment;
    const existing = this.sandboxes.get(sandboxId);
    if (existing) return existing.observed;
    const unavailable = this.unavailableReason();
    if (unavailable) return failedObserved(sandboxId, unavailable);
    if (!BWRAP_CLASSES.has(spec.runtimeClass)) {
      return failedObserved(
        sandboxId,
        `runtime class '${spec.runtimeClass}' is not available on this runner (the local backend runs: runc/bubblewrap)`,
      );
    }
    let imageRoot: string | undefined;
    if (spec.image) {
      try {
        imageRoot = this.images.rootfs(spec.image);
        if (!imageRoot) {
          await this.images.pull(spec.image);
          imageRoot = this.images.rootfs(spec.image);
        }
      } catch (error) {
        return failedObserved(sandboxId, (error as Error).message);
      }
      if (!imageRoot)
        return failedObserved(sandboxId, `image '${spec.image}' is not in the local image store`);
    }
    if (
      spec.ingress &&
      !["ClusterIP", "NodePort", "LoadBalancer"].includes(spec.ingress.serviceType)
    ) {
      return failedObserved(
        sandboxId,
        `service type '${spec.ingress.serviceType}' is not supported by the local backend`,
      );
    }
    const shellSpec = shellSpecOf(spec);
    if (shellSpec.network && !existsSync("/usr/sbin/nft") && !findExecutable("nft")) {
      return failedObserved(
        sandboxId,
        "this sandbox needs network rules, but nftables (nft) is not installed on the runner",
      );
    }

    let warmShell = this.pool.take(shellKey(shellSpec));
    if (warmShell?.staged && warmShell.staged.exitCode !== null) {
      // Its helper is gone (killed from outside): not usable, build a shell instead.
      void this.destroyShell(warmShell, undefined);
      warmShell = undefined;
    }
    this.countPoolUse(assignment.profileId, warmShell !== undefined);
    let shell: Shell;
    try {
      shell = warmShell ?? (await this.makeShell(sandboxId, shellSpec, false));
    } catch (error) {
      return failedObserved(sandboxId, `could not start: ${(error as Error).message}`);
    }
    const dir = join(this.stateDir, "sandboxes", sandboxId);
    const hostname = `sandbox-${sandboxId.slice(0, 8)}`;
    const env = sandboxEnv(spec.env, hostname);
    const observed: ObservedSandbox = {
      sandboxId,
      status: "SANDBOX_STATUS_CREATING",
      statusReason: "",
      exitCode: null,
      startedAtMs: null,
      serviceAddress: "",
      exposedPorts: [],
    };
    let resolveExited: () => void = () => undefined;
    let resolveExecService: (ready: boolean) => void = () => undefined;
    const sandbox: LocalSandbox = {
      id: sandboxId,
      shell,
      process: undefined,
      initPid: 0,
      env,
      observed,
      stopRequested: undefined,
      rules: undefined,
      exited: new Promise((r) => {
        resolveExited = r;
      }),
      execService: new Promise((r) => {
        resolveExecService = r;
      }),
    };
    this.sandboxes.set(sandboxId, sandbox);
    try {
      if (warmShell) {
        renameSync(shell.dir, dir);
        shell.dir = dir;
      }
      const dirs = Object.fromEntries(SHELL_DIRS.map((d) => [d, join(dir, d)])) as Record<
        (typeof SHELL_DIRS)[number],
        string
      >;
      // Written in place (the files keep the owner the shell gave them), on
      // libuv's threads: many starts at once do not queue on this one.
      const etc = etcFiles(hostname);
      const mountedFiles = spec.mountedFiles.map((f, i) => ({
        hostPath: join(dir, `mounted-${i}`),
        sandboxPath: f.mountPath,
        content: Buffer.from(f.fileContentBase64, "base64"),
      }));
      await Promise.all([
        ...(["hostname", "hosts"] as const).map((name) =>
          writeFileAsync(join(dirs.etc, name), etc[name] ?? ""),
        ),
        ...mountedFiles.map((f) => writeFileAsync(f.hostPath, f.content, { mode: 0o644 })),
      ]);
      const cgroup = shell.cgroup;
      if (shellSpec.network && shell.address) {
        const address = shell.address;
        const hostPorts = spec.ingress
          ? await Promise.all(spec.ingress.ports.map(() => freePort()))
          : [];
        const networkSpec: SandboxNetworkSpec = {
          sandboxId,
          egress: spec.egress,
          groups: {
            org: assignment.organizationId,
            user: `${assignment.organizationId}/${assignment.userId}`,
            profile: `${assignment.organizationId}/${assignment.profileId}`,
          },
          ingress: spec.ingress ? { ...spec.ingress, hostPorts } : null,
        };
        sandbox.rules = { groupSets: groupSetsOf(networkSpec) };
        await this.network.applyRules(address, networkSpec);
        if (spec.ingress) {
          const published = spec.ingress.serviceType !== "ClusterIP";
          const port = published ? hostPorts[0] : spec.ingress.ports[0];
          observed.serviceAddress =
            port === undefined
              ? ""
              : `${published ? primaryHostAddress() : address.sandboxIp}:${port}`;
          observed.exposedPorts = spec.ingress.ports;
        }
      }
      const netnsArgs = shell.address ? ["-n", `/run/netns/${shell.address.netns}`] : [];
      // fds 0-2 are stdio and 3 the status pipe; bound paths follow from 4.
      // A warm shell's staged helper opens the paths itself; otherwise they are passed open.
      const boundFds: number[] = [];
      const boundPaths: string[] = [];
      const fdFor = (hostPath: string) => {
        if (shell.staged) boundPaths.push(hostPath);
        else boundFds.push(openSync(hostPath, "r"));
        return 3 + boundFds.length + boundPaths.length;
      };
      const args = bwrapArgs(
        {
          imageRoot,
          dirs,
          helperDir: this.options.helperDir,
          hostname,
          ownNetwork: shell.address !== undefined,
          env: spec.env,
          mountedFiles,
          command: spec.command,
          statusFd: 3,
          networkFiles:
            spec.egress && spec.egress.type !== "none" && existsSync("/etc/resolv.conf")
              ? ["/etc/resolv.conf"]
              : [],
        },
        existsSync,
        fdFor,
      );
      const procs = cgroup.procsFiles().flatMap((f) => ["-c", f]);
      let child: ChildProcess;
      if (shell.staged) {
        child = shell.staged;
        child.stdin?.end(
          [...boundPaths.map((path, i) => `${4 + i}=${path}`), "--", this.bwrap, ...args].join(
            "\0",
          ),
        );
      } else {
        try {
          child = spawn(
            this.nsexec,
            [
              "-u",
              String(shell.uid),
              ...procs,
              ...netnsArgs,
              "-Z",
              join(dir, EXEC_SOCKET),
              "--",
              this.bwrap,
              ...args,
            ],
            {
              stdio: ["ignore", "pipe", "pipe", "pipe", ...boundFds],
            },
          );
        } finally {
          for (const fd of boundFds) closeSync(fd);
        }
      }
      sandbox.process = child;
      const log = new LogWriter(shell.logFd ?? join(dir, "log"));
      shell.logFd = undefined;
      child.stdout?.on("data", (c: Buffer) => log.write("stdout", c));
      let lastStderr = "";
      child.stderr?.on("data", (c: Buffer) => {
        log.write("stderr", c);
        const lines = c.toString("utf8").trim().split("\n");
        lastStderr = (lines[lines.length - 1] ?? "").slice(0, 300);
      });
      let bwrapExitCode: number | undefined;
      const started = new Promise<void>((resolve, reject) => {
        const status = child.stdio[3];
        if (!status || !("on" in status)) return reject(new Error("no status pipe"));
        const lines = createInterface({ input: status as NodeJS.ReadableStream });
        lines.on("line", (line) => {
          try {
            const message = JSON.parse(line) as { "child-pid"?: number; "exit-code"?: number };
            if (message["child-pid"] !== undefined) {
              sandbox.initPid = message["child-pid"];
              resolve();
            }
            if (message["exit-code"] !== undefined) bwrapExitCode = message["exit-code"];
          } catch {
            // not a status line
          }
        });
        child.once("exit", () => reject(new Error("the sandbox exited before it started")));
        child.once("error", reject);
        // A staged helper's status pipe was paused after its ready line.
        (status as NodeJS.ReadableStream).resume();
      });
      child.once("close", (code, signal) => {
        log.close();
        const exitCode = bwrapExitCode ?? code ?? (signal ? 128 : 1);
        if (sandbox.stopRequested !== undefined) {
          this.update(
            sandbox,
            { status: "SANDBOX_STATUS_TERMINATED", statusReason: sandbox.stopRequested, exitCode },
            onChange,
          );
        } else if (exitCode === 0) {
          this.update(
            sandbox,
            { status: "SANDBOX_STATUS_COMPLETED", statusReason: "exited with code 0", exitCode },
            onChange,
          );
        } else {
          const reason = cgroup.oomKilled()
            ? `killed: out of memory (memory limit ${spec.memoryLimit})`
            : `exited with code ${exitCode}${lastStderr ? `: ${lastStderr}` : ""}`;
          this.update(
            sandbox,
            { status: "SANDBOX_STATUS_FAILED", statusReason: reason, exitCode },
            onChange,
          );
        }
        resolveExecService(false);
        resolveExited();
      });
      await started;
      if (!(await commandStarted(sandbox.initPid, child, () => this.startsUnderWay))) {
        // It ended during setup: the exit handler has the reason.
        await sandbox.exited;
        return sandbox.observed;
      }
      // Before RUNNING: until it joins, the service is a root process in the sandbox's cgroups.
      resolveExecService(
        await joinExecService(join(dir, EXEC_SOCKET), sandbox.initPid, EXEC_SERVICE_WAIT_MS),
      );
      this.update(
        sandbox,
        { status: "SANDBOX_STATUS_RUNNING", statusReason: "", startedAtMs: Date.now() },
        undefined,
      );
      return sandbox.observed;
    } catch (error) {
      sandbox.process?.kill("SIGKILL");
      resolveExecService(false);
      resolveExited();
      await this.cleanup(sandbox);
      this.sandboxes.delete(sandboxId);
      return failedObserved(sandboxId, `could not start: ${(error as Error).message}`);
    }
  }

  private update(
    sandbox: LocalSandbox,
    change: Partial<ObservedSandbox>,
    onChange: ((o: ObservedSandbox) => void) | undefined,
  ): void {
    sandbox.observed = { ...sandbox.observed, ...change };
    onChange?.(sandbox.observed);
  }

  async stop(
    sandboxId: string,
    gracefulShutdownSeconds: number,
    reason = "stopped",
  ): Promise<void> {
    const sandbox = this.sandboxes.get(sandboxId);
    if (
      !sandbox?.process ||
      sandbox.process.exitCode !== null ||
      sandbox.process.signalCode !== null
    )
      return;
    sandbox.stopRequested = reason;
    this.update(sandbox, { status: "SANDBOX_STATUS_TERMINATING" }, undefined);
    // SIGTERM to everything inside except the sandbox's init, which would just die and take all with it.
    for (const pid of sandbox.shell.cgroup.pids()) {
      if (pid !== sandbox.initPid && pid !== sandbox.process.pid) signal(pid, "SIGTERM");
    }
    const graceMs = Math.max(0, gracefulShutdownSeconds) * 1000;
    const done = await Promise.race([
      sandbox.exited.then(() => true),
      sleep(graceMs).then(() => false),
    ]);
    if (!done) {
      for (const pid of sandbox.shell.cgroup.pids()) signal(pid, "SIGKILL");
      await sandbox.exited;
    }
  }

  async remove(sandboxId: string): Promise<void> {
    const sandbox = this.sandboxes.get(sandboxId);
    if (sandbox) {
      await this.stop(sandboxId, 0);
      await this.cleanup(sandbox);
      this.sandboxes.delete(sandboxId);
    } else {
      await this.cleanupLeftovers(sandboxId);
    }
  }

  private async cleanup(sandbox: LocalSandbox): Promise<void> {
    await this.destroyShell(sandbox.shell, sandbox.rules);
    sandbox.rules = undefined;
  }

  /** After a restart: whatever a sandbox of this id left on the host. */
  private async cleanupLeftovers(sandboxId: string): Promise<void> {
    if (this.cgroups) await SandboxCgroup.for(this.cgroups, this.shellNameOf(sandboxId)).destroy();
    rmSync(join(this.stateDir, "sandboxes", sandboxId), { recursive: true, force: true });
  }

  /** The shell a sandbox's files say it ran in (its cgroup's name): its id unless it took a warm one. */
  private shellNameOf(sandboxId: string): string {
    try {
      const state = JSON.parse(
        readFileSync(join(this.stateDir, "sandboxes", sandboxId, "state.json"), "utf8"),
      ) as { shell?: unknown };
      return typeof state.shell === "string" ? state.shell : sandboxId;
    } catch {
      return sandboxId;
    }
  }

  private countPoolUse(profileId: string, hit: boolean): void {
    if (!this.poolConfig.some((p) => p.profileId === profileId)) return;
    const use = this.poolUse.get(profileId) ?? { hits: 0, misses: 0 };
    if (hit) use.hits++;
    else use.misses++;
    this.poolUse.set(profileId, use);
  }

  /**
   * Sandboxes this host still has traces of. Processes die with their runner
   * (bubblewrap's --die-with-parent), so after a restart every one found on
   * disk is reported failed; its logs stay readable until it is removed.
   */
  async observe(): Promise<ObservedSandbox[]> {
    const root = join(this.stateDir, "sandboxes");
    const ids = new Set<string>(existsSync(root) ? readdirSync(root) : []);
    // What live sandboxes and ready warm shells hold stays; the rest is a crash's leftovers.
    const keep = new Set([
      ...[...this.sandboxes.values()].map((s) => s.shell.name),
      ...this.pool.shells().map((s) => s.name),
    ]);
    const leftoverGroups: string[] = [];
    if (this.cgroups) {
      for (const name of listSandboxCgroups(this.cgroups)) {
        if (keep.has(name)) continue;
        if (name.startsWith(WARM_SHELL_PREFIX)) leftoverGroups.push(name);
        else ids.add(name);
      }
    }
    await this.network.cleanupExcept(keep);
    for (const { slot, owner } of this.uids.owned(`${this.options.instance}/`)) {
      if (!keep.has(owner.slice(this.options.instance.length + 1))) this.uids.release(slot);
    }
    if (this.cgroups)
      for (const name of leftoverGroups) await SandboxCgroup.for(this.cgroups, name).destroy();
    const out: ObservedSandbox[] = [];
    for (const id of ids) {
      const live = this.sandboxes.get(id);
      if (live) {
        out.push(live.observed);
        continue;
      }
      if (this.cgroups) await SandboxCgroup.for(this.cgroups, this.shellNameOf(id)).destroy();
      out.push(
        failedObserved(
          id,
          "the runner restarted while the sandbox ran; its processes were stopped",
        ),
      );
    }
    return out;
  }

  private running(sandboxId: string): LocalSandbox {
    const sandbox = this.sandboxes.get(sandboxId);
    if (sandbox?.observed.status !== "SANDBOX_STATUS_RUNNING" || sandbox.initPid === 0) {
      throw new AppError("FAILED_PRECONDITION", `sandbox ${sandboxId} is not running`, {
        reason: "SANDBOX_NOT_RUNNING",
      });
    }
    return sandbox;
  }

  private enterArgs(sandbox: LocalSandbox): string[] {
    return [
      "-p",
      String(sandbox.initPid),
      ...sandbox.shell.cgroup.procsFiles().flatMap((f) => ["-c", f]),
    ];
  }

  async exec(sandboxId: string, request: ExecRequest, signal: AbortSignal): Promise<ExecResult> {
    const sandbox = this.running(sandboxId);
    const env = { ...sandbox.env, ...request.env };
    const command = {
      command: request.command,
      env,
      workingDir: request.workingDir || WORKDIR,
      stdin: request.stdin,
      maxOutputBytes: request.maxOutputBytes,
      timeoutMs: request.timeoutMs,
      signal,
    };
    const result =
      (await this.execThroughService(sandbox, command)) ??
      (await runHelper(
        this.nsexec,
        [
          ...this.enterArgs(sandbox),
          "-w",
          command.workingDir,
          ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
          "--",
          ...request.command,
        ],
        command,
      ));
    if (result.timedOut) {
      throw new AppError(
        "DEADLINE_EXCEEDED",
        `command did not finish within ${request.timeoutMs} ms and was killed`,
        {
          reason: "COMMAND_TIMEOUT",
        },
      );
    }
    // 125 with the helper's own message: it could not enter; a command may exit 125 itself.
    if (result.code === 125 && result.stderr.toString().startsWith("paddock-nsexec:"))
      throw new AppError(
        "FAILED_PRECONDITION",
        `cannot enter sandbox ${sandboxId}: ${result.stderr.toString().trim()}`,
        { reason: "SANDBOX_NOT_RUNNING" },
      );
    return {
      stdout: result.stdout,
      stderr: result.stderr,
      exitCode: result.code,
      stdoutTruncated: result.stdoutTruncated,
      stderrTruncated: result.stderrTruncated,
    };
  }

  /** Undefined when the sandbox has no exec service to take it: the caller enters the slow way. */
  private async execThroughService(
    sandbox: LocalSandbox,
    command: ServiceCommand,
  ): Promise<HelperResult | undefined> {
    if (!(await sandbox.execService)) return undefined;
    try {
      return await runThroughService(join(sandbox.shell.dir, EXEC_SOCKET), command);
    } catch (error) {
      if (error instanceof ExecServiceUnreachable) return undefined;
      if (error instanceof ExecServiceGone)
        throw new AppError(
          "FAILED_PRECONDITION",
          `sandbox ${sandbox.id} ended during the command`,
          {
            reason: "SANDBOX_NOT_RUNNING",
          },
        );
      throw error;
    }
  }

  async readFile(
    sandboxId: string,
    path: string,
    maxBytes: number,
    signal: AbortSignal,
  ): Promise<Buffer> {
    const sandbox = this.running(sandboxId);
    const result = await runHelper(
      this.nsexec,
      [...this.enterArgs(sandbox), "-R", path, "-m", String(maxBytes)],
      {
        maxOutputBytes: maxBytes + 1,
        signal,
      },
    );
    if (result.code !== 0) throw fileError(path, result.stderr.toString(), maxBytes);
    return result.stdout;
  }

  async writeFile(
    sandboxId: string,
    path: string,
    content: Buffer,
    signal: AbortSignal,
  ): Promise<void> {
    const sandbox = this.running(sandboxId);
    const result = await runHelper(this.nsexec, [...this.enterArgs(sandbox), "-W", path], {
      stdin: content,
      maxOutputBytes: 64 * 1024,
      signal,
    });
    if (result.code !== 0) throw fileError(path, result.stderr.toString(), 0);
  }

  async logs(
    sandboxId: string,
    request: LogRequest,
    onData: (chunk: Buffer) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const sandbox = this.sandboxes.get(sandboxId);
    const path = join(this.stateDir, "sandboxes", sandboxId, "log");
    let ended = sandbox === undefined;
    void sandbox?.exited.then(() => {
      ended = true;
    });
    await streamLog(path, { ...request, done: () => ended }, onData, signal);
  }

  async interactive(
    sandboxId: string,
    command: string[],
    env: Record<string, string>,
    tty: boolean,
  ): Promise<InteractiveSession> {
    const sandbox = this.running(sandboxId);
    const args = [
      ...this.enterArgs(sandbox),
      "-w",
      WORKDIR,
      ...Object.entries({ ...sandbox.env, TERM: "xterm-256color", ...env }).flatMap(([k, v]) => [
        "-e",
        `${k}=${v}`,
      ]),
      ...(tty ? ["-t", "-r", "3"] : []),
      "--",
      ...command,
    ];
    const child = spawn(this.nsexec, args, { stdio: ["pipe", "pipe", "pipe", "pipe"] });
    const listeners: ((data: Buffer) => void)[] = [];
    child.stdout.on("data", (c: Buffer) => {
      for (const l of listeners) l(c);
    });
    child.stderr.on("data", (c: Buffer) => {
      for (const l of listeners) l(c);
    });
    child.stdin.on("error", () => undefined);
    const resize = child.stdio[3] as NodeJS.WritableStream | null;
    resize?.on("error", () => undefined);
    const exited = new Promise<number>((resolve) =>
      child.once("close", (code) => resolve(code ?? 137)),
    );
    return {
      write: (data) => child.stdin.write(data),
      closeStdin: () => child.stdin.end(),
      resize: (rows, cols) => resize?.write(`${rows} ${cols}\n`),
      onOutput: (listener) => listeners.push(listener),
      exited,
      kill: () => child.kill("SIGTERM"),
    };
  }

  /** Stops every sandbox and removes what Paddock made on the host for them. */
  async shutdownAll(): Promise<void> {
    await this.pool.close();
    await Promise.all([...this.sandboxes.keys()].map((id) => this.remove(id)));
    await this.network.close();
    if (this.cgroups) removeParentGroups(this.cgroups);
    this.removeDirectoryIfEmpty();
  }

  async close(): Promise<void> {
    // Sandboxes die with this process anyway (--die-with-parent); ending them
    // here lets their records say why. Their files stay, for logs, until deleted.
    for (const sandbox of this.sandboxes.values()) {
      sandbox.stopRequested ??= "the runner shut down";
      sandbox.process?.kill("SIGKILL");
    }
    await Promise.all([...this.sandboxes.values()].map((s) => s.exited));
    await this.pool.close();
    for (const sandbox of this.sandboxes.values())
      await this.releaseProcessesAndNetwork(sandbox.shell, sandbox.rules);
    await this.network.close();
    if (this.cgroups) removeParentGroups(this.cgroups);
    this.removeDirectoryIfEmpty();
  }

  /** The instance's directory goes once nothing is in it: a sandbox's files (its logs) keep it. */
  private removeDirectoryIfEmpty(): void {
    for (const dir of [
      join(this.stateDir, "pool"),
      join(this.stateDir, "sandboxes"),
      this.stateDir,
    ]) {
      try {
        rmdirSync(dir);
      } catch {
        // not empty, or gone already
      }
    }
  }
}

/**
 * bubblewrap reports its init's pid right after cloning it, before the
 * mounts and id maps are in place; the sandbox is ready once init has forked
 * the command, which it does last. Each poll is a read of /proc: with many
 * starts under way, each polls less often (every `starts / 10` ms), so that
 * together they read about ten times a millisecond instead of crowding out
 * the starts they wait for.
 */
async function commandStarted(
  initPid: number,
  child: ChildProcess,
  starts: () => number,
): Promise<boolean> {
  const children = `/proc/${initPid}/task/${initPid}/children`;
  const deadline = Date.now() + 10_000;
  for (let i = 0; Date.now() < deadline; i++) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    try {
      if (readFileSync(children, "utf8").trim() !== "") return true;
    } catch {
      return false; // init is gone: the exit handler reports why
    }
    const alone = starts() <= 1;
    const ms = alone && i < 50 ? 0 : Math.max(1, Math.ceil(starts() / 10));
    await new Promise((resolve) => setTimeout(resolve, ms));
  }
  throw new Error("the sandbox's command did not start within 10 s");
}

/** A free TCP port on this host for a published exposure. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The address published ports are reached at: the host's first non-loopback IPv4 address. */
function primaryHostAddress(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? [])
      if (a.family === "IPv4" && !a.internal && !a.address.startsWith("10.213.")) return a.address;
  }
  return "127.0.0.1";
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone already
  }
}

function fileError(path: string, stderr: string, maxBytes: number): AppError {
  const code = stderr.split(":")[0]?.trim();
  if (code === "ENOENT" || code === "ENOTDIR") {
    return new AppError("NOT_FOUND", `file ${path} not found in the sandbox`, {
      reason: "FILE_NOT_FOUND",
      metadata: { path },
    });
  }
  if (code === "EFBIG") {
    return new AppError("INVALID_ARGUMENT", `file ${path} is larger than ${maxBytes} bytes`, {
      reason: "FILE_TOO_LARGE",
      metadata: { path },
    });
  }
  if (code === "EISDIR")
    return new AppError("INVALID_ARGUMENT", `${path} is a directory`, {
      reason: "IS_A_DIRECTORY",
      metadata: { path },
    });
  if (code === "EACCES" || code === "EROFS") {
    return new AppError("PERMISSION_DENIED", `${path}: ${stderr.trim()}`, {
      reason: "FILE_PERMISSION_DENIED",
      metadata: { path },
    });
  }
  return new AppError("INTERNAL", `file ${path}: ${stderr.trim() || "the file helper failed"}`, {
    reason: "FILE_IO",
  });
}

/** Creates the root and this instance's directory, searchable but not listable by others. */
function makeSearchable(root: string, instanceDir: string): void {
  mkdirSync(join(instanceDir, "sandboxes"), { recursive: true, mode: 0o711 });
  for (const dir of [root, instanceDir, join(instanceDir, "sandboxes")]) chmodSync(dir, 0o711);
}

function findExecutable(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(":")) {
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function newShellName(): string {
  return `${WARM_SHELL_PREFIX}${randomBytes(6).toString("hex")}`;
}
