import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer as createHttpServer, request as httpRequest, type Server } from "node:http";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A real Kubernetes 1.20 cluster for tests, on this machine, from Debian
 * packages and binaries built by scripts/k8s-build.sh (see
 * shared/notes/kubernetes-testing.md for the recipe).
 *
 * startCluster() starts etcd, kube-apiserver and kube-controller-manager on
 * 127.0.0.1 and free ports, in a private temp directory; with `node: true`
 * also kube-scheduler, containerd and a kubelet, so pods really run (exec and
 * logs through the API work). Never skips: missing binaries make it throw,
 * naming the build script.
 *
 * Isolation from the host, with `node: true`:
 * - containerd, its shims and the kubelet run in one private mount namespace
 *   in which /run, /var/lib and /var/log are bind mounts of directories under
 *   the cluster's temp dir: the kubelet's hard-coded /var/log/pods,
 *   /var/log/containers and /var/lib/kubelet/device-plugins, containerd's
 *   /run/containerd, the CNI cache and the pods' network namespaces never
 *   reach the host's directories, and every mount they make vanishes with the
 *   namespace when stop() ends its processes.
 * - pods' cgroups live under /paddock-k8s/<id> in every hierarchy (the
 *   kubelet's --cgroup-root), removed by stop().
 * - the pod network is a bridge of the cluster's own (pk8s<id>) holding the
 *   node IP, a private 10.247.N.0/24; pods get no default route (they reach
 *   the other pods and the node at the bridge's address, nothing else).
 *
 * Global side effects that stop() does not undo: the bridge CNI plugin sets
 * net.ipv4.ip_forward=1 (left as it is: other tests and Paddock's local
 * backend rely on it too). The kernel tunables the kubelet sets
 * (vm.overcommit_memory, kernel.panic, ...) are put back by stop() once no
 * other cluster of this harness runs.
 */

export const BUILD_SCRIPT = "scripts/k8s-build.sh";
/** The version the binaries are built as. */
export const K8S_VERSION = "v1.20.2";
/** Images loaded into the node's containerd (built by the build script; never pulled). */
export const PAUSE_IMAGE = "localhost/paddock/pause:3.4";
export const BUSYBOX_IMAGE = "localhost/paddock/busybox:1.35";
export const NODE_NAME = "paddock-node";

const COMPONENTS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"];
const KUBELET_SYSCTLS = [
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
];
/** One file per running cluster (its owner's pid), to know when the last one stops. */
const LIVE_DIR = "/run/paddock-k8s-harness";
const CGROUP_FS = "/sys/fs/cgroup";
const CGROUP_PARENT = "paddock-k8s";

export interface ClusterOptions {
  /** Also run a node (scheduler, containerd, kubelet) so pods run. Default false. */
  node?: boolean;
}

export interface Cluster {
  /** An admin kubeconfig (bearer token, TLS unverified). */
  kubeconfigPath: string;
  /** https://127.0.0.1:PORT */
  server: string;
  /** Bearer token of `admin` (group system:masters). */
  token: string;
  /** Runs kubectl against this cluster; resolves with stdout, rejects with stderr on failure. */
  kubectl(args: string[], options?: { input?: string; timeoutMs?: number }): Promise<string>;
  /** Stops everything this cluster started and removes its files. Safe to call twice. */
  stop(): Promise<void>;
  /** The cluster's temp directory (logs are in DIR/logs). */
  dir: string;
  /** The API server's audit log: one JSON event per request (level Metadata). */
  auditLogPath: string;
  /** Milliseconds each start phase took. */
  timings: Record<string, number>;
  /** Set when started with `node: true`. */
  node?: {
    name: string;
    /** The node's InternalIP, also the pods' gateway. */
    ip: string;
    podSubnet: string;
    images: { pause: string; busybox: string };
  };
}

/** Where scripts/k8s-build.sh caches the binaries and images. */
export function k8sCacheDir(): string {
  return process.env.PADDOCK_K8S_CACHE ?? join(homedir(), ".cache", "paddock", "k8s-1.20.2");
}

interface Tools {
  bin: Record<string, string>;
  etcd: string;
  kubectl: string;
  containerd: string;
  ctr: string;
  pauseTar: string;
  busyboxTar: string;
}

/** The binaries a cluster needs; throws naming what is missing and the build script. */
export function findTools(node: boolean): Tools {
  const cache = k8sCacheDir();
  const missing: string[] = [];
  const need = (path: string): string => {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      missing.push(path);
    }
    return path;
  };
  const bin: Record<string, string> = {};
  for (const c of COMPONENTS) {
    if (node || (c !== "kubelet" && c !== "kube-scheduler")) bin[c] = need(join(cache, "bin", c));
  }
  const tools: Tools = {
    bin,
    etcd: need("/usr/bin/etcd"),
    kubectl: findKubectl(missing),
    containerd: node ? need("/usr/bin/containerd") : "/usr/bin/containerd",
    ctr: node ? need("/usr/bin/ctr") : "/usr/bin/ctr",
    pauseTar: join(cache, "pause.tar"),
    busyboxTar: join(cache, "busybox.tar"),
  };
  if (node) {
    need("/usr/sbin/runc");
    need("/usr/bin/containerd-shim-runc-v2");
    need("/usr/lib/cni/bridge");
    need("/usr/lib/cni/host-local");
    need("/usr/lib/cni/portmap");
    need("/usr/bin/unshare");
    need("/usr/bin/nsenter");
    for (const tar of [tools.pauseTar, tools.busyboxTar]) if (!existsSync(tar)) missing.push(tar);
  }
  if (missing.length > 0) {
    throw new Error(
      `The Kubernetes test cluster cannot start: missing ${missing.join(", ")}. ` +
        `Build and install them once with: bash ${BUILD_SCRIPT} ` +
        "(as root; a cold build takes several minutes, then it is cached; .ci/run runs it). " +
        `Binaries are looked for in ${join(cache, "bin")} (PADDOCK_K8S_CACHE overrides ${cache}).`,
    );
  }
  return tools;
}

