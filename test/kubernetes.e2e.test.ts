import type { ChildProcess } from "node:child_process";
import { openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PaddockClient } from "../src/client/client.js";
import {
  BUSYBOX_IMAGE,
  type Cluster,
  kubeconfig,
  startCluster,
} from "../src/testing/k8s-cluster.js";
import {
  runCli,
  type ServerProcess,
  startRunnerAgent,
  startServerProcess,
} from "./support/process.js";
import { seedBindingOverride, seedProfiles, seedRunner } from "./support/seeds.js";

interface SandboxAnswer {
  sandboxId: string;
  sandboxStatus: string;
  statusReason: string;
  namespace: string;
}

type Json = Record<string, any>;

/**
 * Applies deploy/runner.yaml and returns a kubeconfig that acts as its
 * ServiceAccount: the agent under test holds exactly the runner's RBAC.
 */
async function runnerServiceAccountKubeconfig(cluster: Cluster): Promise<string> {
  await cluster.kubectl(["apply", "-f", "deploy/runner.yaml"]);
  for (let i = 0; i < 300; i++) {
    const out = await cluster.kubectl(["get", "secrets", "-n", "paddock-runner", "-o", "json"]);
    const secret = (JSON.parse(out) as { items: Json[] }).items.find(
      (s) =>
        s.type === "kubernetes.io/service-account-token" &&
        s.metadata.annotations?.["kubernetes.io/service-account.name"] === "paddock-runner",
    );
    if (secret?.data?.token) {
      const path = join(cluster.dir, "paddock-runner.kubeconfig");
      const token = Buffer.from(secret.data.token, "base64").toString();
      writeFileSync(path, kubeconfig(cluster.server, token), { mode: 0o600 });
      return path;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no token for ServiceAccount paddock-runner/paddock-runner appeared");
}

const RUNNER_USER = "system:serviceaccount:paddock-runner:paddock-runner";
/** What the runner's ServiceAccount did, over both clusters: "group/resource[/sub]:verb". */
const runnerUsed = new Set<string>();

/** The runner's requests, from the API server's audit log; those refused are returned. */
function recordRunnerRequests(cluster: Cluster): string[] {
  const denied: string[] = [];
  for (const line of readFileSync(cluster.auditLogPath, "utf8").split("\n")) {
    if (!line.includes(RUNNER_USER)) continue;
    const event = JSON.parse(line) as Json;
    if (event.user?.username !== RUNNER_USER || !event.objectRef) continue;
    const { apiGroup = "", resource, subresource } = event.objectRef;
    const what = `${apiGroup}/${resource}${subresource ? `/${subresource}` : ""}`;
    runnerUsed.add(`${what}:${event.verb}`);
    // Server-side apply that creates the object is authorized as create as well.
    if (event.verb === "patch" && event.responseStatus?.code === 201)
      runnerUsed.add(`${what}:create`);
    if (event.responseStatus?.code === 403) denied.push(`${what}:${event.verb}`);
  }
  return denied;
}

/** A Paddock control plane without its local runner: sandboxes go to the kubernetes runner. */
async function startControlPlane() {
  const server = await startServerProcess({
    args: ["--listen", "127.0.0.1:0", "--no-local-runner"],
  });
  return { server, admin: new PaddockClient(server.url, server.token()) };
}

function startAgent(
  server: ServerProcess,
  token: string,
  runnerId: string,
  kubeconfig: string,
): ChildProcess {
  // PADDOCK_TEST_AGENT_LOG=FILE keeps the agent's log for debugging.
  const log = process.env.PADDOCK_TEST_AGENT_LOG;
  return startRunnerAgent(
    server.url,
    token,
    runnerId,
    ["--backend", "kubernetes", "--kubeconfig", kubeconfig],
    log ? ["ignore", openSync(log, "a"), "inherit"] : "ignore",
  );
}

async function waitConnection(
  admin: PaddockClient,
  runnerId: string,
  want: "CONNECTED" | "DISCONNECTED",
): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const { runner } = await admin.get<{ runner: { connectionStatus: string; backend: string } }>(
      `/v1beta2/sandbox/runners/${runnerId}`,
    );
    if (
      runner.connectionStatus === want &&
      (want === "DISCONNECTED" || runner.backend === "kubernetes")
    )
      return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`runner ${runnerId} never became ${want}`);
}

