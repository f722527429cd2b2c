import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, KubeConfig, type V1Pod, Watch } from "@kubernetes/client-node";
import { PaddockClient } from "../client/client.js";
import { serveConfig } from "../config.js";
import { startServer } from "../server.js";
import { BUSYBOX_IMAGE, type Cluster, startCluster } from "../testing/k8s-cluster.js";
import { type Figure, figure } from "./stats.js";

/**
 * Kubernetes start → objects applied, next to a bare pod create, against the
 * same real kube-apiserver (src/testing/k8s-cluster.ts) in the same run.
 * Both are timed by one observer: from the call until a pod watch sees the
 * pod ADDED (Paddock applies the pod last, after its policies).
 */
export async function kubernetesFigures(runs: number): Promise<Figure[]> {
  const cluster = await startCluster();
  try {
    return await measure(cluster, runs);
  } finally {
    // The cluster leaves mounts, links and cgroups on the host: stop it whatever failed.
    await cluster.stop();
  }
}

async function measure(cluster: Cluster, runs: number): Promise<Figure[]> {
  const dataDir = mkdtempSync(join(tmpdir(), "paddock-bench-k8s-"));
  const server = await startServer(
    serveConfig(
      { listen: "127.0.0.1:0", dataDir, kubeconfig: cluster.kubeconfigPath },
      { ...process.env, PADDOCK_LOG_LEVEL: "warn", PADDOCK_BOOTSTRAP_TOKEN: "pdk_bench" },
    ),
  );
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  const core = kc.makeApiClient(CoreV1Api);
  // When each pod was first seen, and who waits for which.
  const seenAt = new Map<string, number>();
  const waiting = new Map<string, (at: number) => void>();
  const watch = await new Watch(kc).watch(
    "/api/v1/pods",
    {},
    (phase: string, pod: V1Pod) => {
      if (phase !== "ADDED") return;
      const labels = pod.metadata?.labels ?? {};
      const key = labels["paddock.dev/sandbox-id"] ?? labels.bench ?? "";
      const at = performance.now();
      seenAt.set(key, at);
      waiting.get(key)?.(at);
    },
    () => undefined,
  );
  const added = (key: string) =>
    new Promise<number>((resolve, reject) => {
      const at = seenAt.get(key);
      if (at !== undefined) return resolve(at);
      const timer = setTimeout(() => reject(new Error(`${key}: no pod within 30 s`)), 30_000);
      waiting.set(key, (when) => {
        clearTimeout(timer);
        waiting.delete(key);
        resolve(when);
      });
    });

  const client = new PaddockClient(server.url, "pdk_bench");
  await client.patch("/v1beta2/sandbox/runners/local", {
    runner: { zoneDefaults: { containerImage: BUSYBOX_IMAGE } },
  });
  let bareCount = 0;
  const bare = async (): Promise<number> => {
    const name = `bare-${++bareCount}`;
    const t0 = performance.now();
    await core.createNamespacedPod({
      namespace: "default",
      body: {
        metadata: { name, labels: { bench: name } },
        spec: { containers: [{ name: "main", image: BUSYBOX_IMAGE }] },
      },
    });
    return (await added(name)) - t0;
  };
  const paddock = async (): Promise<number> => {
    const t0 = performance.now();
    const { sandboxId } = await client.post<{ sandboxId: string }>("/v1beta2/sandboxes", {});
    return (await added(sandboxId)) - t0;
  };
  try {
    // Warm up both paths (connections, the namespace, caches).
    for (let i = 0; i < 5; i++) {
      await bare();
      await paddock();
    }
    const bareSamples: number[] = [];
    const paddockSamples: number[] = [];
    for (let i = 0; i < runs; i++) {
      bareSamples.push(await bare());
      paddockSamples.push(await paddock());
    }
    const bareFigure = figure("kubernetes: bare pod create (client-node) → pod seen", bareSamples);
    const figures = [
      bareFigure,
      figure("kubernetes: sandbox start → objects applied", paddockSamples, bareFigure),
    ];
    const burst = async (one: () => Promise<number>): Promise<number[]> => {
      const t0 = performance.now();
      await Promise.all(Array.from({ length: 100 }, one));
      return [performance.now() - t0];
    };
    const bareBurst = figure(
      "kubernetes: 100 concurrent bare pod creates, all seen",
      await burst(bare),
    );
    figures.push(
      bareBurst,
      figure(
        "kubernetes: 100 concurrent sandbox starts, all applied",
        await burst(paddock),
        bareBurst,
      ),
    );
    return figures;
  } finally {
    watch.abort();
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