function findKubectl(missing: string[]): string {
  const candidates = [
    process.env.PADDOCK_KUBECTL,
    "/usr/bin/kubectl",
    ...(process.env.PATH ?? "").split(":").map((d) => join(d, "kubectl")),
  ].filter((c): c is string => Boolean(c));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {}
  }
  missing.push("kubectl (set PADDOCK_KUBECTL, or the build script installs kubernetes-client)");
  return "kubectl";
}

/** A started program, its log and how it ended. */
interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<string>;
  /** Set once it has exited: "exit 1", "signal SIGKILL". */
  ended?: string;
}

/** Starts etcd and kube-apiserver (and a node with `node: true`); see the module comment. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const node = options.node ?? false;
  const tools = findTools(node);
  const started = Date.now();
  const timings: Record<string, number> = {};
  const mark = (phase: string) => {
    timings[phase] = Date.now() - started;
  };
  const id = randomBytes(4).toString("hex");
  const dir = mkdtempSync(join(tmpdir(), "paddock-k8s-"));
  const logs = join(dir, "logs");
  mkdirSync(logs);
  const procs: Proc[] = [];
  const cleanup = new Cleanup(id, dir, procs);
  // If the test process ends without stop(), do not leave a cluster behind.
  const onExit = () => cleanup.runSync();
  process.once("exit", onExit);

  try {
    const token = randomBytes(24).toString("hex");
    writeFileSync(
      join(dir, "audit-policy.yaml"),
      "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n",
    );
    writeFileSync(join(dir, "tokens.csv"), `${token},admin,admin,system:masters\n`, {
      mode: 0o600,
    });
    const { privateKey, publicKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      privateKeyEncoding: { type: "pkcs1", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    });
    writeFileSync(join(dir, "sa.key"), privateKey, { mode: 0o600 });
    writeFileSync(join(dir, "sa.pub"), publicKey);

    const ports = await freePorts(7);
    const [etcdPort, peerPort, apiPort, kcmPort, schedPort, kubeletPort, healthzPort] = ports as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const server = `https://127.0.0.1:${apiPort}`;
    const kubeconfigPath = join(dir, "admin.kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfig(server, token), { mode: 0o600 });

    // Node pieces that do not need the API server start alongside it.
    let nodeNet: NodeNet | undefined;
    let containerdReady: Promise<void> | undefined;
    if (node) {
      nodeNet = setUpNodeNetwork(id, dir, cleanup);
      containerdReady = startContainerd(tools, dir, nodeNet, procs, cleanup).then(() =>
        mark("containerd ready"),
      );
      // Keep a failure here from being unhandled while we wait for the API server.
      containerdReady.catch(() => {});
    }

    await checkPortsFree([etcdPort, peerPort], "etcd");
    const etcd = spawnProc(procs, logs, "etcd", tools.etcd, [
      "--name=paddock",
      `--data-dir=${join(dir, "etcd")}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=paddock=http://127.0.0.1:${peerPort}`,
      "--unsafe-no-fsync=true",
      "--log-level=warn",
      "--logger=zap",
    ]);
    await waitFor("etcd to answer", 20_000, [etcd], async () => {
      const r = await httpGet(`http://127.0.0.1:${etcdPort}/health`);
      return r.status === 200;
    });
    mark("etcd ready");

    await checkPortsFree([apiPort], "kube-apiserver");
    const apiserver = spawnProc(procs, logs, "kube-apiserver", tools.bin["kube-apiserver"], [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${apiPort}`,
      "--insecure-port=0",
      `--cert-dir=${join(dir, "certs", "apiserver")}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--authorization-mode=RBAC",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${join(dir, "sa.pub")}`,
      `--service-account-signing-key-file=${join(dir, "sa.key")}`,
      "--service-cluster-ip-range=10.96.0.0/16",
      "--disable-admission-plugins=ServiceAccount",
      "--endpoint-reconciler-type=none",
      "--allow-privileged=true",
      "--kubelet-preferred-address-types=InternalIP,Hostname",
      "--profiling=false",
      // Tests read who did what (e.g. which verbs the runner's RBAC really needs).
      `--audit-policy-file=${join(dir, "audit-policy.yaml")}`,
      `--audit-log-path=${join(dir, "audit.log")}`,
      "--audit-log-format=json",
    ]);
    await waitFor("kube-apiserver /readyz", 60_000, [etcd, apiserver], async () => {
      const r = await httpsGet(`${server}/readyz`, token);
      return r.status === 200 && r.body.trim() === "ok";
    });
    mark("apiserver ready");

    const controllers = ["namespace", "garbagecollector", "serviceaccount-token", "serviceaccount"];
    if (node) controllers.push("nodelifecycle");
    await checkPortsFree([kcmPort], "kube-controller-manager");
    const kcm = spawnProc(
      procs,
      logs,
      "kube-controller-manager",
      tools.bin["kube-controller-manager"],
      [
        `--kubeconfig=${kubeconfigPath}`,
        `--authentication-kubeconfig=${kubeconfigPath}`,
        `--authorization-kubeconfig=${kubeconfigPath}`,
        "--authentication-skip-lookup=true",
        "--bind-address=127.0.0.1",
        `--secure-port=${kcmPort}`,
        "--port=0",
        `--cert-dir=${join(dir, "certs", "kcm")}`,
        "--leader-elect=false",
        `--controllers=${controllers.join(",")}`,
        `--service-account-private-key-file=${join(dir, "sa.key")}`,
        "--use-service-account-credentials=false",
        "--profiling=false",
      ],
    );
    const waits: Promise<void>[] = [
      waitFor("kube-controller-manager /healthz", 30_000, [kcm], async () => {
        const r = await httpsGet(`https://127.0.0.1:${kcmPort}/healthz`);
        return r.status === 200;
      }).then(() => mark("controller-manager ready")),
    ];

    let nodeInfo: Cluster["node"];
    if (node && nodeNet && containerdReady) {
      await checkPortsFree([schedPort], "kube-scheduler");
      const scheduler = spawnProc(procs, logs, "kube-scheduler", tools.bin["kube-scheduler"], [
        `--kubeconfig=${kubeconfigPath}`,
        `--authentication-kubeconfig=${kubeconfigPath}`,
        `--authorization-kubeconfig=${kubeconfigPath}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${schedPort}`,
        "--port=0",
        `--cert-dir=${join(dir, "certs", "scheduler")}`,
        "--leader-elect=false",
        "--profiling=false",
      ]);
      waits.push(
        waitFor("kube-scheduler /healthz", 30_000, [scheduler], async () => {
          const r = await httpsGet(`https://127.0.0.1:${schedPort}/healthz`);
          return r.status === 200;
        }).then(() => mark("scheduler ready")),
      );
      await containerdReady;
      await importImages(tools, nodeNet.containerdSock, [tools.pauseTar, tools.busyboxTar]);
      mark("images imported");
      await checkPortsFree([kubeletPort, healthzPort], "kubelet");
      const kubelet = await startKubelet(tools, dir, nodeNet, kubeconfigPath, procs, cleanup, {
        port: kubeletPort,
        healthzPort,
      });
      await waitFor(`node ${NODE_NAME} to be Ready`, 90_000, [kubelet, ...procs], async () =>
        nodeReady(server, token),
      );
      mark("node ready");
      await removeNotReadyTaint(server, token);
      nodeInfo = {
        name: NODE_NAME,
        ip: nodeNet.nodeIp,
        podSubnet: nodeNet.subnet,
        images: { pause: PAUSE_IMAGE, busybox: BUSYBOX_IMAGE },
      };
    }
    await Promise.all(waits);
    mark("started");

    const kubectl = (args: string[], opts: { input?: string; timeoutMs?: number } = {}) =>
      runKubectl(tools.kubectl, dir, kubeconfigPath, args, opts);
    let stopped = false;
    return {
      kubeconfigPath,
      auditLogPath: join(dir, "audit.log"),
      server,
      token,
      dir,
      timings,
      ...(nodeInfo ? { node: nodeInfo } : {}),
      kubectl,
      async stop() {
        if (stopped) return;
        stopped = true;
        process.removeListener("exit", onExit);
        await cleanup.run();
      },
    };
  } catch (error) {
    process.removeListener("exit", onExit);
    const detail = procs.map((p) => describeProc(p)).join("");
    await cleanup.run().catch(() => {});
    if (error instanceof Error) {
      error.message += detail;
      throw error;
    }
    throw new Error(`${String(error)}${detail}`);
  }
}

/** A kubeconfig for `server` with a bearer token (TLS unverified). */
export function kubeconfig(server: string, token: string): string {
  return `${JSON.stringify(
    {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "paddock-test", cluster: { server, "insecure-skip-tls-verify": true } }],
      users: [{ name: "admin", user: { token } }],
      contexts: [{ name: "paddock-test", context: { cluster: "paddock-test", user: "admin" } }],
      "current-context": "paddock-test",
    },
    null,
    2,
  )}\n`;
}

