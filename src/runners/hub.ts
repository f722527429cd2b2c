import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { ObservedSandbox, WarmPoolStats } from "../backends/backend.js";
import type { Clock } from "../clock.js";
import { AppError, type ErrorCode } from "../errors.js";
import { ProfileRepo } from "../profiles/profile-repo.js";
import { isTerminal, nextStatus, type Sandbox } from "../sandboxes/sandbox.js";
import { type Observation, SandboxRepo } from "../sandboxes/sandbox-repo.js";
import type { Db } from "../store/database.js";
import type {
  AgentMessage,
  AgentRequest,
  ControlMessage,
  Link,
  WireAssignment,
} from "./protocol.js";
import { RunnerRepo } from "./runner-repo.js";
import { warmPoolsFor } from "./warm-pools.js";

interface Pending {
  resolve(result: unknown): void;
  reject(error: AppError): void;
  onChunk?: ((data: Buffer) => void) | undefined;
}

interface Connection {
  link: Link<ControlMessage, AgentMessage>;
  organizationId: string;
  runnerId: string;
  pending: Map<number, Pending>;
  /** The warm pools last sent, as JSON, so that unchanged ones are not sent again. */
  warmPoolsSent: string;
  warmPoolStats: WarmPoolStats[];
  /** Messages not yet handled, in the order they came; CLOSED once the link is. */
  inbox: (AgentMessage | typeof CLOSED)[];
  draining: boolean;
}

const CLOSED = Symbol("closed");

export interface RequestHandle {
  result: Promise<unknown>;
  input(data: Buffer): void;
  closeInput(): void;
  resize(rows: number, cols: number): void;
  cancel(): void;
}

const key = (organizationId: string, runnerId: string) => `${organizationId}/${runnerId}`;
/** How often a wait reads the record it waits on, should a change not have woken it. */
const SAFETY_READ_MS = 5_000;
/** How long a call waits for its runner to (re)connect before failing UNAVAILABLE. */
const RECONNECT_GRACE_MS = 5_000;

/**
 * The control plane's side of runner connections: hands each agent its
 * sandboxes, records what agents report, and relays exec, files and logs
 * to the runner that owns a sandbox.
 */
export class RunnerHub {
  private readonly connections = new Map<string, Connection>();
  private readonly unavailable = new Map<string, string>();
  private readonly events = new EventEmitter();
  private readonly inFlight = new Set<Promise<void>>();
  private nextId = 1;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {
    this.events.setMaxListeners(0);
  }

  /** Serves an authenticated agent's connection. */
  attach(link: Link<ControlMessage, AgentMessage>, organizationId: string, runnerId: string): void {
    const connection: Connection = {
      link,
      organizationId,
      runnerId,
      pending: new Map(),
      warmPoolsSent: "",
      warmPoolStats: [],
      inbox: [],
      draining: false,
    };
    link.onMessage((message) => {
      connection.inbox.push(message);
      this.drain(connection);
    });
    link.onClose(() => {
      connection.inbox.push(CLOSED);
      this.drain(connection);
    });
  }

  /**
   * Handles a connection's messages one at a time, so that reports of one
   * sandbox stay in order. Status reports that queued up meanwhile (a burst
   * of starts) are recorded together, in one write.
   */
  private drain(c: Connection): void {
    if (c.draining) return;
    c.draining = true;
    const work = (async () => {
      // After the rest of what arrived with the first message: statuses sent together are written together.
      await new Promise((resolve) => setImmediate(resolve));
      while (c.inbox.length > 0) {
        let statuses = 0;
        while ((c.inbox[statuses] as AgentMessage | undefined)?.type === "status") statuses++;
        if (statuses > 0) {
          const batch = c.inbox.splice(0, statuses) as Extract<AgentMessage, { type: "status" }>[];
          await this.record(
            c,
            batch.map((m) => m.observed),
          ).catch((error: unknown) =>
            this.logger.error({ err: error, runnerId: c.runnerId }, "recording statuses failed"),
          );
          continue;
        }
        const message = c.inbox.shift() as AgentMessage | typeof CLOSED;
        if (message === CLOSED) {
          await this.detach(c).catch((error: unknown) =>
            this.logger.error(
              { err: error, runnerId: c.runnerId },
              "recording the disconnect failed",
            ),
          );
        } else {
          await this.onMessage(c, message).catch((error: unknown) =>
            this.logger.error({ err: error, runnerId: c.runnerId }, "runner message failed"),
          );
        }
      }
    })();
    this.inFlight.add(work);
    void work.then(() => {
      this.inFlight.delete(work);
      c.draining = false;
      if (c.inbox.length > 0) this.drain(c);
    });
  }

