import type { Logger } from "pino";
import {
  type Backend,
  failedObserved,
  type InteractiveSession,
  type ObservedSandbox,
  pendingObserved,
  type SandboxAssignment,
} from "../backends/backend.js";
import { AppError } from "../errors.js";
import type { LaunchSpec } from "../sandboxes/sandbox.js";
import { isTerminal } from "../sandboxes/sandbox.js";
import { VERSION } from "../version.js";
import type {
  AgentMessage,
  AgentRequest,
  ControlMessage,
  Link,
  WireAssignment,
  WireError,
} from "./protocol.js";

export const HEARTBEAT_MS = 5_000;

/** A start that takes longer than this shows CREATING until it runs. */
const CREATING_REPORT_DELAY_MS = 100;

interface RequestEntry {
  abort: AbortController;
  session?: InteractiveSession;
  early: ControlMessage[];
}

/**
 * The runner agent: converges its backend on the sandboxes the control
 * plane assigns, reports what it observes, and serves exec, files and logs.
 * One queue per sandbox keeps start, stop and delete in order.
 */
export class RunnerAgent {
  private link: Link<AgentMessage, ControlMessage> | undefined;
  private readonly queues = new Map<string, Promise<void>>();
  private readonly known = new Map<string, ObservedSandbox>();
  private readonly lifetimes = new Map<string, NodeJS.Timeout>();
  private readonly requests = new Map<number, RequestEntry>();
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly backend: Backend,
    private readonly logger: Logger,
  ) {}

  /** Serves one connection until it closes. */
  async attach(link: Link<AgentMessage, ControlMessage>): Promise<void> {
    this.link = link;
    link.onMessage((m) => this.onMessage(m));
    link.onClose(() => {
      if (this.link === link) this.link = undefined;
      if (this.heartbeat) clearInterval(this.heartbeat);
      for (const r of this.requests.values()) {
        r.abort.abort();
        r.session?.kill();
      }
      this.requests.clear();
    });
    const observed = await this.backend.observe();
    for (const o of observed) this.known.set(o.sandboxId, o);
    const unavailableReason = this.backend.unavailableReason();
    link.send({
      type: "hello",
      backend: this.backend.kind,
      agentVersion: VERSION,
      ...(unavailableReason ? { unavailableReason } : {}),
      observed,
    });
    this.heartbeat = setInterval(() => {
      const warmPools = this.backend.warmPoolStats?.();
      this.link?.send({ type: "heartbeat", ...(warmPools ? { warmPools } : {}) });
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  private send(message: AgentMessage): void {
    this.link?.send(message);
  }

  private report(observed: ObservedSandbox): void {
    this.known.set(observed.sandboxId, observed);
    this.send({ type: "status", observed });
  }

  private onMessage(message: ControlMessage): void {
    switch (message.type) {
      case "sync":
        for (const a of message.assignments) this.enqueue(a);
        return;
      case "assign":
        this.enqueue(message.assignment);
        return;
      case "warmPools":
        this.backend.setWarmPools?.(
          message.pools.map((p) => ({ ...p, spec: p.spec as unknown as LaunchSpec })),
        );
        return;
      case "request":
        void this.serve(message.id, message.request);
        return;
      case "input":
      case "closeInput":
      case "resize": {
        const entry = this.requests.get(message.id);
        if (!entry) return;
        // Before the session exists, keep what arrives; it is replayed once it does.
        if (!entry.session) {
          entry.early.push(message);
          return;
        }
        if (message.type === "input") entry.session.write(Buffer.from(message.data, "base64"));
        else if (message.type === "closeInput") entry.session.closeStdin();
        else entry.session.resize(message.rows, message.cols);
        return;
      }
      case "cancel": {
        const r = this.requests.get(message.id);
        r?.abort.abort();
        r?.session?.kill();
        return;
      }
    }
  }

  private enqueue(assignment: WireAssignment): void {
    const id = assignment.sandboxId;
    const previous = this.queues.get(id) ?? Promise.resolve();
    const next = previous
      .then(() => this.reconcile(assignment))
      .catch((error: unknown) =>
        this.logger.error({ err: error, sandboxId: id }, "reconcile failed"),
      );
    this.queues.set(id, next);
    void next.then(() => {
      if (this.queues.get(id) === next) this.queues.delete(id);
    });
  }

  private async reconcile(a: WireAssignment): Promise<void> {
    const known = this.known.get(a.sandboxId);
    if (a.desired === "deleted") {
      this.clearLifetime(a.sandboxId);
      await this.backend.remove(a.sandboxId);
      this.known.delete(a.sandboxId);
      this.send({ type: "removed", sandboxId: a.sandboxId });
      return;
    }
    if (a.desired === "stopped") {
      this.clearLifetime(a.sandboxId);
      if (known && !isTerminal(known.status))
        await this.backend.stop(a.sandboxId, a.gracefulShutdownSeconds);
      const after = this.known.get(a.sandboxId);
      if (!after || !isTerminal(after.status))
        this.report(stoppedState(a.sandboxId, after, "stopped"));
      return;
    }
    if (known) {
      // Already handled: tell the control plane where it stands (it may have missed reports).
      this.send({ type: "status", observed: known });
      if (!isTerminal(known.status)) {
        this.backend.adopt?.(a.sandboxId, (o) => this.report(o));
        this.armLifetime(a);
      }
      return;
    }
    if (
      a.recordedStatus !== "SANDBOX_STATUS_PENDING" &&
      a.recordedStatus !== "SANDBOX_STATUS_CREATING"
    ) {
      if (!isTerminal(a.recordedStatus)) {
        this.report(
          failedObserved(
            a.sandboxId,
            "the runner lost this sandbox (it restarted while the sandbox ran)",
          ),
        );
      }
      return;
    }
    const assignment: SandboxAssignment = { ...a, spec: a.spec as unknown as LaunchSpec };
    // Known at once, reported only if the start takes a while: a fast start
    // goes from PENDING to RUNNING in one write of the control plane's store.
    const creating: ObservedSandbox = {
      ...pendingObserved(a.sandboxId),
      status: "SANDBOX_STATUS_CREATING",
    };
    this.known.set(a.sandboxId, creating);
    const slow = setTimeout(() => {
      if (this.known.get(a.sandboxId) === creating)
        this.send({ type: "status", observed: creating });
    }, CREATING_REPORT_DELAY_MS);
    const startedAt = performance.now();
    let observed: ObservedSandbox;
    try {
      observed = await this.backend.start(assignment, (o) => this.report(o));
    } finally {
      clearTimeout(slow);
    }
    this.logger.debug(
      {
        sandboxId: a.sandboxId,
        status: observed.status,
        startMs: Math.round(performance.now() - startedAt),
      },
      "sandbox started",
    );
    // A fast command may have finished already and been reported; keep the later state.
    const latest = this.known.get(a.sandboxId);
    if (!latest || !isTerminal(latest.status) || isTerminal(observed.status)) this.report(observed);
    if (!isTerminal(observed.status)) this.armLifetime(a);
  }

  private armLifetime(a: WireAssignment): void {
    if (this.lifetimes.has(a.sandboxId)) return;
    const delay = Math.max(0, a.expiresAtMs - Date.now());
    const timer = setTimeout(
      () => {
        this.lifetimes.delete(a.sandboxId);
        this.enqueueExpiry(a);
      },
      Math.min(delay, 2 ** 31 - 1),
    );
    timer.unref();
    this.lifetimes.set(a.sandboxId, timer);
  }

  private enqueueExpiry(a: WireAssignment): void {
    const id = a.sandboxId;
    const previous = this.queues.get(id) ?? Promise.resolve();
    const next = previous.then(async () => {
      const known = this.known.get(id);
      if (!known || isTerminal(known.status)) return;
      const reason = `maximum lifetime reached (${a.spec.maxLifetimeSeconds ?? "?"} s)`;
      await this.backend.stop(id, a.gracefulShutdownSeconds, reason);
      const after = this.known.get(id);
      if (!after || !isTerminal(after.status)) this.report(stoppedState(id, after, reason));
    });
    this.queues.set(
      id,
      next.catch(() => undefined),
    );
  }

  private clearLifetime(id: string): void {
    const timer = this.lifetimes.get(id);
    if (timer) clearTimeout(timer);
    this.lifetimes.delete(id);
  }

  private async serve(id: number, request: AgentRequest): Promise<void> {
    const abort = new AbortController();
    const entry: RequestEntry = { abort, early: [] };
    this.requests.set(id, entry);
    try {
      const result = await this.perform(id, request, entry);
      this.send({ type: "reply", id, result });
    } catch (error) {
      this.send({ type: "reply", id, error: toWireError(error) });
    } finally {
      this.requests.delete(id);
    }
  }

  private async perform(id: number, request: AgentRequest, entry: RequestEntry): Promise<unknown> {
    const signal = entry.abort.signal;
    switch (request.op) {
      case "exec": {
        const r = await this.backend.exec(
          request.sandboxId,
          {
            command: request.command,
            stdin: Buffer.from(request.stdin, "base64"),
            env: request.env,
            workingDir: request.workingDir,
            timeoutMs: request.timeoutMs,
            maxOutputBytes: request.maxOutputBytes,
          },
          signal,
        );
        return {
          stdout: r.stdout.toString("base64"),
          stderr: r.stderr.toString("base64"),
          exitCode: r.exitCode,
          stdoutTruncated: r.stdoutTruncated,
          stderrTruncated: r.stderrTruncated,
        };
      }
      case "readFile":
        return {
          content: (
            await this.backend.readFile(request.sandboxId, request.path, request.maxBytes, signal)
          ).toString("base64"),
        };
      case "writeFile":
        await this.backend.writeFile(
          request.sandboxId,
          request.path,
          Buffer.from(request.content, "base64"),
          signal,
        );
        return {};
      case "logs":
        await this.backend.logs(
          request.sandboxId,
          { follow: request.follow, tailLines: request.tailLines, timestamps: request.timestamps },
          (chunk) => this.send({ type: "chunk", id, data: chunk.toString("base64") }),
          signal,
        );
        return {};
      case "interactive": {
        const session = await this.backend.interactive(
          request.sandboxId,
          request.command,
          request.env,
          request.tty,
        );
        entry.session = session;
        for (const m of entry.early.splice(0)) this.onMessage(m);
        session.onOutput((data) => this.send({ type: "chunk", id, data: data.toString("base64") }));
        return { exitCode: await session.exited };
      }
    }
  }
}

function stoppedState(
  sandboxId: string,
  known: ObservedSandbox | undefined,
  reason: string,
): ObservedSandbox {
  return {
    ...(known ?? pendingObserved(sandboxId)),
    status: "SANDBOX_STATUS_TERMINATED",
    statusReason: reason,
  };
}

export function toWireError(error: unknown): WireError {
  if (error instanceof AppError) {
    return {
      code: error.code,
      message: error.message,
      ...(error.reason ? { reason: error.reason } : {}),
      metadata: error.metadata,
    };
  }
  return { code: "INTERNAL", message: (error as Error).message ?? String(error) };
}