// ---------------------------------------------------------------- node

interface NodeNet {
  bridge: string;
  /** e.g. 10.247.17.0/24 */
  subnet: string;
  /** e.g. 10.247.17.1: on the bridge; the node's IP and the pods' gateway. */
  nodeIp: string;
  containerdSock: string;
  /** pid of containerd, whose mount namespace the kubelet joins. */
  containerdPid?: number;
}

/** The pod bridge with the node IP on it (CNI's bridge plugin reuses it as gateway). */
function setUpNodeNetwork(id: string, dir: string, cleanup: Cleanup): NodeNet {
  const used = new Set<number>();
  const addrs = execFileSync("ip", ["-o", "-4", "addr", "show"], { encoding: "utf8" });
  for (const m of addrs.matchAll(/inet 10\.247\.(\d+)\./g)) used.add(Number(m[1]));
  const free = [...Array(250).keys()].map((i) => i + 2).filter((n) => !used.has(n));
  const n = free[Math.floor(Math.random() * free.length)];
  if (n === undefined) throw new Error("no free 10.247.N.0/24 for the test cluster's pods");
  const bridge = `pk8s${id}`;
  const nodeIp = `10.247.${n}.1`;
  const subnet = `10.247.${n}.0/24`;
  execFileSync("ip", ["link", "add", bridge, "type", "bridge"]);
  cleanup.bridge = bridge;
  execFileSync("ip", ["addr", "add", `${nodeIp}/24`, "dev", bridge]);
  execFileSync("ip", ["link", "set", bridge, "up"]);

  const cniConf = join(dir, "cni", "net.d");
  mkdirSync(cniConf, { recursive: true });
  writeFileSync(
    join(cniConf, "10-paddock.conflist"),
    JSON.stringify(
      {
        cniVersion: "0.4.0",
        name: `paddock-k8s-${id}`,
        plugins: [
          {
            type: "bridge",
            bridge,
            isGateway: true,
            ipMasq: false,
            hairpinMode: true,
            ipam: {
              type: "host-local",
              ranges: [[{ subnet, gateway: nodeIp }]],
              dataDir: join(dir, "cni", "ipam"),
            },
          },
          { type: "portmap", capabilities: { portMappings: true } },
        ],
      },
      null,
      2,
    ),
  );
  return { bridge, subnet, nodeIp, containerdSock: join(dir, "containerd", "containerd.sock") };
}