async function waitFor(
  admin: PaddockClient,
  id: string,
  done: (s: SandboxAnswer) => boolean,
  ms = 60_000,
): Promise<SandboxAnswer> {
  const deadline = Date.now() + ms;
  let last: SandboxAnswer | undefined;
  while (Date.now() < deadline) {
    last = await admin.get<SandboxAnswer>(`/v1beta2/sandboxes/${id}`);
    if (done(last)) return last;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`sandbox ${id} never got there: ${JSON.stringify(last)}`);
}

async function objects(cluster: Cluster, kind: string, sandboxId: string): Promise<Json[]> {
  const out = await cluster.kubectl([
    "get",
    kind,
    "-A",
    "-l",
    `paddock.dev/sandbox-id=${sandboxId}`,
    "-o",
    "json",
  ]);
  return (JSON.parse(out) as { items: Json[] }).items;
}

describe("kubernetes backend against a real API server", () => {
  let cluster: Cluster;
  let server: ServerProcess;
  let admin: PaddockClient;
  let agent: ChildProcess;
  let runnerToken = "";
  let runnerKubeconfig = "";
  const ids: Record<string, string> = {};

  const start = async (body: Json, client = admin) => {
    const s = await client.post<SandboxAnswer>("/v1beta2/sandboxes", {
      runnerIds: ["cks"],
      ...body,
    });
    // The pod is applied last: once it exists (or the sandbox failed), everything is in place.
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const now = await client.get<SandboxAnswer>(`/v1beta2/sandboxes/${s.sandboxId}`);
      if (now.sandboxStatus === "SANDBOX_STATUS_FAILED") return now;
      if ((await objects(cluster, "pods", s.sandboxId)).length > 0) return now;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`sandbox ${s.sandboxId} was never applied`);
  };

  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.kubectl(["apply", "-f", "-"], {
      input: ["kata-qemu", "kata-qemu-nvidia-gpu", "gvisor"]
        .map(
          (name) =>
            `apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: ${name}\nhandler: runc\n`,
        )
        .join("---\n"),
    });
    ({ server, admin } = await startControlPlane());
    for (const text of seedProfiles()) {
      const { profileTemplate } = await admin.post<{
        profileTemplate: { id: string; displayName: string };
      }>("/v1beta2/sandbox/profile-templates", JSON.parse(text));
      ids[profileTemplate.displayName] = profileTemplate.id;
    }
    const runner = JSON.parse(
      seedRunner()
        .replace("[YOUR-CKS-CLUSTER-ID]", "cks-test")
        .replace("[CI-TEST-RUNNER-ID]", ids["ci-test-runner"] ?? "")
        .replace("[DS-GPU-H100-ID]", ids["ds-gpu-h100"] ?? "")
        .replace("[AGENT-ALLOWLIST-ID]", ids["agent-allowlist"] ?? "")
        .replace("[UNTRUSTED-EXEC-ID]", ids["untrusted-exec"] ?? "")
        .replace("[WORKER-INTERNAL-SVC-ID]", ids["worker-internal-svc"] ?? ""),
    );
    runner.runnerId = "cks";
    runner.runner.zoneDefaults = { containerImage: BUSYBOX_IMAGE };
    await admin.post("/v1beta2/sandbox/runners", runner);
    runnerToken = (await admin.post<{ token: string }>("/v1beta2/sandbox/runners/cks/tokens", {}))
      .token;
    runnerKubeconfig = await runnerServiceAccountKubeconfig(cluster);
    agent = startAgent(server, runnerToken, "cks", runnerKubeconfig);
    await waitConnection(admin, "cks", "CONNECTED");
  }, 240_000);

  afterAll(async () => {
    agent?.kill("SIGTERM");
    await server?.stop();
    await cluster?.stop();
  });

  it("ds-gpu-h100: per-user namespace with its labels, runtime class, node selector, instance-type affinity, internet egress", async () => {
    const s = await start({ profileNames: ["gpu"] });
    expect(s.namespace).toMatch(/^ds-default-admin-[0-9a-f]{6}$/);
    const [pod] = await objects(cluster, "pods", s.sandboxId);
    expect(pod?.metadata.namespace).toBe(s.namespace);
    expect(pod?.metadata.labels).toMatchObject({
      "paddock.dev/sandbox-id": s.sandboxId,
      "app.kubernetes.io/managed-by": "paddock",
      "paddock.dev/organization": "default",
      "paddock.dev/user": "admin",
      "paddock.dev/profile": ids["ds-gpu-h100"],
    });
    expect(pod?.spec.runtimeClassName).toBe("kata-qemu-nvidia-gpu");
    expect(pod?.spec.nodeSelector).toEqual({ gpu: "h100" });
    expect(JSON.stringify(pod?.spec.affinity)).toContain('"values":["h100"]');
    expect(pod?.spec.containers[0].image).toBe("ghcr.io/myorg/python-ds:3.11-pytorch-2.3");
    expect(pod?.spec.containers[0].resources).toEqual({
      requests: { cpu: "4", memory: "16Gi" },
      limits: { cpu: "8", memory: "32Gi" },
    });
    const ns = JSON.parse(await cluster.kubectl(["get", "namespace", s.namespace, "-o", "json"]));
    expect(ns.metadata.labels).toMatchObject({
      "paddock.dev/organization": "default",
      "app.kubernetes.io/managed-by": "paddock",
    });
    const [egress] = await objects(cluster, "networkpolicies", s.sandboxId);
    expect(egress?.spec.egress[0].to[0].ipBlock.cidr).toBe("0.0.0.0/0");
    // Applied with the namespace: Paddock's pods have no egress but what their own policy allows.
    const baseline = JSON.parse(
      await cluster.kubectl([
        "get",
        "networkpolicy",
        "paddock-baseline",
        "-n",
        s.namespace,
        "-o",
        "json",
      ]),
    );
    expect(baseline.spec).toEqual({
      podSelector: { matchLabels: { "app.kubernetes.io/managed-by": "paddock" } },
      policyTypes: ["Egress"],
    });
  });

  it("agent-allowlist: allowlist egress of exactly its CIDRs; the seed's override changes it", async () => {
    const s = await start({ profileNames: ["agent"] });
    const [egress] = await objects(cluster, "networkpolicies", s.sandboxId);
    expect(egress?.spec.egress[0].to.map((t: Json) => t.ipBlock.cidr)).toEqual([
      "140.82.112.0/20",
      "151.101.0.0/16",
    ]);
    const override = JSON.parse(
      seedBindingOverride().replace("[AGENT-ALLOWLIST-ID]", ids["agent-allowlist"] ?? ""),
    );
    const { runner } = await admin.get<{ runner: { profileBindings: Json[] } }>(
      "/v1beta2/sandbox/runners/cks",
    );
    const bindings = runner.profileBindings.map((b) =>
      b.profileTemplateId === override.profileTemplateId
        ? { ...b, overridesJson: override.overridesJson }
        : b,
    );
    await admin.patch("/v1beta2/sandbox/runners/cks", { runner: { profileBindings: bindings } });
    const after = await start({ profileNames: ["agent"] });
    const [changed] = await objects(cluster, "networkpolicies", after.sandboxId);
    expect(changed?.spec.egress[0].to.map((t: Json) => t.ipBlock.cidr)).toEqual([
      "140.82.112.0/20",
      "10.42.0.0/16",
    ]);
  });

  it("untrusted-exec: per-profile namespace with its labels, no egress at all", async () => {
    const s = await start({ profileNames: ["untrusted"] });
    expect(s.namespace).toMatch(/^untrusted-untrusted-exec-[0-9a-f]{6}$/);
    const ns = JSON.parse(await cluster.kubectl(["get", "namespace", s.namespace, "-o", "json"]));
    expect(ns.metadata.labels.policy).toBe("restricted");
    const [egress] = await objects(cluster, "networkpolicies", s.sandboxId);
    expect(egress?.spec.policyTypes).toEqual(["Egress"]);
    expect(egress?.spec.egress ?? []).toEqual([]);
  });

  it("worker-internal-svc: per-org namespace, a ClusterIP Service with protocol, an org-scoped ingress policy", async () => {
    const s = await start({
      profileNames: ["worker"],
      network: { ingressMode: "internal", exposedPorts: [8080] },
    });
    expect(s.namespace).toMatch(/^default-[0-9a-f]{6}$/);
    const [service] = await objects(cluster, "services", s.sandboxId);
    expect(service?.spec.type).toBe("ClusterIP");
    expect(service?.spec.ports).toEqual([expect.objectContaining({ port: 8080, protocol: "TCP" })]);
    const policies = await objects(cluster, "networkpolicies", s.sandboxId);
    const ingress = policies.find((p) => p.spec.policyTypes.includes("Ingress"));
    expect(ingress?.spec.ingress[0].from[0].podSelector.matchLabels).toEqual({
      "paddock.dev/organization": "default",
    });
  });

  it("ci-test-runner: a missing static namespace fails the sandbox naming it; once it exists, the pod lands there", async () => {
    const s = await start({});
    const failed = await waitFor(
      admin,
      s.sandboxId,
      (x) => x.sandboxStatus === "SANDBOX_STATUS_FAILED",
    );
    expect(failed.statusReason).toContain("ci-sandboxes");
    await cluster.kubectl(["create", "namespace", "ci-sandboxes"]);
    const ok = await start({});
    expect(ok.sandboxStatus).not.toBe("SANDBOX_STATUS_FAILED");
    const [pod] = await objects(cluster, "pods", ok.sandboxId);
    expect(pod?.metadata.namespace).toBe("ci-sandboxes");
    expect(pod?.spec.runtimeClassName).toBe("gvisor");
  });

  it("an unknown runtime class fails the sandbox, naming it, before anything is created", async () => {
    const { profileTemplate } = await admin.post<{ profileTemplate: { id: string } }>(
      "/v1beta2/sandbox/profile-templates",
      {
        profileTemplate: { displayName: "odd-runtime", spec: { runtimeClass: "no-such-class" } },
      },
    );
    const { runner } = await admin.get<{ runner: { profileBindings: Json[] } }>(
      "/v1beta2/sandbox/runners/cks",
    );
    await admin.patch("/v1beta2/sandbox/runners/cks", {
      runner: {
        profileBindings: [...runner.profileBindings, { profileTemplateId: profileTemplate.id }],
      },
    });
    const s = await start({ profileNames: ["odd-runtime"] });
    const failed = await waitFor(
      admin,
      s.sandboxId,
      (x) => x.sandboxStatus === "SANDBOX_STATUS_FAILED",
    );
    expect(failed.statusReason).toContain("no-such-class");
    expect(await objects(cluster, "pods", s.sandboxId)).toEqual([]);
  });

  it("per-user: two users get two namespaces, one user twice gets one", async () => {
    const { token } = await admin.post<{ token: string }>(
      "/v1beta2/admin/organizations/default/users",
      { userId: "bob", role: "SANDBOX_USER" },
    );
    const bob = new PaddockClient(server.url, token);
    const a1 = await start({ profileNames: ["gpu"] });
    const a2 = await start({ profileNames: ["gpu"] });
    const b1 = await start({ profileNames: ["gpu"] }, bob);
    expect(a1.namespace).toBe(a2.namespace);
    expect(b1.namespace).not.toBe(a1.namespace);
    expect(b1.namespace).toMatch(/^ds-default-bob-[0-9a-f]{6}$/);
  });

  it("never places a sandbox in an existing namespace Paddock did not create for the organization", async () => {
    const s = await start({ profileNames: ["untrusted"] });
    // Same name, taken over by someone else.
    await cluster.kubectl([
      "label",
      "namespace",
      s.namespace,
      "paddock.dev/organization=someone-else",
      "--overwrite",
    ]);
    // The agent hears of the change through its namespace watch (not by polling).
    await new Promise((r) => setTimeout(r, 500));
    const refused = await start({ profileNames: ["untrusted"] });
    const failed = await waitFor(
      admin,
      refused.sandboxId,
      (x) => x.sandboxStatus === "SANDBOX_STATUS_FAILED",
    );
    expect(failed.statusReason).toContain("was not created by Paddock");
    await cluster.kubectl([
      "label",
      "namespace",
      s.namespace,
      "paddock.dev/organization=default",
      "--overwrite",
    ]);
  });

  it("a restarted agent adopts what exists (no duplicates) and removes what was deleted while it was away", async () => {
    const kept = await start({ profileNames: ["untrusted"] });
    const doomed = await start({ profileNames: ["untrusted"] });
    const keptUid = (await objects(cluster, "pods", kept.sandboxId))[0]?.metadata.uid;
    agent.kill("SIGKILL");
    await new Promise((r) => agent.once("exit", r));
    await waitConnection(admin, "cks", "DISCONNECTED");
    await admin.delete(`/v1beta2/sandboxes/${doomed.sandboxId}`);
    agent = startAgent(server, runnerToken, "cks", runnerKubeconfig);
    await waitConnection(admin, "cks", "CONNECTED");
    for (let i = 0; i < 100 && (await objects(cluster, "pods", doomed.sandboxId)).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await objects(cluster, "pods", doomed.sandboxId)).toEqual([]);
    expect(await objects(cluster, "networkpolicies", doomed.sandboxId)).toEqual([]);
    const keptPods = await objects(cluster, "pods", kept.sandboxId);
    expect(keptPods.map((p) => p.metadata.uid)).toEqual([keptUid]);
    expect(await objects(cluster, "networkpolicies", kept.sandboxId)).toHaveLength(1);
  });

  it("stop removes every object of the sandbox and reports TERMINATED", async () => {
    const s = await start({
      profileNames: ["worker"],
      network: { ingressMode: "internal", exposedPorts: [8080] },
    });
    const stopped = await admin.post<SandboxAnswer>(`/v1beta2/sandboxes/${s.sandboxId}/stop`, {
      gracefulShutdownSeconds: 0,
      waitForReady: true,
    });
    expect(stopped.sandboxStatus).toBe("SANDBOX_STATUS_TERMINATED");
    for (const kind of ["pods", "services", "networkpolicies"])
      expect(await objects(cluster, kind, s.sandboxId)).toEqual([]);
  });

  it("deploy manifests apply cleanly, and the runner ran all of the above on its own RBAC", async () => {
    const out = await cluster.kubectl(["apply", "-f", "deploy/control-plane.yaml"]);
    expect(out).toContain("deployment.apps/paddock-control-plane created");
    expect(out).toContain("service/paddock created");
    expect(await cluster.kubectl(["apply", "-f", "deploy/runner.yaml"])).not.toContain(
      "configured",
    );
    expect(recordRunnerRequests(cluster)).toEqual([]);
  });
});