  private async detach(connection: Connection): Promise<void> {
    const k = key(connection.organizationId, connection.runnerId);
    if (this.connections.get(k) === connection) {
      this.connections.delete(k);
      await new RunnerRepo(this.db).setConnection(connection.organizationId, connection.runnerId, {
        connectionStatus: "DISCONNECTED",
      });
      this.logger.info({ runnerId: connection.runnerId }, "runner disconnected");
    }
    for (const p of connection.pending.values()) {
      p.reject(
        new AppError("UNAVAILABLE", `runner '${connection.runnerId}' disconnected`, {
          reason: "RUNNER_UNAVAILABLE",
        }),
      );
    }
    connection.pending.clear();
  }

  /** Resolves once every message received so far has been recorded. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** Resolves once the runner has said hello (connected, or unavailable and why), or at the timeout. */
  async waitForHello(organizationId: string, runnerId: string, timeoutMs: number): Promise<void> {
    const k = key(organizationId, runnerId);
    for (let waited = 0; waited < timeoutMs; waited += 20) {
      if (this.connections.has(k) || this.unavailable.has(k)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  isConnected(organizationId: string, runnerId: string): boolean {
    return this.connections.has(key(organizationId, runnerId));
  }

  unavailableReason(organizationId: string, runnerId: string): string | undefined {
    return this.unavailable.get(key(organizationId, runnerId));
  }

  private async onMessage(c: Connection, m: AgentMessage): Promise<void> {
    switch (m.type) {
      case "hello":
        return this.onHello(c, m);
      case "heartbeat":
        await new RunnerRepo(this.db).setConnection(c.organizationId, c.runnerId, {
          lastHeartbeatAt: this.clock.now(),
        });
        if (m.warmPools) c.warmPoolStats = m.warmPools;
        // Also catches binding and profile changes made through another replica.
        await this.sendWarmPools(c);
        return;
      case "status":
        // Recorded in groups by drain().
        return;
      case "removed": {
        const repo = new SandboxRepo(this.db);
        const sandbox = await repo.get(c.organizationId, m.sandboxId);
        if (sandbox?.desired === "deleted") {
          await repo.delete(c.organizationId, m.sandboxId);
          this.events.emit(m.sandboxId, "removed");
        }
        return;
      }
      case "reply": {
        const p = c.pending.get(m.id);
        if (!p) return;
        c.pending.delete(m.id);
        if (m.error) {
          p.reject(
            new AppError(m.error.code as ErrorCode, m.error.message, {
              ...(m.error.reason ? { reason: m.error.reason } : {}),
              metadata: m.error.metadata ?? {},
            }),
          );
        } else p.resolve(m.result);
        return;
      }
      case "chunk":
        c.pending.get(m.id)?.onChunk?.(Buffer.from(m.data, "base64"));
        return;
    }
  }

  private async onHello(c: Connection, m: Extract<AgentMessage, { type: "hello" }>): Promise<void> {
    const k = key(c.organizationId, c.runnerId);
    const runners = new RunnerRepo(this.db);
    if (m.unavailableReason) {
      this.unavailable.set(k, m.unavailableReason);
      this.logger.warn(
        { runnerId: c.runnerId, reason: m.unavailableReason },
        "runner connected but cannot run sandboxes",
      );
      return;
    }
    this.unavailable.delete(k);
    const previous = this.connections.get(k);
    if (previous && previous !== c) previous.link.close();
    this.connections.set(k, c);
    const now = this.clock.now();
    await runners.setConnection(c.organizationId, c.runnerId, {
      connectionStatus: "CONNECTED",
      lastHeartbeatAt: now,
      backend: m.backend,
      agentVersion: m.agentVersion,
    });
    this.logger.info({ runnerId: c.runnerId, backend: m.backend }, "runner connected");
    const repo = new SandboxRepo(this.db);
    const records = new Map(
      (await repo.forRunner(c.organizationId, c.runnerId)).map((s) => [s.sandboxId, s]),
    );
    for (const o of m.observed) {
      const record = records.get(o.sandboxId);
      // Gone from the store while the runner was away: the runner cleans up.
      if (!record) c.link.send({ type: "assign", assignment: orphan(o.sandboxId, c) });
      else records.set(o.sandboxId, await this.apply(repo, record, o));
    }
    c.link.send({ type: "sync", assignments: [...records.values()].map(toAssignment) });
    await this.sendWarmPools(c);
  }

  /** After a runner's bindings or a profile changed: connected runners get their pools anew. */
  async refreshWarmPools(organizationId: string): Promise<void> {
    for (const c of this.connections.values()) {
      if (c.organizationId !== organizationId) continue;
      await this.sendWarmPools(c).catch((error: unknown) =>
        this.logger.error({ err: error, runnerId: c.runnerId }, "sending warm pools failed"),
      );
    }
  }

  /** How every connected runner's warm pools stand, as last reported. */
  warmPoolStats(): { organizationId: string; runnerId: string; pools: WarmPoolStats[] }[] {
    return [...this.connections.values()].map((c) => ({
      organizationId: c.organizationId,
      runnerId: c.runnerId,
      pools: c.warmPoolStats,
    }));
  }

  private async sendWarmPools(c: Connection): Promise<void> {
    const runner = (await new RunnerRepo(this.db).all(c.organizationId)).find(
      (r) => r.runnerId === c.runnerId,
    );
    if (!runner) return;
    const profiles = await new ProfileRepo(this.db).getMany(
      c.organizationId,
      runner.bindings.filter((b) => b.warmPoolSize).map((b) => b.profileTemplateId),
    );
    const pools = warmPoolsFor(runner, new Map(profiles.map((p) => [p.id, p])));
    const text = JSON.stringify(pools);
    if (text === c.warmPoolsSent) return;
    c.warmPoolsSent = text;
    c.link.send({
      type: "warmPools",
      pools: pools.map((p) => ({ ...p, spec: p.spec as unknown as Record<string, unknown> })),
    });
  }

  private async record(c: Connection, reports: ObservedSandbox[]): Promise<void> {
    const now = this.clock.now();
    const updated = await new SandboxRepo(this.db).recordObserved(
      c.organizationId,
      latestReports(reports).map((o) => observation(o, now)),
    );
    for (const [sandboxId, sandbox] of updated) this.events.emit(sandboxId, sandbox);
  }

  private async apply(repo: SandboxRepo, record: Sandbox, o: ObservedSandbox): Promise<Sandbox> {
    if (isTerminal(record.status)) return record;
    const updated = (
      await repo.recordObserved(record.organizationId, [
        {
          ...observation(o, this.clock.now()),
          status: nextStatus(record.status, o.status),
        },
      ])
    ).get(record.sandboxId);
    if (!updated) return record;
    this.events.emit(record.sandboxId, updated);
    return updated;
  }

  /**
   * After a write of the sandbox's record: tells the owning agent about its
   * desired state, if it is connected, and wakes whoever waits on it here.
   */
  push(sandbox: Sandbox): void {
    this.connections
      .get(key(sandbox.organizationId, sandbox.runnerId))
      ?.link.send({ type: "assign", assignment: toAssignment(sandbox) });
    this.events.emit(sandbox.sandboxId, sandbox);
  }

  /** After the sandbox's record was deleted outright (it never reached a runner). */
  gone(sandboxId: string): void {
    this.events.emit(sandboxId, "removed");
  }

  /**
   * Resolves once `done(sandbox)` holds (undefined once the record is gone),
   * or at the timeout. `written`: the record as the caller just wrote it,
   * which saves reading it back (it must not await between the write and this call).
   */
  async waitFor(
    organizationId: string,
    sandboxId: string,
    done: (s: Sandbox | undefined) => boolean,
    timeoutMs: number,
    written?: Sandbox,
  ): Promise<Sandbox | undefined> {
    const repo = new SandboxRepo(this.db);
    const deadline = Date.now() + timeoutMs;
    let current = written ?? (await repo.get(organizationId, sandboxId));
    for (;;) {
      if (done(current)) return current;
      const left = deadline - Date.now();
      if (left <= 0) return current;
      // Woken by every write of the record this process makes (which carries the record, or
      // nothing once it is removed). It is the store's only writer, so the rare read is a
      // safety net only: frequent ones cost a burst of starts a read per waiter and period.
      current = await new Promise<Sandbox | undefined>((resolve) => {
        const finish = (reported?: Sandbox | "removed") => {
          clearTimeout(timer);
          this.events.off(sandboxId, finish);
          if (reported === "removed") resolve(undefined);
          else if (reported) resolve(reported);
          else resolve(repo.get(organizationId, sandboxId));
        };
        const timer = setTimeout(finish, Math.min(left, SAFETY_READ_MS));
        this.events.on(sandboxId, finish);
      });
    }
  }

  /**
   * Sends a request to the runner that owns a sandbox. A runner that is
   * reconnecting (say, after a control-plane restart) gets a few seconds to
   * come back before the call fails.
   */
  request(
    organizationId: string,
    runnerId: string,
    request: AgentRequest,
    onChunk?: (data: Buffer) => void,
  ): RequestHandle {
    let connection: Connection | undefined;
    let id = 0;
    // Input sent before the runner's connection is known waits, in order, for it.
    const queued: ((id: number) => ControlMessage)[] = [];
    const send = (message: (id: number) => ControlMessage) => {
      if (connection) connection.link.send(message(id));
      else queued.push(message);
    };
    const result = this.connection(organizationId, runnerId).then(
      (c) =>
        new Promise<unknown>((resolve, reject) => {
          id = this.nextId++;
          c.pending.set(id, { resolve, reject, onChunk });
          c.link.send({ type: "request", id, request });
          connection = c;
          for (const m of queued.splice(0)) send(m);
        }),
    );
    return {
      result,
      input: (data) => send((i) => ({ type: "input", id: i, data: data.toString("base64") })),
      closeInput: () => send((i) => ({ type: "closeInput", id: i })),
      resize: (rows, cols) => send((i) => ({ type: "resize", id: i, rows, cols })),
      cancel: () => send((i) => ({ type: "cancel", id: i })),
    };
  }

  private async connection(organizationId: string, runnerId: string): Promise<Connection> {
    const k = key(organizationId, runnerId);
    for (let waited = 0; waited < RECONNECT_GRACE_MS; waited += 50) {
      const c = this.connections.get(k);
      if (c) return c;
      await new Promise((r) => setTimeout(r, 50));
    }
    const c = this.connections.get(k);
    if (c) return c;
    const reason = this.unavailable.get(k);
    throw new AppError(
      "UNAVAILABLE",
      `runner '${runnerId}' is not connected${reason ? `: ${reason}` : ""}`,
      {
        reason: "RUNNER_UNAVAILABLE",
      },
    );
  }
}

function toAssignment(s: Sandbox): WireAssignment {
  return {
    sandboxId: s.sandboxId,
    organizationId: s.organizationId,
    userId: s.userId,
    profileId: s.profileId,
    desired: s.desired,
    gracefulShutdownSeconds: s.gracefulShutdownSeconds,
    spec: s.spec as unknown as Record<string, unknown>,
    expiresAtMs: s.expiresAt.getTime(),
    recordedStatus: s.status,
  };
}

function orphan(sandboxId: string, c: Connection): WireAssignment {
  return {
    sandboxId,
    organizationId: c.organizationId,
    userId: "",
    profileId: "",
    desired: "deleted",
    gracefulShutdownSeconds: 0,
    spec: {},
    expiresAtMs: 0,
    recordedStatus: "SANDBOX_STATUS_TERMINATED",
  };
}

/** A report as the store records it (a start time it lacks leaves the recorded one). */
function observation(o: ObservedSandbox, now: Date): Observation {
  return {
    sandboxId: o.sandboxId,
    status: o.status,
    statusReason: o.statusReason,
    exitCode: o.exitCode,
    startedAt: o.startedAtMs !== null ? new Date(o.startedAtMs) : null,
    serviceAddress: o.serviceAddress,
    exposedPorts: o.exposedPorts,
    updatedAt: now,
  };
}

/**
 * Reports in the order they came, reduced to one per sandbox that leaves what
 * recording them one by one would: the first terminal one is final, a later
 * one replaces an earlier one, keeping its start time and ports if it has none.
 */
export function latestReports(reports: readonly ObservedSandbox[]): ObservedSandbox[] {
  const latest = new Map<string, ObservedSandbox>();
  for (const report of reports) {
    const earlier = latest.get(report.sandboxId);
    if (!earlier) latest.set(report.sandboxId, report);
    else if (!isTerminal(earlier.status)) {
      latest.set(report.sandboxId, {
        ...report,
        startedAtMs: report.startedAtMs ?? earlier.startedAtMs,
        exposedPorts: report.exposedPorts.length > 0 ? report.exposedPorts : earlier.exposedPorts,
      });
    }
  }
  return [...latest.values()];
}