async function startContainerd(
  tools: Tools,
  dir: string,
  net: NodeNet,
  procs: Proc[],
  cleanup: Cleanup,
): Promise<void> {
  const root = join(dir, "containerd");
  mkdirSync(root, { recursive: true });
  const config = `version = 2
root = "${join(root, "root")}"
state = "${join(root, "state")}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "${net.containerdSock}"

[ttrpc]
  address = "${net.containerdSock}.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "${join(root, "opt")}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  max_concurrent_downloads = 1

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${join(dir, "cni", "net.d")}"
    max_conf_num = 1
`;
  writeFileSync(join(root, "config.toml"), config);

  // A private mount namespace: /run, /var/lib and /var/log are the cluster's
  // own there (see the module comment). unshare and sh exec, so the pid is
  // containerd's; the kubelet joins this namespace with nsenter.
  const binds: [string, string][] = [
    [join(dir, "host", "run"), "/run"],
    [join(dir, "host", "var-lib"), "/var/lib"],
    [join(dir, "host", "var-log"), "/var/log"],
  ];
  for (const [src] of binds) mkdirSync(src, { recursive: true });
  const script = [
    "set -e",
    ...binds.map(([src, dst]) => `mount --bind ${shq(src)} ${dst}`),
    'exec "$@"',
  ].join("\n");
  const proc = spawnProc(procs, join(dir, "logs"), "containerd", "/usr/bin/unshare", [
    "--mount",
    "--propagation",
    "private",
    "--",
    "/bin/sh",
    "-c",
    script,
    "containerd",
    tools.containerd,
    "--config",
    join(root, "config.toml"),
  ]);
  if (proc.child.pid !== undefined) net.containerdPid = proc.child.pid;
  cleanup.containerdSock = net.containerdSock;
  await waitFor("containerd to answer", 30_000, [proc], async () => {
    if (!existsSync(net.containerdSock)) return false;
    try {
      await run(tools.ctr, ["--address", net.containerdSock, "version"], 5_000);
      return true;
    } catch {
      return false;
    }
  });
}

async function importImages(tools: Tools, sock: string, tars: string[]): Promise<void> {
  for (const tar of tars) {
    await run(tools.ctr, ["--address", sock, "-n", "k8s.io", "images", "import", tar], 60_000);
  }
}

