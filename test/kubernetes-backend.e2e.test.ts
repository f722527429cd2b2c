import { afterAll } from "vitest";
import { BUSYBOX_IMAGE, type Cluster, startCluster } from "../src/testing/k8s-cluster.js";
import { startTestApp } from "./support/app.js";
import { backendSuite } from "./support/backend-suite.js";

/**
 * The backend suite of the local backend, on the kubernetes backend: the
 * embedded runner places every sandbox as a pod on a real one-node cluster
 * (src/testing/k8s-cluster.ts), exec and logs go through the real API.
 */
let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.stop();
});

backendSuite({
  name: "kubernetes",
  start: async () => {
    cluster = await startCluster({ node: true });
    const app = await startTestApp(
      { kind: "memory" },
      { localRunner: true, kubeconfig: cluster.kubeconfigPath },
    );
    // The starter profile names no image; a cluster needs one.
    const patched = await app.call("PATCH", "/v1beta2/sandbox/runners/local", {
      runner: { zoneDefaults: { containerImage: BUSYBOX_IMAGE } },
    });
    if (patched.status !== 200) throw new Error(JSON.stringify(patched.body));
    return app;
  },
});
