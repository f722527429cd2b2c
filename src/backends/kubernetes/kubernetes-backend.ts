import { randomUUID } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { PassThrough, Writable } from "node:stream";
import {
  ApiException,
  Exec,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  Log,
  type V1Pod,
  type V1Status,
  Watch,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { AppError } from "../../errors.js";
import { isTerminal } from "../../sandboxes/sandbox.js";
import {
  type Backend,
  type ExecRequest,
  type ExecResult,
  failedObserved,
  type InteractiveSession,
  type LogRequest,
  type ObservedSandbox,
  pendingObserved,
  type SandboxAssignment,
} from "../backend.js";
import { CappedBuffer } from "../capped-buffer.js";
import {
  type Exposure,
  exposureOf,
  type KubeObject,
  LABEL_MANAGED_BY,
  LABEL_ORG,
  LABEL_SANDBOX,
  MAIN_CONTAINER,
  MANAGER,
  objectName,
  objectPath,
  type Rendered,
  render,
} from "./render.js";

const FIELD_MANAGER = "paddock";
const IMAGE_FAILURES = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "ErrImageNeverPull",
  "InvalidImageName",
]);

/** The kinds a sandbox may own, for clean-up by label. */
const OWNED_KINDS: { apiVersion: string; kind: string }[] = [
  { apiVersion: "v1", kind: "Pod" },
  { apiVersion: "v1", kind: "Service" },
  { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy" },
  { apiVersion: "networking.k8s.io/v1", kind: "Ingress" },
];

interface Tracked {
  sandboxId: string;
  namespace: string;
  podName: string;
  observed: ObservedSandbox;
  onChange: (o: ObservedSandbox) => void;
  watch: AbortController | undefined;
  /** Watches the Service (or Ingress) while the sandbox waits for its external address. */
  addressWatch: AbortController | undefined;
  lastPod: V1Pod | undefined;
  exposure: Exposure | undefined;
  stopReason: string | undefined;
  /** The pod's log (timestamped), kept when stop deleted the pod; only until delete. */
  finalLogs?: string;
}

function unwatch(t: Tracked): void {
  t.watch?.abort();
  t.addressWatch?.abort();
  t.addressWatch = undefined;
}

/**
 * Places sandboxes on a Kubernetes cluster: server-side apply (field
 * manager `paddock`) of the objects render() describes, a watch that turns
 * pod phase and readiness into sandbox status, exec and logs through the API.
 */
export class KubernetesBackend implements Backend {
  readonly kind = "kubernetes" as const;
  private readonly kc: KubeConfig;
  private readonly objects: KubernetesObjectApi;
  private readonly tracked = new Map<string, Tracked>();
  private readonly loadError: string | undefined;
  /**
   * "org/namespace" → until when it is known fit (checked, baseline policy
   * applied). Trusted only while a watch on Paddock's namespaces runs, which
   * forgets a namespace as soon as it changes (relabelled, deleted).
   */
  private readonly preparedNamespaces = new Map<string, number>();
  private namespaceWatch: AbortController | undefined;
  /** RuntimeClass name → until when it is known to exist. */
  private readonly knownRuntimeClasses = new Map<string, number>();
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 32 });
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });

  constructor(
    options: { kubeconfig?: string | undefined },
    private readonly logger: Logger,
  ) {
    this.kc = new KubeConfig();
    let loadError: string | undefined;
    try {
      if (options.kubeconfig) this.kc.loadFromFile(options.kubeconfig);
      else this.kc.loadFromDefault();
    } catch (error) {
      loadError = `cannot load a kubeconfig: ${(error as Error).message}`;
    }
    this.loadError = loadError;
    this.objects = KubernetesObjectApi.makeApiClient(this.kc);
  }

  unavailableReason(): string | undefined {
    if (this.loadError) return this.loadError;
    if (!this.kc.getCurrentCluster())
      return "the kubeconfig names no cluster (use --kubeconfig, KUBECONFIG or run in a cluster)";
    return undefined;
  }

  async start(
    assignment: SandboxAssignment,
    onChange: (o: ObservedSandbox) => void,
  ): Promise<ObservedSandbox> {
    const { sandboxId, spec } = assignment;
    const known = this.tracked.get(sandboxId);
    if (known) return known.observed;
    if (!spec.image)
      return failedObserved(
        sandboxId,
        "no container image: set containerImage in the profile, the runner's zoneDefaults or the request",
      );
    const rendered = render({
      sandboxId,
      organizationId: assignment.organizationId,
      userId: assignment.userId,
      profileId: assignment.profileId,
      spec,
    });
    // Everything that can refuse the sandbox is checked before anything is
    // created; what was checked lately is remembered, so that a steady
    // start is one round of applies, all at once (the namespace's baseline
    // policy keeps the pod closed until its own policies are in).
    for (let attempt = 1; ; attempt++) {
      try {
        const [runtimeProblem, namespaceProblem] = await Promise.all([
          this.checkRuntimeClass(spec.runtimeClass),
          this.prepareNamespace(rendered, assignment),
        ]);
        if (runtimeProblem) return failedObserved(sandboxId, runtimeProblem);
        if (namespaceProblem) return failedObserved(sandboxId, namespaceProblem);
        const objects = [
          ...rendered.networkPolicies,
          rendered.service,
          rendered.ingress,
          rendered.pod,
        ].filter((o) => o !== undefined);
        await Promise.all(objects.map((o) => this.apply(o)));
        break;
      } catch (error) {
        // What was remembered may be stale (a namespace deleted meanwhile): check again once.
        this.forget(spec.runtimeClass, spec.namespace);
        if (attempt < 2) continue;
        await this.deleteOwned(sandboxId, spec.namespace, 0).catch(() => undefined);
        return failedObserved(sandboxId, `the cluster refused the sandbox: ${describe(error)}`);
      }
    }
    const tracked: Tracked = {
      sandboxId,
      namespace: spec.namespace,
      podName: objectName(sandboxId),
      observed: {
        ...pendingObserved(sandboxId),
        status: "SANDBOX_STATUS_CREATING",
        exposedPorts: spec.ingress?.ports ?? [],
      },
      onChange,
      watch: undefined,
      addressWatch: undefined,
      lastPod: undefined,
      exposure: exposureOf(rendered.pod),
      stopReason: undefined,
    };
    this.tracked.set(sandboxId, tracked);
    await this.watchPod(tracked);
    return tracked.observed;
  }

  /**
   * `static` → the named namespace (created when missing and autoCreate);
   * `autoCreate: false` → it must exist; otherwise the generated namespace
   * is applied, unless it exists and is not Paddock's for this organization.
   */
  private async prepareNamespace(
    rendered: Rendered,
    a: SandboxAssignment,
  ): Promise<string | undefined> {
    const name = a.spec.namespace;
    const key = `${a.organizationId}/${name}`;
    await this.watchNamespaces().catch((error: unknown) =>
      this.logger.warn({ err: error }, "namespace watch failed; checking every start"),
    );
    if (this.namespaceWatch && (this.preparedNamespaces.get(key) ?? 0) > Date.now())
      return undefined;
    const problem = await this.checkNamespace(rendered, a);
    if (problem) return problem;
    await this.apply(rendered.baselinePolicy);
    this.preparedNamespaces.set(key, Date.now() + REMEMBER_CHECKS_MS);
    return undefined;
  }

  private async checkNamespace(
    rendered: Rendered,
    a: SandboxAssignment,
  ): Promise<string | undefined> {
    const name = a.spec.namespace;
    const config = a.spec.namespaceConfig;
    const existing = await this.readOrUndefined<KubernetesObject>({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name },
    });
    if (config?.strategy === "static") {
      if (!existing && !config.autoCreate)
        return `namespace '${name}' does not exist (static, autoCreate false)`;
      if (!existing)
        await this.apply({
          apiVersion: "v1",
          kind: "Namespace",
          metadata: { name, labels: config.labels, annotations: config.annotations },
        });
      return undefined;
    }
    if (!rendered.namespace) {
      return existing ? undefined : `namespace '${name}' does not exist and autoCreate is false`;
    }
    if (existing) {
      const labels = existing.metadata?.labels ?? {};
      if (labels[LABEL_MANAGED_BY] !== MANAGER || labels[LABEL_ORG] !== a.organizationId) {
        return `namespace '${name}' exists and was not created by Paddock for organization '${a.organizationId}'; Paddock will not place sandboxes in it`;
      }
    }
    await this.apply(rendered.namespace);
    return undefined;
  }

  private async watchNamespaces(): Promise<void> {
    if (this.namespaceWatch) return;
    const controller = await new Watch(this.kc).watch(
      "/api/v1/namespaces",
      { labelSelector: `${LABEL_MANAGED_BY}=${MANAGER}` },
      (_phase: string, namespace: KubernetesObject) =>
        this.forgetNamespace(namespace.metadata?.name ?? ""),
      () => {
        if (this.namespaceWatch === controller) this.namespaceWatch = undefined;
        this.preparedNamespaces.clear();
      },
    );
    this.namespaceWatch = controller;
  }

  private forgetNamespace(namespace: string): void {
    for (const key of this.preparedNamespaces.keys())
      if (key.endsWith(`/${namespace}`)) this.preparedNamespaces.delete(key);
  }

  private async checkRuntimeClass(name: string): Promise<string | undefined> {
    if (!name || (this.knownRuntimeClasses.get(name) ?? 0) > Date.now()) return undefined;
    const exists = await this.exists({
      apiVersion: "node.k8s.io/v1",
      kind: "RuntimeClass",
      metadata: { name },
    });
    if (!exists) return `runtime class '${name}' does not exist on this cluster`;
    this.knownRuntimeClasses.set(name, Date.now() + REMEMBER_CHECKS_MS);
    return undefined;
  }

  private forget(runtimeClass: string, namespace: string): void {
    this.knownRuntimeClasses.delete(runtimeClass);
    this.forgetNamespace(namespace);
  }

  /**
   * Server-side apply of the object exactly as rendered. Not through the
   * client's typed models: they would drop what they name differently
   * (NetworkPolicy `from` is `_from` there) or do not know (PodSpec fields
   * newer than the client), silently.
   */
  private async apply(object: KubeObject): Promise<void> {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error("the kubeconfig names no cluster");
    const url = new URL(
      `${objectPath(object)}?fieldManager=${FIELD_MANAGER}&force=true`,
      cluster.server,
    );
    const options: https.RequestOptions = {
      method: "PATCH",
      headers: { "Content-Type": "application/apply-patch+yaml", Accept: "application/json" },
    };
    await this.kc.applyToHTTPSOptions(options);
    // One TLS connection pool for every apply, not a handshake each.
    options.agent = url.protocol === "https:" ? this.httpsAgent : this.httpAgent;
    const body = JSON.stringify(object);
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const request = (url.protocol === "https:" ? https : http).request(url, options, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
          );
          res.on("error", reject);
        });
        request.on("error", reject);
        request.end(body);
      },
    );
    if (status >= 300) {
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {}
      throw new ApiException(status, `applying ${object.kind} ${object.metadata.name}`, parsed, {});
    }
  }

  private async exists(header: KubeObject): Promise<boolean> {
    return (await this.readOrUndefined(header)) !== undefined;
  }

  private async readOrUndefined<T extends KubernetesObject>(
    header: KubeObject,
  ): Promise<T | undefined> {
    try {
      return (await this.objects.read(
        header as KubernetesObject & { metadata: { name: string } },
      )) as T;
    } catch (error) {
      if (error instanceof ApiException && error.code === 404) return undefined;
      throw error;
    }
  }

  /** Follows the pod; a restarted watch re-reads it, so no change is missed. */
  private async watchPod(t: Tracked): Promise<void> {
    const watch = new Watch(this.kc);
    const restart = () => {
      if (this.tracked.get(t.sandboxId) !== t || t.stopReason !== undefined) return;
      setTimeout(
        () =>
          void this.watchPod(t).catch((e: unknown) =>
            this.logger.warn({ err: e }, "pod watch failed"),
          ),
        1000,
      ).unref();
    };
    t.watch = await watch.watch(
      `/api/v1/namespaces/${t.namespace}/pods`,
      { fieldSelector: `metadata.name=${t.podName}` },
      (phase, pod: V1Pod) => {
        t.lastPod = pod;
        if (phase === "DELETED") return;
        void this.podChanged(t, pod);
      },
      () => restart(),
    );
  }

  private async podChanged(t: Tracked, pod: V1Pod): Promise<void> {
    if (t.stopReason !== undefined) return;
    const next = await this.statusOf(t, pod);
    if (
      next.status === t.observed.status &&
      next.statusReason === t.observed.statusReason &&
      next.serviceAddress === t.observed.serviceAddress
    )
      return;
    if (isTerminal(t.observed.status)) return;
    t.observed = next;
    t.onChange(next);
    if (isTerminal(next.status)) unwatch(t);
    else if (next.statusReason === WAITING_FOR_ADDRESS) await this.watchAddress(t);
    else {
      t.addressWatch?.abort();
      t.addressWatch = undefined;
    }
  }

  /** The address comes from a controller, not the pod: watch the object that gets it. */
  private async watchAddress(t: Tracked): Promise<void> {
    if (t.addressWatch || !t.exposure) return;
    const path = t.exposure.host
      ? `/apis/networking.k8s.io/v1/namespaces/${t.namespace}/ingresses`
      : `/api/v1/namespaces/${t.namespace}/services`;
    const controller = await new Watch(this.kc).watch(
      path,
      { fieldSelector: `metadata.name=${t.podName}` },
      () => {
        if (t.lastPod) void this.podChanged(t, t.lastPod);
      },
      () => {
        if (t.addressWatch === controller) t.addressWatch = undefined;
      },
    );
    t.addressWatch = controller;
  }

  /** Pod phase and readiness → sandbox status (CONTRACT section 8). */
  private async statusOf(t: Tracked, pod: V1Pod): Promise<ObservedSandbox> {
    const base = { ...t.observed };
    const status = pod.status;
    const main = status?.containerStatuses?.find((c) => c.name === MAIN_CONTAINER);
    const waiting = main?.state?.waiting;
    if (waiting?.reason && IMAGE_FAILURES.has(waiting.reason)) {
      const image = pod.spec?.containers.find((c) => c.name === MAIN_CONTAINER)?.image ?? "";
      return {
        ...base,
        status: "SANDBOX_STATUS_FAILED",
        statusReason: `image '${image}' cannot be pulled (${waiting.reason}${waiting.message ? `: ${waiting.message}` : ""})`,
      };
    }
    const terminated = main?.state?.terminated;
    if (status?.phase === "Succeeded") {
      return {
        ...base,
        status: "SANDBOX_STATUS_COMPLETED",
        statusReason: "exited with code 0",
        exitCode: terminated?.exitCode ?? 0,
      };
    }
    if (status?.phase === "Failed") {
      const code = terminated?.exitCode ?? 1;
      const why =
        terminated?.reason === "OOMKilled" ? "killed: out of memory" : `exited with code ${code}`;
      return {
        ...base,
        status: "SANDBOX_STATUS_FAILED",
        statusReason: status.message || why,
        exitCode: code,
      };
    }
    const ready = status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
    if (!ready)
      return {
        ...base,
        status: "SANDBOX_STATUS_CREATING",
        statusReason: waiting?.reason ?? status?.phase ?? "",
      };
    const startedAtMs = main?.state?.running?.startedAt
      ? new Date(main.state.running.startedAt).getTime()
      : Date.now();
    const serviceAddress = await this.serviceAddress(t);
    if (t.exposure?.expectsExternalAddress && !serviceAddress) {
      return { ...base, status: "SANDBOX_STATUS_CREATING", statusReason: WAITING_FOR_ADDRESS };
    }
    return {
      ...base,
      status: "SANDBOX_STATUS_RUNNING",
      statusReason: "",
      startedAtMs,
      serviceAddress: serviceAddress ?? "",
    };
  }

  /**
   * Where the sandbox is reached: the Ingress host once it has a load
   * balancer, the Service's external address, or its cluster IP.
   */
  private async serviceAddress(t: Tracked): Promise<string | undefined> {
    const exposure = t.exposure;
    if (!exposure?.serviceType) return undefined;
    type WithStatus = KubernetesObject & {
      spec?: { clusterIP?: string };
      status?: { loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] } };
    };
    const port = exposure.ports[0];
    if (exposure.host && exposure.expectsExternalAddress) {
      const ingress = await this.readOrUndefined<WithStatus>({
        apiVersion: "networking.k8s.io/v1",
        kind: "Ingress",
        metadata: { name: t.podName, namespace: t.namespace },
      });
      return ingress?.status?.loadBalancer?.ingress?.length ? exposure.host : undefined;
    }
    const service = await this.readOrUndefined<WithStatus>({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: t.podName, namespace: t.namespace },
    });
    if (exposure.expectsExternalAddress || exposure.serviceType === "LoadBalancer") {
      const external = service?.status?.loadBalancer?.ingress?.[0];
      const host = external?.ip ?? external?.hostname;
      return host ? `${host}:${port}` : undefined;
    }
    return service?.spec?.clusterIP ? `${service.spec.clusterIP}:${port}` : undefined;
  }

  async stop(
    sandboxId: string,
    gracefulShutdownSeconds: number,
    reason = "stopped",
  ): Promise<void> {
    const t = this.tracked.get(sandboxId);
    if (!t || isTerminal(t.observed.status)) return;
    t.stopReason = reason;
    // Stop deletes the pod, and its log with it: follow it to the end first.
    // The pod watch stays on to see how the container ended.
    const finalLogs = this.followToEnd(t);
    await this.deleteOwned(sandboxId, t.namespace, gracefulShutdownSeconds);
    unwatch(t);
    // The pod is gone, so its log stream ends; give the last bytes a moment, no more.
    const settle = setTimeout(finalLogs.stop, 2_000);
    t.finalLogs = await finalLogs.text;
    clearTimeout(settle);
    const ended = t.lastPod?.status?.containerStatuses?.find((c) => c.name === MAIN_CONTAINER)
      ?.state?.terminated;
    t.observed = {
      ...t.observed,
      status: "SANDBOX_STATUS_TERMINATED",
      statusReason: reason,
      ...(ended ? { exitCode: ended.exitCode } : {}),
    };
    t.onChange(t.observed);
  }

  async remove(sandboxId: string): Promise<void> {
    const t = this.tracked.get(sandboxId);
    if (t) {
      t.stopReason ??= "deleted";
      unwatch(t);
    }
    await this.deleteOwned(sandboxId, t?.namespace, 0);
    this.tracked.delete(sandboxId);
  }

  /** Objects of one kind with the label selector, in `namespace` or in all namespaces. */
  private listLabelled(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    labelSelector: string,
  ) {
    return this.objects.list(
      apiVersion,
      kind,
      namespace,
      undefined,
      undefined,
      undefined,
      undefined,
      labelSelector,
    );
  }

  /** Deletes every object labelled with the sandbox's id, and waits until its pod is gone. */
  private async deleteOwned(
    sandboxId: string,
    namespace: string | undefined,
    graceSeconds: number,
  ): Promise<void> {
    const selector = `${LABEL_SANDBOX}=${sandboxId}`;
    for (const { apiVersion, kind } of OWNED_KINDS) {
      const list = await this.listLabelled(apiVersion, kind, namespace, selector);
      for (const item of list.items) {
        // Items of a list carry no apiVersion and kind of their own.
        await this.objects
          .delete(
            { apiVersion, kind, metadata: item.metadata ?? {} },
            undefined,
            undefined,
            kind === "Pod" ? graceSeconds : undefined,
            undefined,
            "Background",
          )
          .catch((error: unknown) => {
            if (!(error instanceof ApiException && error.code === 404)) throw error;
          });
      }
    }
    const deadline = Date.now() + (graceSeconds + 30) * 1000;
    while (Date.now() < deadline) {
      const pods = await this.listLabelled("v1", "Pod", namespace, selector);
      if (pods.items.length === 0) return;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * After a restart: every sandbox pod Paddock made, adopted (watched again).
   * Objects left by sandboxes without a pod are reported too, so that the
   * control plane can have them removed.
   */
  async observe(): Promise<ObservedSandbox[]> {
    if (this.unavailableReason()) return [];
    const selector = `${LABEL_MANAGED_BY}=${MANAGER},${LABEL_SANDBOX}`;
    const out = new Map<string, ObservedSandbox>();
    for (const { apiVersion, kind } of OWNED_KINDS) {
      const list = await this.listLabelled(apiVersion, kind, undefined, selector);
      for (const item of list.items) {
        const id = item.metadata?.labels?.[LABEL_SANDBOX];
        if (!id || out.has(id)) continue;
        if (kind !== "Pod") {
          out.set(id, {
            ...pendingObserved(id),
            status: "SANDBOX_STATUS_TERMINATED",
            statusReason: "its pod is gone",
          });
          continue;
        }
        const pod = item as V1Pod;
        const t: Tracked = this.tracked.get(id) ?? {
          sandboxId: id,
          namespace: pod.metadata?.namespace ?? "",
          podName: pod.metadata?.name ?? objectName(id),
          observed: {
            ...pendingObserved(id),
            status: "SANDBOX_STATUS_CREATING",
            exposedPorts: exposureOf(pod)?.ports ?? [],
          },
          onChange: () => undefined,
          watch: undefined,
          addressWatch: undefined,
          lastPod: pod,
          exposure: exposureOf(pod),
          stopReason: undefined,
        };
        t.observed = await this.statusOf(t, pod);
        if (!this.tracked.has(id)) {
          this.tracked.set(id, t);
          if (!isTerminal(t.observed.status)) await this.watchPod(t);
        }
        out.set(id, t.observed);
      }
    }
    return [...out.values()];
  }

  /** Adopted sandboxes report through the agent once it knows them. */
  adopt(sandboxId: string, onChange: (o: ObservedSandbox) => void): void {
    const t = this.tracked.get(sandboxId);
    if (t) t.onChange = onChange;
  }

  private running(sandboxId: string): Tracked {
    const t = this.tracked.get(sandboxId);
    if (t?.observed.status !== "SANDBOX_STATUS_RUNNING") {
      throw new AppError("FAILED_PRECONDITION", `sandbox ${sandboxId} is not running`, {
        reason: "SANDBOX_NOT_RUNNING",
      });
    }
    return t;
  }

  async exec(sandboxId: string, request: ExecRequest, signal: AbortSignal): Promise<ExecResult> {
    const t = this.running(sandboxId);
    // The exec API has neither environment nor working directory: `env` (and
    // a shell for `cd`) set them. The exec id in the environment marks every
    // process of this exec, so that a timeout can kill them all: closing the
    // stream does not.
    const execId = randomUUID();
    const assignments = [
      `${EXEC_ID_VARIABLE}=${execId}`,
      ...Object.entries(request.env).map(([k, v]) => `${k}=${v}`),
    ];
    const command = request.workingDir
      ? [
          "/bin/sh",
          "-c",
          'cd "$0" && exec env "$@"',
          request.workingDir,
          ...assignments,
          ...request.command,
        ]
      : ["env", ...assignments, ...request.command];
    const { failure, ...result } = await this.run(
      t,
      command,
      request.stdin,
      request.maxOutputBytes,
      request.timeoutMs,
      signal,
      execId,
    );
    // The runtime's own refusal (no such executable, container gone) has no
    // stderr of its own; without it the caller would see a bare exit code 1.
    if (failure && result.stderr.length === 0) result.stderr = Buffer.from(`${failure}\n`);
    return result;
  }

  private async run(
    t: Tracked,
    command: string[],
    stdin: Buffer,
    maxOutputBytes: number,
    timeoutMs: number,
    signal: AbortSignal,
    execId?: string,
  ): Promise<ExecResult & { failure?: string }> {
    const stdout = new CappedSink(maxOutputBytes);
    const stderr = new CappedSink(maxOutputBytes);
    // Before Kubernetes 1.29 the exec protocol cannot half-close stdin (the
    // client closes the whole socket instead, losing output and exit code):
    // so the input stream stays open and `head -c` hands the command its EOF.
    const input = new PassThrough();
    if (stdin.length > 0) {
      command = ["/bin/sh", "-c", 'head -c "$0" | "$@"', String(stdin.length), ...command];
      // One WebSocket message per chunk: the kubelet refuses messages of 32 MiB and more.
      for (let at = 0; at < stdin.length; at += STDIN_CHUNK_BYTES)
        input.write(stdin.subarray(at, at + STDIN_CHUNK_BYTES));
    }
    let status: V1Status | undefined;
    const ws = await new Exec(this.kc).exec(
      t.namespace,
      t.podName,
      MAIN_CONTAINER,
      command,
      stdout,
      stderr,
      stdin.length > 0 ? input : null,
      false,
      (s) => {
        status = s;
      },
    );
    let timedOut = false;
    let aborted = false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timedOut = true;
        ws.close();
      }, timeoutMs);
      const abort = () => {
        aborted = true;
        ws.close();
      };
      signal.addEventListener("abort", abort, { once: true });
      ws.on("close", () => {
        input.end();
        clearTimeout(timer);
        signal.removeEventListener("abort", abort);
        resolve();
      });
    });
    if ((timedOut || aborted) && execId) await this.killExec(t, execId);
    if (timedOut) {
      throw new AppError("DEADLINE_EXCEEDED", `command did not finish within ${timeoutMs} ms`, {
        reason: "COMMAND_TIMEOUT",
      });
    }
    const exitCode = exitCodeOf(status);
    return {
      stdout: stdout.value(),
      stderr: stderr.value(),
      exitCode,
      stdoutTruncated: stdout.truncated,
      stderrTruncated: stderr.truncated,
      ...(exitCode !== 0 && status?.message ? { failure: status.message } : {}),
    };
  }

  /** Kills every process that carries the exec's id in its environment. */
  private async killExec(t: Tracked, execId: string): Promise<void> {
    const script = `for p in /proc/[0-9]*; do if tr '\\0' '\\n' < "$p/environ" 2>/dev/null | grep -qx "${EXEC_ID_VARIABLE}=$0"; then kill -9 "\${p#/proc/}" 2>/dev/null; fi; done; true`;
    await this.run(
      t,
      ["/bin/sh", "-c", script, execId],
      Buffer.alloc(0),
      4096,
      30_000,
      new AbortController().signal,
    ).catch((error: unknown) =>
      this.logger.warn({ err: error, sandboxId: t.sandboxId }, "could not kill a timed-out exec"),
    );
  }

  async readFile(
    sandboxId: string,
    path: string,
    maxBytes: number,
    signal: AbortSignal,
  ): Promise<Buffer> {
    const t = this.running(sandboxId);
    const script =
      'if [ ! -e "$0" ]; then echo ENOENT >&2; exit 2; fi; if [ -d "$0" ]; then echo EISDIR >&2; exit 3; fi; head -c "$1" "$0"';
    const r = await this.run(
      t,
      ["/bin/sh", "-c", script, path, String(maxBytes + 1)],
      Buffer.alloc(0),
      maxBytes + 1,
      60_000,
      signal,
    );
    if (r.exitCode === 2)
      throw new AppError("NOT_FOUND", `file ${path} not found in the sandbox`, {
        reason: "FILE_NOT_FOUND",
        metadata: { path },
      });
    if (r.exitCode === 3)
      throw new AppError("INVALID_ARGUMENT", `${path} is a directory`, {
        reason: "IS_A_DIRECTORY",
      });
    if (r.exitCode !== 0)
      throw new AppError("INTERNAL", `reading ${path}: ${r.stderr.toString().trim()}`, {
        reason: "FILE_IO",
      });
    if (r.stdout.length > maxBytes) {
      throw new AppError("INVALID_ARGUMENT", `file ${path} is larger than ${maxBytes} bytes`, {
        reason: "FILE_TOO_LARGE",
        metadata: { path },
      });
    }
    return r.stdout;
  }

  async writeFile(
    sandboxId: string,
    path: string,
    content: Buffer,
    signal: AbortSignal,
  ): Promise<void> {
    const t = this.running(sandboxId);
    // The file appears whole, by a rename, which is also the last thing the
    // writer does. A write that makes the sandbox's main process end (it waits
    // for the file) gets the writer SIGKILLed with the container, right after
    // the rename and before any exit status: so the marker is sent before the
    // rename, and "marker, then killed" counts as written. A rename that fails
    // on its own exits 1 with its reason.
    const script = `if [ -d "$0" ]; then echo "$0 is a directory" >&2; exit 3; fi
mkdir -p "$(dirname "$0")" || exit 1
part="$0.paddock-part-$$"
cat > "$part" || { rm -f "$part"; exit 1; }
echo ${WRITE_STAGED_MARKER}
mv -f "$part" "$0" || { rm -f "$part"; exit 1; }`;
    const r = await this.run(
      t,
      ["/bin/sh", "-c", script, path],
      content,
      64 * 1024,
      120_000,
      signal,
    );
    const staged = r.stdout.toString() === `${WRITE_STAGED_MARKER}\n`;
    if (staged && (r.exitCode === 0 || r.exitCode === KILLED_EXIT_CODE)) return;
    throw new AppError(
      "INTERNAL",
      `writing ${path}: ${r.stderr.toString().trim() || r.failure || `exit code ${r.exitCode}`}`,
      { reason: "FILE_IO" },
    );
  }

  /** The pod's whole log, timestamped, as it ends (its last FINAL_LOG_BYTES). */
  private followToEnd(t: Tracked): { text: Promise<string>; stop: () => void } {
    const stopped = new AbortController();
    return { text: this.followUntil(t, stopped.signal), stop: () => stopped.abort() };
  }

  private async followUntil(t: Tracked, stop: AbortSignal): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(Buffer.from(chunk));
        size += chunk.length;
        while (size > FINAL_LOG_BYTES && chunks.length > 1) size -= chunks.shift()?.length ?? 0;
        callback();
      },
    });
    const done = new Promise<void>((resolve) => {
      sink.on("finish", () => resolve());
      sink.on("error", () => resolve());
    });
    try {
      const stream = await new Log(this.kc).log(t.namespace, t.podName, MAIN_CONTAINER, sink, {
        follow: true,
        timestamps: true,
      });
      const abort = () => {
        stream.abort();
        sink.end();
      };
      if (stop.aborted) abort();
      else stop.addEventListener("abort", abort, { once: true });
      await done;
    } catch {
      // No pod, or no container yet: nothing was logged.
    }
    return Buffer.concat(chunks).toString();
  }

  async logs(
    sandboxId: string,
    request: LogRequest,
    onData: (chunk: Buffer) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const t = this.tracked.get(sandboxId);
    if (!t) return;
    if (t.finalLogs !== undefined) {
      const text = selectLogLines(t.finalLogs, request);
      if (text) onData(Buffer.from(text));
      return;
    }
    // The client drops tailLines=0 as unset; since now is the same for a follow.
    if (request.tailLines === 0 && !request.follow) return;
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        onData(Buffer.from(chunk));
        callback();
      },
    });
    const done = new Promise<void>((resolve) => sink.on("finish", () => resolve()));
    const controller = await new Log(this.kc).log(t.namespace, t.podName, MAIN_CONTAINER, sink, {
      follow: request.follow,
      timestamps: request.timestamps,
      ...(request.tailLines === 0
        ? { sinceTime: new Date().toISOString() }
        : request.tailLines !== undefined
          ? { tailLines: request.tailLines }
          : {}),
    });
    signal.addEventListener("abort", () => controller.abort(), { once: true });
    await done;
  }

  async interactive(
    sandboxId: string,
    command: string[],
    env: Record<string, string>,
    tty: boolean,
  ): Promise<InteractiveSession> {
    const t = this.running(sandboxId);
    const assignments = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    if (assignments.length > 0) command = ["env", ...assignments, ...command];
    const input = new PassThrough();
    const listeners: ((data: Buffer) => void)[] = [];
    const output = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const l of listeners) l(Buffer.from(chunk));
        callback();
      },
    });
    let status: V1Status | undefined;
    const ws = await new Exec(this.kc).exec(
      t.namespace,
      t.podName,
      MAIN_CONTAINER,
      command,
      output,
      output,
      input,
      tty,
      (s) => {
        status = s;
      },
    );
    const exited = new Promise<number>((resolve) =>
      ws.on("close", () => resolve(exitCodeOf(status))),
    );
    return {
      write: (data) => input.write(data),
      closeStdin: () => input.end(),
      // Channel 4 of the exec protocol carries terminal size as JSON.
      resize: (rows, cols) => {
        if (ws.readyState === ws.OPEN)
          ws.send(
            Buffer.concat([
              Buffer.from([4]),
              Buffer.from(JSON.stringify({ Width: cols, Height: rows })),
            ]),
          );
      },
      onOutput: (l) => listeners.push(l),
      exited,
      kill: () => ws.close(),
    };
  }

  /** Removes every sandbox this agent knows of, with all its objects. */
  async shutdownAll(): Promise<void> {
    for (const id of [...this.tracked.keys()]) await this.remove(id);
  }

  async close(): Promise<void> {
    // Sandboxes on a cluster outlive their runner: only the watches end.
    for (const t of this.tracked.values()) unwatch(t);
    this.namespaceWatch?.abort();
    this.namespaceWatch = undefined;
    this.httpsAgent.destroy();
    this.httpAgent.destroy();
  }
}