async function startKubelet(
  tools: Tools,
  dir: string,
  net: NodeNet,
  kubeconfigPath: string,
  procs: Proc[],
  cleanup: Cleanup,
  ports: { port: number; healthzPort: number },
): Promise<Proc> {
  // The kubelet's cAdvisor asks a Docker daemon for its root dir five times,
  // a second apart, before it goes on: a socket at /run/docker.sock (in the
  // kubelet's mount namespace) that answers at once saves those 5 s.
  cleanup.servers.push(await fakeDockerDaemon(join(dir, "host", "run", "docker.sock")));
  const kubeletDir = join(dir, "kubelet");
  mkdirSync(join(kubeletDir, "volume-plugins"), { recursive: true });
  writeFileSync(join(dir, "resolv.conf"), "# paddock test cluster: no DNS for pods\n");
  const cgroupRoot = cleanup.makeCgroupRoot();
  cleanup.saveSysctls();
  if (net.containerdPid === undefined) throw new Error("containerd has no pid");
  return spawnProc(procs, join(dir, "logs"), "kubelet", "/usr/bin/nsenter", [
    `--mount=/proc/${net.containerdPid}/ns/mnt`,
    "--",
    tools.bin.kubelet ?? "kubelet",
    `--kubeconfig=${kubeconfigPath}`,
    `--hostname-override=${NODE_NAME}`,
    `--node-ip=${net.nodeIp}`,
    `--address=${net.nodeIp}`,
    `--port=${ports.port}`,
    "--healthz-bind-address=127.0.0.1",
    `--healthz-port=${ports.healthzPort}`,
    "--read-only-port=0",
    "--container-runtime=remote",
    `--container-runtime-endpoint=unix://${net.containerdSock}`,
    "--runtime-request-timeout=2m",
    `--pod-infra-container-image=${PAUSE_IMAGE}`,
    "--cgroup-driver=cgroupfs",
    `--cgroup-root=${cgroupRoot}`,
    "--fail-swap-on=false",
    `--root-dir=${kubeletDir}`,
    `--cert-dir=${join(kubeletDir, "pki")}`,
    `--volume-plugin-dir=${join(kubeletDir, "volume-plugins")}`,
    `--resolv-conf=${join(dir, "resolv.conf")}`,
    "--make-iptables-util-chains=false",
    "--anonymous-auth=true",
    "--authorization-mode=AlwaysAllow",
    "--image-gc-high-threshold=100",
    "--image-gc-low-threshold=99",
    "--eviction-hard=",
    "--oom-score-adj=0",
    "--serialize-image-pulls=false",
    "--node-status-update-frequency=2s",
    "--sync-frequency=10s",
    // cAdvisor's view of the containers: this containerd, not /run/containerd's.
    `--containerd=${net.containerdSock}`,
    "--v=1",
  ]);
}

/** Answers /info (a root dir, no storage driver, so cAdvisor does not use it) and little else. */
function fakeDockerDaemon(socket: string): Promise<Server> {
  const server = createHttpServer((req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    res.setHeader("Content-Type", "application/json");
    if (path.endsWith("/info")) {
      res.end(JSON.stringify({ ID: "paddock", Name: NODE_NAME, DockerRootDir: "/var/lib/docker" }));
    } else if (path.endsWith("/_ping")) {
      res.end("OK");
    } else {
      res.statusCode = 404;
      res.end(JSON.stringify({ message: "not a Docker daemon (paddock test cluster)" }));
    }
  });
  server.unref();
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(socket, () => resolve(server));
  });
}

