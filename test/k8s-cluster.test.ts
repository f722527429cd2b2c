import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { request } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BUSYBOX_IMAGE,
  type Cluster,
  K8S_VERSION,
  NODE_NAME,
  startCluster,
} from "../src/testing/k8s-cluster.js";

/**
 * Proves the real Kubernetes test cluster (src/testing/k8s-cluster.ts):
 * these tests fail, naming scripts/k8s-build.sh, when its binaries are not built.
 */

function api(
  cluster: Cluster,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${cluster.server}${path}`,
      {
        method,
        rejectUnauthorized: false,
        headers: {
          Authorization: `Bearer ${cluster.token}`,
          Accept: "application/json",
          "Content-Type": "application/json",
        },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => {
          text += c.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** Pids of processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8");
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      if (cmdline.includes(text) && !/\) Z /.test(stat)) out.push(Number(name));
    } catch {}
  }
  return out;
}

async function waitUntil<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const namespaceAndPod = (ns: string, pod: string, image: string) => `
apiVersion: v1
kind: Namespace
metadata:
  name: ${ns}
---
apiVersion: v1
kind: Pod
metadata:
  name: ${pod}
  namespace: ${ns}
  labels: { app: paddock-test }
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - name: main
      image: ${image}
      imagePullPolicy: Never
      command: ["sh", "-c", "echo hello from busybox; exec sleep 3600"]
`;

describe("Kubernetes test cluster: API server only", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster();
    console.log("k8s cluster (apiserver only) start timings, ms:", cluster.timings);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("answers as Kubernetes 1.20.2, through the API and kubectl", async () => {
    const version = await api(cluster, "GET", "/version");
    expect(version.status).toBe(200);
    expect(version.json.gitVersion).toBe(K8S_VERSION);
    const out = await cluster.kubectl(["get", "--raw", "/readyz"]);
    expect(out.trim()).toBe("ok");
    const kubeconfig = readFileSync(cluster.kubeconfigPath, "utf8");
    expect(kubeconfig).toContain(cluster.server);
  });

  it("applies a Namespace and a Pod server-side; the pod stays Pending (no node)", async () => {
    const out = await cluster.kubectl(
      ["apply", "--server-side", "--field-manager=paddock-test", "-f", "-"],
      { input: namespaceAndPod("ssa", "bb", BUSYBOX_IMAGE) },
    );
    expect(out).toContain("namespace/ssa serverside-applied");
    expect(out).toContain("pod/bb serverside-applied");
    const pod = await api(cluster, "GET", "/api/v1/namespaces/ssa/pods/bb");
    expect(pod.status).toBe(200);
    expect(pod.json.status.phase).toBe("Pending");
    expect(pod.json.spec.nodeName).toBeUndefined();
    const managers = pod.json.metadata.managedFields.map((f: any) => [f.manager, f.operation]);
    expect(managers).toContainEqual(["paddock-test", "Apply"]);
    // The namespace controller runs: the default service account appears.
    await waitUntil("the default ServiceAccount in ssa", 30_000, async () => {
      const sa = await api(cluster, "GET", "/api/v1/namespaces/ssa/serviceaccounts/default");
      return sa.status === 200 ? true : undefined;
    });
  });

  it("answers a bad Pod with a real 422", async () => {
    const bad = await api(cluster, "POST", "/api/v1/namespaces/default/pods", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "Not_A_Valid_Name" },
      spec: { containers: [{ name: "main" }] },
    });
    expect(bad.status).toBe(422);
    expect(bad.json.kind).toBe("Status");
    expect(bad.json.reason).toBe("Invalid");
    const fields = bad.json.details.causes.map((c: any) => c.field);
    expect(fields).toContain("metadata.name");
    expect(fields).toContain("spec.containers[0].image");
  });

  it("stop() ends every process and removes its directory", async () => {
    const dir = cluster.dir;
    expect(processesMentioning(dir).length).toBeGreaterThan(0);
    await cluster.stop();
    expect(processesMentioning(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  });
});

describe("Kubernetes test cluster: with a node", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ node: true });
    console.log("k8s cluster (with node) start timings, ms:", cluster.timings);
  }, 180_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it("runs a busybox pod to Ready; exec and logs work through the API server", async () => {
    const t0 = Date.now();
    await cluster.kubectl(["apply", "--server-side", "-f", "-"], {
      input: namespaceAndPod("run", "bb", BUSYBOX_IMAGE),
    });
    await cluster.kubectl(
      ["wait", "-n", "run", "--for=condition=Ready", "pod/bb", "--timeout=60s"],
      {
        timeoutMs: 70_000,
      },
    );
    const tReady = Date.now();
    const pod = await api(cluster, "GET", "/api/v1/namespaces/run/pods/bb");
    expect(pod.json.spec.nodeName).toBe(NODE_NAME);
    expect(pod.json.status.podIP).toMatch(/^10\.247\.\d+\.\d+$/);
    expect(pod.json.status.hostIP).toBe(cluster.node?.ip);

    const exec = await cluster.kubectl([
      "exec",
      "-n",
      "run",
      "bb",
      "--",
      "sh",
      "-c",
      "echo $((6 * 7)); id -u; hostname",
    ]);
    const tExec = Date.now();
    expect(exec.trim().split("\n")).toEqual(["42", "0", "bb"]);

    const logs = await waitUntil("the pod's log line", 10_000, async () => {
      const out = await cluster.kubectl(["logs", "-n", "run", "bb"]);
      return out.includes("hello from busybox") ? out : undefined;
    });
    expect(logs.trim()).toBe("hello from busybox");
    console.log(
      `pod Ready in ${tReady - t0} ms, exec ${tExec - tReady} ms, logs ${Date.now() - tExec} ms`,
    );
  });

  it("fails to run an image that is not there (never pulled)", async () => {
    await cluster.kubectl(["apply", "--server-side", "-f", "-"], {
      input: namespaceAndPod("run", "missing", "localhost/paddock/not-there:1"),
    });
    const reason = await waitUntil("the pull failure", 60_000, async () => {
      const pod = await api(cluster, "GET", "/api/v1/namespaces/run/pods/missing");
      const waiting = pod.json.status?.containerStatuses?.[0]?.state?.waiting;
      return waiting?.reason && waiting.reason !== "ContainerCreating" ? waiting.reason : undefined;
    });
    expect(["ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull"]).toContain(reason);
  });

  it("stop() ends every process and removes what it made on the host", async () => {
    const dir = cluster.dir;
    const bridge = readFileSync(`${dir}/cni/net.d/10-paddock.conflist`, "utf8").match(
      /"bridge": "([^"]+)"/,
    )?.[1];
    expect(bridge).toBeTruthy();
    expect(processesMentioning(dir).length).toBeGreaterThan(0);
    const before = execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" });
    expect(before).toContain(`${bridge}:`);
    await cluster.stop();
    expect(processesMentioning(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    const after = execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" });
    expect(after).not.toContain(`${bridge}:`);
    expect(after).not.toMatch(new RegExp(`master ${bridge} `));
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(dir);
    const id = bridge?.replace(/^pk8s/, "");
    for (const h of readdirSync("/sys/fs/cgroup")) {
      expect(existsSync(`/sys/fs/cgroup/${h}/paddock-k8s/${id}`)).toBe(false);
    }
  });
});