const EXEC_ID_VARIABLE = "PADDOCK_EXEC_ID";
/** How long a namespace or runtime class found fit is trusted without asking again. */
const REMEMBER_CHECKS_MS = 60_000;
const STDIN_CHUNK_BYTES = 1024 * 1024;
const WRITE_STAGED_MARKER = "paddock-write-staged";
/** 128 + SIGKILL: how a shell reports a process killed with its container. */
const KILLED_EXIT_CODE = 137;
const FINAL_LOG_BYTES = 8 * 1024 * 1024;

/** A `timestamps=true` log with the request's tail applied, timestamps kept only if asked. */
export function selectLogLines(
  stamped: string,
  request: Pick<LogRequest, "tailLines" | "timestamps">,
): string {
  const lines = stamped.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const picked =
    request.tailLines === undefined
      ? lines
      : request.tailLines === 0
        ? []
        : lines.slice(-request.tailLines);
  return picked
    .map((line) => `${request.timestamps ? line : line.slice(line.indexOf(" ") + 1)}\n`)
    .join("");
}
const WAITING_FOR_ADDRESS = "waiting for the service's external address";

/** The exec API's final status: Success, or Failure with an ExitCode cause. */
export function exitCodeOf(status: V1Status | undefined): number {
  if (!status || status.status === "Success") return 0;
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  return cause?.message ? Number(cause.message) : 1;
}

function describe(error: unknown): string {
  if (error instanceof ApiException) {
    const body = error.body as { message?: string } | string;
    return `HTTP ${error.code}: ${typeof body === "string" ? body.slice(0, 300) : (body?.message ?? "")}`;
  }
  return (error as Error).message ?? String(error);
}

/** A Writable over CappedBuffer: exec output with its per-stream cap. */
class CappedSink extends Writable {
  private readonly buffer: CappedBuffer;
  constructor(cap: number) {
    super();
    this.buffer = new CappedBuffer(cap);
  }
  get truncated(): boolean {
    return this.buffer.truncated;
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.buffer.push(chunk);
    callback();
  }
  value(): Buffer {
    return this.buffer.value();
  }
}