async function nodeReady(server: string, token: string): Promise<boolean> {
  const r = await httpsGet(`${server}/api/v1/nodes/${NODE_NAME}`, token);
  if (r.status !== 200) return false;
  const nodeObj = JSON.parse(r.body) as {
    status?: { conditions?: { type: string; status: string }[] };
  };
  return (nodeObj.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

async function removeNotReadyTaint(server: string, token: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const r = await httpsGet(`${server}/api/v1/nodes/${NODE_NAME}`, token);
    const nodeObj = JSON.parse(r.body) as {
      metadata: { resourceVersion: string };
      spec?: { taints?: { key: string }[] };
    };
    const taints = nodeObj.spec?.taints ?? [];
    const kept = taints.filter((t) => t.key !== "node.kubernetes.io/not-ready");
    if (kept.length === taints.length) return;
    const patch = {
      metadata: { resourceVersion: nodeObj.metadata.resourceVersion },
      spec: { taints: kept.length > 0 ? kept : null },
    };
    const p = await httpsRequestJson(
      "PATCH",
      `${server}/api/v1/nodes/${NODE_NAME}`,
      token,
      JSON.stringify(patch),
      "application/merge-patch+json",
    );
    if (p.status === 200) return;
    if (p.status !== 409) throw new Error(`removing the not-ready taint: ${p.status} ${p.body}`);
  }
}

// ---------------------------------------------------------------- cleanup

class Cleanup {
  bridge?: string;
  servers: Server[] = [];
  containerdSock?: string;
  private cgroupDirs: string[] = [];
  private sysctls?: Map<string, string>;
  private liveFile?: string;
  private done = false;

  constructor(
    private readonly id: string,
    private readonly dir: string,
    private readonly procs: Proc[],
  ) {}

  /** /paddock-k8s/<id> in every cgroup hierarchy (the kubelet refuses a root that is missing). */
  makeCgroupRoot(): string {
    const rel = join(CGROUP_PARENT, this.id);
    for (const h of cgroupHierarchies()) {
      const parent = join(h, CGROUP_PARENT);
      const own = join(h, rel);
      for (const d of [parent, own]) {
        if (!existsSync(d)) mkdirSync(d);
        if (h.endsWith("/cpuset")) {
          // A new cpuset cgroup starts empty: give it its parent's cpus and mems.
          for (const f of ["cpuset.cpus", "cpuset.mems"]) {
            const cur = readOr(join(d, f)).trim();
            if (!cur) writeFileSync(join(d, f), readOr(join(d, "..", f)).trim());
          }
        }
        if (existsSync(join(h, "cgroup.controllers")) && d === parent) {
          enableV2Controllers(h, parent);
        }
      }
      this.cgroupDirs.push(own);
    }
    return `/${rel}`;
  }

  /** Remembers the kernel tunables the kubelet changes, to put them back. */
  saveSysctls(): void {
    this.sysctls = new Map(KUBELET_SYSCTLS.map((s) => [s, readOr(`/proc/sys/${s}`).trim()]));
    try {
      mkdirSync(LIVE_DIR, { recursive: true });
      this.liveFile = join(LIVE_DIR, `${this.id}.pid`);
      // The first cluster's values are the host's: keep them for the last one to restore.
      const hostValues = join(LIVE_DIR, "sysctls.json");
      if (!existsSync(hostValues) || otherLiveClusters(this.id).length === 0) {
        writeFileSync(hostValues, JSON.stringify(Object.fromEntries(this.sysctls)));
      }
      writeFileSync(this.liveFile, String(process.pid));
    } catch {}
  }

  /** Stops everything; throws, once all is done, if something could not be removed. */
  async run(): Promise<void> {
    if (this.done) return;
    this.done = true;
    for (const server of this.servers.splice(0)) server.close();
    for (const name of ["kubelet", "kube-scheduler", "kube-controller-manager"]) {
      await stopProcs(this.procs.filter((p) => p.name === name));
    }
    await this.stopRuntime();
    await stopProcs(this.procs.filter((p) => p.name === "kube-apiserver"));
    await stopProcs(this.procs);
    const problems = this.procs
      .filter((p) => p.ended === undefined)
      .map((p) => `${p.name} (pid ${p.child.pid}) still runs`);
    problems.push(...this.finish());
    if (problems.length > 0) {
      throw new Error(
        `the test cluster in ${this.dir} was not fully cleaned up: ${problems.join("; ")}`,
      );
    }
  }

  /** The same, synchronously and bluntly, for process exit. */
  runSync(): void {
    if (this.done) return;
    this.done = true;
    for (const server of this.servers.splice(0)) server.close();
    for (const p of this.procs) killQuietly(p.child.pid, "SIGKILL");
    for (const pid of this.shimPids()) killQuietly(pid, "SIGKILL");
    this.killCgroupProcs();
    this.finish();
  }

  private async stopRuntime(): Promise<void> {
    const containerd = this.procs.filter((p) => p.name === "containerd");
    if (containerd.length === 0) return;
    // Containers first (they would outlive containerd), then containerd and its shims.
    for (let i = 0; i < 20 && this.killCgroupProcs() > 0; i++) await sleep(50);
    const shims = this.shimPids();
    await stopProcs(containerd);
    for (const pid of shims) killQuietly(pid, "SIGKILL");
    for (let i = 0; i < 40 && shims.some((pid) => alive(pid)); i++) await sleep(50);
    for (let i = 0; i < 20 && this.killCgroupProcs() > 0; i++) await sleep(50);
  }

  /** containerd-shim processes serving this cluster's containerd. */
  private shimPids(): number[] {
    if (!this.containerdSock) return [];
    const out: number[] = [];
    for (const name of safeReaddir("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      const args = readOr(`/proc/${name}/cmdline`).split("\0");
      if (!args[0]?.includes("containerd-shim")) continue;
      const i = args.indexOf("-address");
      if (i >= 0 && args[i + 1] === this.containerdSock) out.push(Number(name));
    }
    return out;
  }

  /** SIGKILLs every process in the cluster's cgroups; answers how many were there. */
  private killCgroupProcs(): number {
    let n = 0;
    for (const base of this.cgroupDirs) {
      for (const d of walkDirs(base)) {
        for (const line of readOr(join(d, "cgroup.procs")).split("\n")) {
          const pid = Number(line);
          if (line && pid > 0 && pid !== process.pid) {
            killQuietly(pid, "SIGKILL");
            n++;
          }
        }
      }
    }
    return n;
  }

  /** Removes cgroups, network links, files; restores sysctls. Answers what it could not do. */
  private finish(): string[] {
    const problems: string[] = [];
    const attempt = (what: string, fn: () => void) => {
      try {
        fn();
      } catch (e) {
        problems.push(`${what}: ${(e as Error).message}`);
      }
    };
    // Cgroups, deepest first (a cgroup with no process in it can be removed).
    for (const base of this.cgroupDirs) {
      for (const d of walkDirs(base).reverse()) {
        attempt(`removing cgroup ${d}`, () => retrySync(() => rmdirSync(d), ["ENOENT"]));
      }
      try {
        rmdirSync(join(base, "..")); // /paddock-k8s, once no other cluster uses it
      } catch {}
    }
    // The pods' host-side veths (their namespaces die with the mount namespace), then the bridge.
    const bridge = this.bridge;
    if (bridge) {
      attempt(`removing bridge ${bridge}`, () => {
        const links = execFileSync("ip", ["-o", "link", "show", "master", bridge], {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "ignore"],
        });
        for (const m of links.matchAll(/^\d+: ([^:@\s]+)/gm)) {
          if (m[1]) ipQuietly(["link", "del", m[1]]);
        }
        ipQuietly(["link", "del", bridge]);
        if (existsSync(`/sys/class/net/${bridge}`)) throw new Error("still there");
      });
    }
    // Mounts left in the host's namespace under our dir (none expected: they live in the private one).
    for (const target of mountsUnder(this.dir).reverse()) {
      attempt(`unmounting ${target}`, () => execFileSync("umount", ["-l", target]));
    }
    attempt(`removing ${this.dir}`, () =>
      retrySync(() => rmSync(this.dir, { recursive: true, force: true }), []),
    );
    // Kernel tunables the kubelet set: back to the host's values when the last cluster stops.
    if (this.liveFile) {
      rmSync(this.liveFile, { force: true });
      if (otherLiveClusters(this.id).length === 0) {
        attempt("restoring the kernel tunables the kubelet set", () => {
          const hostValues = join(LIVE_DIR, "sysctls.json");
          if (!existsSync(hostValues)) return;
          const values = JSON.parse(readFileSync(hostValues, "utf8")) as Record<string, string>;
          for (const [name, value] of Object.entries(values)) {
            if (value && readOr(`/proc/sys/${name}`).trim() !== value) {
              writeFileSync(`/proc/sys/${name}`, value);
            }
          }
          rmSync(LIVE_DIR, { recursive: true, force: true });
        });
      }
    }
    return problems;
  }
}

/** Runs fn until it does not throw (or throws an error with one of the codes that mean done); 2 s at most. */
function retrySync(fn: () => void, doneCodes: string[]): void {
  for (let i = 0; ; i++) {
    try {
      fn();
      return;
    } catch (e) {
      if (doneCodes.includes((e as NodeJS.ErrnoException).code ?? "")) return;
      if (i >= 40) throw e;
      execFileSync("sleep", ["0.05"]);
    }
  }
}

function otherLiveClusters(id: string): string[] {
  return safeReaddir(LIVE_DIR).filter((f) => {
    if (!f.endsWith(".pid") || f === `${id}.pid`) return false;
    const pid = Number(readOr(join(LIVE_DIR, f)).trim());
    return pid > 0 && alive(pid);
  });
}

/** Every cgroup hierarchy mounted here: v1 controller directories and the v2 root or unified mount. */
function cgroupHierarchies(): string[] {
  const out: string[] = [];
  if (existsSync(join(CGROUP_FS, "cgroup.procs"))) return [CGROUP_FS];
  for (const name of safeReaddir(CGROUP_FS)) {
    const d = join(CGROUP_FS, name);
    if (existsSync(join(d, "cgroup.procs"))) out.push(d);
  }
  return out;
}

function enableV2Controllers(root: string, parent: string): void {
  const wanted = readOr(join(root, "cgroup.controllers")).trim().split(/\s+/).filter(Boolean);
  for (const [d, controllers] of [
    [root, wanted],
    [parent, wanted],
  ] as const) {
    for (const c of controllers) {
      try {
        writeFileSync(join(d, "cgroup.subtree_control"), `+${c}`);
      } catch {}
    }
  }
}

function walkDirs(dir: string): string[] {
  const out: string[] = [];
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) out.push(...walkDirs(join(dir, e.name)));
    }
  } catch {
    return out;
  }
  return [dir, ...out];
}