describe("kubernetes backend on a real node", () => {
  let cluster: Cluster;
  let server: ServerProcess;
  let admin: PaddockClient;
  let agent: ChildProcess;
  const cli = (args: string[], input?: string) =>
    runCli(args, {
      env: { PADDOCK_SERVER: server.url, PADDOCK_TOKEN: server.token() },
      ...(input !== undefined ? { input } : {}),
    });

  beforeAll(async () => {
    cluster = await startCluster({ node: true });
    ({ server, admin } = await startControlPlane());
    const { profileTemplate } = await admin.post<{ profileTemplate: { id: string } }>(
      "/v1beta2/sandbox/profile-templates",
      {
        profileTemplate: {
          displayName: "busybox",
          spec: {
            containerImage: BUSYBOX_IMAGE,
            namespace: { strategy: "per-user", namespacePrefix: "sb-" },
            network: {
              ingress: {
                public: {
                  scope: "any",
                  expectsExternalAddress: true,
                  service: { serviceType: "LoadBalancer" },
                },
                web: {
                  scope: "org",
                  expectsExternalAddress: true,
                  service: { serviceType: "ClusterIP" },
                  ingress: { controllerName: "nginx", template: "{{.SandboxID}}.sb.example.com" },
                },
              },
            },
          },
        },
      },
    );
    await admin.post("/v1beta2/sandbox/runners", {
      runnerId: "node",
      runner: {
        identity: { zone: "test" },
        profileBindings: [{ profileTemplateId: profileTemplate.id, isDefault: true }],
      },
    });
    const { token } = await admin.post<{ token: string }>(
      "/v1beta2/sandbox/runners/node/tokens",
      {},
    );
    agent = startAgent(server, token, "node", await runnerServiceAccountKubeconfig(cluster));
    await waitConnection(admin, "node", "CONNECTED");
  }, 300_000);

  afterAll(async () => {
    agent?.kill("SIGTERM");
    await server?.stop();
    await cluster?.stop();
  });

  it("paddock sandbox run prints hi through the Kubernetes exec API", async () => {
    const r = await cli([
      "sandbox",
      "run",
      "--runner",
      "node",
      "--image",
      BUSYBOX_IMAGE,
      "--",
      "echo",
      "hi",
    ]);
    // Only the progress line the CLI prints when a start takes over 1.5 s.
    expect(r.stderr.replace("waiting for the sandbox to start…\n", "")).toBe("");
    expect(r.stdout).toBe("hi\n");
    expect(r.code).toBe(0);
  });

  it("exec exit codes, stdin, files and logs work; Ready is RUNNING; stop removes everything", async () => {
    const s = await admin.post<SandboxAnswer>("/v1beta2/sandboxes?wait=true", {
      command: "sh",
      args: ["-c", "echo started; sleep 3600"],
    });
    expect(s.sandboxStatus).toBe("SANDBOX_STATUS_RUNNING");
    const exec = await admin.post<Json>(`/v1beta2/sandboxes/${s.sandboxId}/exec`, {
      command: ["sh", "-c", "cat; exit 3"],
      stdin: Buffer.from("in").toString("base64"),
    });
    expect(exec.exitCode).toBe(3);
    expect(Buffer.from(exec.stdout, "base64").toString()).toBe("in");
    await admin.post(`/v1beta2/sandboxes/${s.sandboxId}/files`, {
      filePath: "/tmp/a/b.txt",
      fileContent: Buffer.from("file body").toString("base64"),
    });
    expect(
      (await admin.bytes(`/v1beta2/sandboxes/${s.sandboxId}/files/tmp/a/b.txt`)).toString(),
    ).toBe("file body");
    await expect(
      admin.bytes(`/v1beta2/sandboxes/${s.sandboxId}/files/tmp/none`),
    ).rejects.toMatchObject({ httpStatus: 404 });
    const logs: Buffer[] = [];
    for await (const chunk of admin.stream(`/v1beta2/sandboxes/${s.sandboxId}/logs`))
      logs.push(chunk);
    expect(Buffer.concat(logs).toString()).toContain("started");
    const stopped = await admin.post<SandboxAnswer>(`/v1beta2/sandboxes/${s.sandboxId}/stop`, {
      gracefulShutdownSeconds: 1,
      waitForReady: true,
    });
    // The answer waits grace + 15 s; a loaded node may take longer to remove a pod.
    const ended =
      stopped.sandboxStatus === "SANDBOX_STATUS_TERMINATED"
        ? stopped
        : await waitFor(admin, s.sandboxId, (x) => x.sandboxStatus === "SANDBOX_STATUS_TERMINATED");
    expect(ended.sandboxStatus).toBe("SANDBOX_STATUS_TERMINATED");
    expect(await objects(cluster, "pods", s.sandboxId)).toEqual([]);
  });

  it("an image that cannot be pulled fails the sandbox, naming the image", async () => {
    const s = await admin.post<SandboxAnswer>("/v1beta2/sandboxes?wait=true", {
      containerImage: "localhost/paddock/missing:1",
    });
    const failed = await waitFor(
      admin,
      s.sandboxId,
      (x) => x.sandboxStatus === "SANDBOX_STATUS_FAILED",
    );
    expect(failed.statusReason).toContain("localhost/paddock/missing:1");
  });

  it("a command that exits on its own completes with its exit code", async () => {
    const s = await admin.post<SandboxAnswer>("/v1beta2/sandboxes", {
      command: "sh",
      args: ["-c", "exit 0"],
    });
    const done = await waitFor(
      admin,
      s.sandboxId,
      (x) => x.sandboxStatus === "SANDBOX_STATUS_COMPLETED",
    );
    expect(done.statusReason).toContain("0");
  });

  it("expectsExternalAddress: RUNNING only once the load balancer has an address (set here, as a controller would)", async () => {
    const s = await admin.post<SandboxAnswer>("/v1beta2/sandboxes", {
      network: { ingressMode: "public", exposedPorts: [8080] },
    });
    const waiting = await waitFor(admin, s.sandboxId, (x) =>
      x.statusReason.includes("external address"),
    );
    expect(waiting.sandboxStatus).toBe("SANDBOX_STATUS_CREATING");
    const [service] = await objects(cluster, "services", s.sandboxId);
    expect(service?.spec.type).toBe("LoadBalancer");
    await cluster.kubectl([
      "patch",
      "service",
      service?.metadata.name,
      "-n",
      service?.metadata.namespace,
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status: { loadBalancer: { ingress: [{ ip: "203.0.113.7" }] } } }),
    ]);
    const running = await waitFor(
      admin,
      s.sandboxId,
      (x) => x.sandboxStatus === "SANDBOX_STATUS_RUNNING",
    );
    expect((running as SandboxAnswer & { serviceAddress: string }).serviceAddress).toBe(
      "203.0.113.7:8080",
    );
  });

  it("an ingress template yields an Ingress for its host; the sandbox runs once the Ingress has an address", async () => {
    const s = await admin.post<SandboxAnswer>("/v1beta2/sandboxes", {
      network: { ingressMode: "web", exposedPorts: [8080] },
    });
    await waitFor(admin, s.sandboxId, (x) => x.statusReason.includes("external address"));
    const [ingress] = await objects(cluster, "ingresses", s.sandboxId);
    expect(ingress?.spec.ingressClassName).toBe("nginx");
    expect(ingress?.spec.rules[0].host).toBe(`${s.sandboxId}.sb.example.com`);
    expect(ingress?.spec.rules[0].http.paths[0].backend.service.port.number).toBe(8080);
    await cluster.kubectl([
      "patch",
      "ingress",
      ingress?.metadata.name,
      "-n",
      ingress?.metadata.namespace,
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status: { loadBalancer: { ingress: [{ ip: "203.0.113.8" }] } } }),
    ]);
    const running = await waitFor(
      admin,
      s.sandboxId,
      (x) => x.sandboxStatus === "SANDBOX_STATUS_RUNNING",
    );
    expect((running as SandboxAnswer & { serviceAddress: string }).serviceAddress).toBe(
      `${s.sandboxId}.sb.example.com`,
    );
    await admin.delete(`/v1beta2/sandboxes/${s.sandboxId}`);
  });

  it("the runner's RBAC grants nothing it did not use on these two clusters", async () => {
    expect(recordRunnerRequests(cluster)).toEqual([]);
    const role = JSON.parse(
      await cluster.kubectl(["get", "clusterrole", "paddock-runner", "-o", "json"]),
    ) as { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
    const granted = role.rules.flatMap((r) =>
      r.apiGroups.flatMap((g) =>
        r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`)),
      ),
    );
    // Kubernetes 1.30+ authorizes exec over WebSocket as create; 1.20 as get.
    const needElsewhere = new Set(["/pods/exec:create"]);
    expect(granted.filter((g) => !runnerUsed.has(g) && !needElsewhere.has(g))).toEqual([]);
  });
});