function mountsUnder(dir: string): string[] {
  return readOr("/proc/self/mountinfo")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

// ---------------------------------------------------------------- processes

function spawnProc(
  procs: Proc[],
  logs: string,
  name: string,
  program: string | undefined,
  args: string[],
): Proc {
  if (!program) throw new Error(`no binary for ${name}`);
  const log = join(logs, `${name}.log`);
  const fd = openSync(log, "a");
  const child = spawn(program, args, {
    cwd: logs,
    env: {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: logs,
      LANG: "C",
      // No cloud metadata lookups (the kubelet's AWS credential provider
      // otherwise dials 169.254.169.254 at start).
      AWS_EC2_METADATA_DISABLED: "true",
    },
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  const proc: Proc = {
    name,
    child,
    log,
    exited: new Promise<string>((resolve) => {
      child.once("error", (e) => {
        proc.ended = `failed to start: ${e.message}`;
        resolve(proc.ended);
      });
      child.once("exit", (code, signal) => {
        proc.ended = signal ? `signal ${signal}` : `exit ${code}`;
        resolve(proc.ended);
      });
    }),
  };
  procs.push(proc);
  return proc;
}

async function stopProcs(procs: Proc[]): Promise<void> {
  const running = procs.filter((p) => p.ended === undefined);
  for (const p of running) killQuietly(p.child.pid, "SIGTERM");
  const deadline = Date.now() + 5_000;
  for (const p of running) {
    const left = deadline - Date.now();
    const done = await Promise.race([
      p.exited.then(() => true),
      sleep(Math.max(0, left)).then(() => false),
    ]);
    if (!done) {
      killQuietly(p.child.pid, "SIGKILL");
      await Promise.race([p.exited, sleep(2_000)]);
    }
  }
}

function describeProc(p: Proc): string {
  const text = readOr(p.log);
  const lines = text.trimEnd().split("\n").slice(-25).join("\n");
  const busy = /address already in use|bind: .*in use/i.test(text)
    ? " (a port it needs is busy: another process took it; run the test again)"
    : "";
  return `\n--- ${p.name}${p.ended ? ` (${p.ended})` : " (running)"}${busy}, last lines of ${p.log}:\n${lines}`;
}

/** Polls `check` until it is true; fails early if one of `watch` exits, and on timeout. */
async function waitFor(
  what: string,
  timeoutMs: number,
  watch: Proc[],
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
    const dead = watch.find((p) => p.ended !== undefined);
    if (dead) throw new Error(`waiting for ${what}: ${dead.name} stopped (${dead.ended})`);
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const why = lastError ? ` (last error: ${String(lastError)})` : "";
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${why}`);
    }
    await sleep(delay);
  }
}

function run(program: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      program,
      args,
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${program} ${args.join(" ")}: ${error.message}\n${stderr}`));
        } else resolve(stdout);
      },
    );
  });
}

function runKubectl(
  kubectl: string,
  dir: string,
  kubeconfigPath: string,
  args: string[],
  options: { input?: string; timeoutMs?: number },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      kubectl,
      [`--kubeconfig=${kubeconfigPath}`, `--cache-dir=${join(dir, "kubectl-cache")}`, ...args],
      {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: join(dir, "kubectl-home"),
          LANG: "C",
        },
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else
        reject(
          new Error(
            `kubectl ${args.join(" ")} failed (${signal ?? `exit ${code}`}):\n${stderr}${stdout}`,
          ),
        );
    });
    child.stdin.end(options.input ?? "");
  });
}

// ---------------------------------------------------------------- small helpers

interface HttpAnswer {
  status: number;
  body: string;
}

function httpGet(url: string): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: 2_000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

function httpsGet(url: string, token?: string): Promise<HttpAnswer> {
  return httpsRequestJson("GET", url, token);
}

function httpsRequestJson(
  method: string,
  url: string,
  token?: string,
  body?: string,
  contentType = "application/json",
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = contentType;
    const req = httpsRequest(
      url,
      { method, headers, rejectUnauthorized: false, timeout: 5_000 },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => {
          text += c.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(body);
  });
}

function freePorts(n: number): Promise<number[]> {
  // Held open together, so the n ports differ.
  const servers = Array.from({ length: n }, () => createServer());
  return Promise.all(
    servers.map(
      (s) =>
        new Promise<number>((resolve, reject) => {
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => {
            const a = s.address();
            resolve(typeof a === "object" && a ? a.port : 0);
          });
        }),
    ),
  ).finally(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));
}

/** Fails with a clear message if one of the ports is taken (between our probe and now). */
async function checkPortsFree(ports: number[], who: string): Promise<void> {
  for (const port of ports) {
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (!free) {
      throw new Error(
        `port ${port} on 127.0.0.1, picked for ${who}, is busy (another process took it); run the test again`,
      );
    }
  }
}

function shq(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

function readOr(path: string, fallback = ""): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return fallback;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readOr(`/proc/${pid}/stat`);
    return stat !== "" && !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

function killQuietly(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(pid, signal);
  } catch {}
}

function ipQuietly(args: string[]): void {
  try {
    execFileSync("ip", args, { stdio: "ignore" });
  } catch {}
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
