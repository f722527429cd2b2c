import { randomUUID } from "node:crypto";
import * as z from "zod";
import type { Clock } from "../clock.js";
import { AppError, invalidArgument, invalidField, notFound } from "../errors.js";
import { type Principal, requireUser, type UserPrincipal } from "../identity/identity.js";
import { IdentityRepo } from "../identity/identity-repo.js";
import type { ProfileTemplate } from "../profiles/profile.js";
import { ProfileRepo } from "../profiles/profile-repo.js";
import { HEARTBEAT_MS } from "../runners/agent.js";
import type { RunnerHub } from "../runners/hub.js";
import type { Runner } from "../runners/runner.js";
import { RunnerRepo } from "../runners/runner-repo.js";
import type { Db } from "../store/database.js";
import { type PageRequest, readPage } from "../store/paging.js";
import { parseMessage } from "../wire/proto-json.js";
import { environmentViolations, placeSandbox } from "./placement.js";
import {
  isTerminal,
  MAX_LIFETIME_SECONDS,
  SANDBOX_STATUSES,
  type Sandbox,
  type SandboxStatus,
  StartSandboxRequestSchema,
} from "./sandbox.js";
import { type SandboxFilter, SandboxRepo } from "./sandbox-repo.js";

export const MAX_FILE_BYTES = 32 * 1024 * 1024;
export const DEFAULT_EXEC_TIMEOUT_SECONDS = 300;
export const MAX_EXEC_OUTPUT_BYTES = 16 * 1024 * 1024;
const START_WAIT_MS = 120_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

const int64 = z.union([
  z.number().int(),
  z
    .string()
    .regex(/^-?\d+$/)
    .transform(Number),
]);

export const ExecRequestSchema = z
  .strictObject({
    command: z.array(z.string()),
    args: z.array(z.string()).optional(),
    stdin: z.string().optional(),
    environmentVariables: z.record(z.string(), z.string()).optional(),
    workingDir: z.string().optional(),
    maxTimeoutSeconds: int64.optional(),
  })
  .meta({ id: "ExecRequest" });

export const ExecResponseSchema = z
  .strictObject({
    stdout: z.string(),
    stderr: z.string(),
    exitCode: z.number(),
    stdoutTruncated: z.boolean(),
    stderrTruncated: z.boolean(),
  })
  .meta({ id: "ExecResponse" });

export const StopRequestSchema = z
  .strictObject({
    gracefulShutdownSeconds: int64.optional(),
    waitForReady: z.boolean().optional(),
    idempotencyKey: z.string().optional(),
  })
  .meta({ id: "StopSandboxRequest" });

export const AddFileRequestSchema = z
  .strictObject({ filePath: z.string(), fileContent: z.string() })
  .meta({ id: "AddFileRequest" });

export function sandboxNotFound(id: string): AppError {
  return notFound("sandbox", id, "SANDBOX_NOT_FOUND");
}

export class SandboxService {
  constructor(
    private readonly db: Db,
    private readonly hub: RunnerHub,
    private readonly clock: Clock,
    private readonly newId: () => string = randomUUID,
  ) {}

  async start(p: Principal, body: unknown, wait: boolean): Promise<Sandbox> {
    const user = requireUser(p);
    const request = parseMessage(StartSandboxRequestSchema, body);
    const now = this.clock.now();
    const runners = (await new RunnerRepo(this.db).all(user.organizationId)).map((r) =>
      this.withLiveness(r, now),
    );
    const wanted = [...(request.profileIds ?? []), ...(request.profileNames ?? [])];
    const profileRepo = new ProfileRepo(this.db);
    const bound = await profileRepo.getMany(user.organizationId, [
      ...runners.flatMap((r) => r.bindings.map((b) => b.profileTemplateId)),
      ...wanted,
    ]);
    const profiles = new Map<string, ProfileTemplate>(bound.map((t) => [t.id, t]));
    for (const name of request.profileNames ?? []) {
      const byName = await profileRepo.getByDisplayName(user.organizationId, name);
      if (byName) profiles.set(byName.id, byName);
    }
    const org = await new IdentityRepo(this.db).getOrganization(user.organizationId);
    let placement: ReturnType<typeof placeSandbox>;
    try {
      placement = placeSandbox({
        request,
        organizationId: user.organizationId,
        userId: user.userId,
        runners,
        profiles,
        // Only to prefer the least busy of several runners: with one, not worth a query.
        activeSandboxes:
          runners.length > 1
            ? await new SandboxRepo(this.db).activeCounts(user.organizationId)
            : new Map(),
        ceiling: { maxCpu: org?.maxCpu ?? "", maxMemory: org?.maxMemory ?? "" },
      });
    } catch (error) {
      throw this.explainUnavailable(error, user.organizationId, runners);
    }
    const sandbox: Sandbox = {
      sandboxId: this.newId(),
      organizationId: user.organizationId,
      userId: user.userId,
      runnerId: placement.runner.runnerId,
      profileId: placement.profile.id,
      profileName: placement.profileName,
      status: "SANDBOX_STATUS_PENDING",
      statusReason: "",
      desired: "running",
      gracefulShutdownSeconds: 10,
      spec: placement.launch,
      tags: request.tags ?? [],
      appliedEgressMode: placement.appliedEgressMode,
      appliedIngressMode: placement.appliedIngressMode,
      serviceAddress: "",
      exposedPorts: placement.launch.ingress?.ports ?? [],
      exitCode: null,
      startedAt: null,
      expiresAt: new Date(now.getTime() + placement.launch.maxLifetimeSeconds * 1000),
      createdAt: now,
      updatedAt: now,
    };
    await new SandboxRepo(this.db).insert(sandbox);
    this.hub.push(sandbox);
    if (!wait) return sandbox;
    const settled = await this.hub.waitFor(
      user.organizationId,
      sandbox.sandboxId,
      (s) => !s || s.status === "SANDBOX_STATUS_RUNNING" || isTerminal(s.status),
      START_WAIT_MS,
      sandbox,
    );
    return settled ?? sandbox;
  }

  /** A runner whose heartbeat stopped is disconnected, whatever its row still says. */
  private withLiveness(runner: Runner, now: Date): Runner {
    const fresh =
      runner.lastHeartbeatAt !== null &&
      now.getTime() - runner.lastHeartbeatAt.getTime() < 3 * HEARTBEAT_MS;
    return fresh ? runner : { ...runner, connectionStatus: "DISCONNECTED" };
  }

  private explainUnavailable(error: unknown, organizationId: string, runners: Runner[]): unknown {
    if (!(error instanceof AppError) || error.reason !== "NO_SUITABLE_RUNNER") return error;
    const reasons = runners
      .map((r) => [r.runnerId, this.hub.unavailableReason(organizationId, r.runnerId)] as const)
      .filter(([, reason]) => reason !== undefined)
      .map(([id, reason]) => `runner '${id}' cannot run sandboxes: ${reason}`);
    if (reasons.length === 0) return error;
    return new AppError(error.code, `${error.message}; ${reasons.join("; ")}`, {
      reason: "NO_SUITABLE_RUNNER",
      metadata: error.metadata,
    });
  }

  /** A SANDBOX_USER sees their own sandboxes; a SANDBOX_ADMIN sees the organization's. */
  async get(p: Principal, sandboxId: string): Promise<Sandbox> {
    const user = requireUser(p);
    const sandbox = await new SandboxRepo(this.db).get(user.organizationId, sandboxId);
    if (!sandbox || sandbox.desired === "deleted" || !canSee(user, sandbox))
      throw sandboxNotFound(sandboxId);
    return sandbox;
  }

  async list(p: Principal, query: URLSearchParams, page: PageRequest) {
    const user = requireUser(p);
    const filter: SandboxFilter = {};
    if (user.role !== "SANDBOX_ADMIN") filter.userId = user.userId;
    const status = query.get("status");
    if (status) {
      const full = status.startsWith("SANDBOX_STATUS_")
        ? status
        : `SANDBOX_STATUS_${status.toUpperCase()}`;
      if (!(SANDBOX_STATUSES as readonly string[]).includes(full)) {
        throw invalidField(
          "status",
          `must be one of ${SANDBOX_STATUSES.join(", ")}, found ${JSON.stringify(status)}`,
        );
      }
      filter.status = full as SandboxStatus;
    }
    const tags = query
      .getAll("tags")
      .flatMap((t) => t.split(","))
      .filter((t) => t !== "");
    if (tags.length > 0) filter.tags = tags;
    const runnerId = query.get("runnerId") ?? query.get("runner_id");
    if (runnerId) filter.runnerId = runnerId;
    return new SandboxRepo(this.db).list(user.organizationId, filter, readPage(page));
  }

  async stop(p: Principal, sandboxId: string, body: unknown): Promise<Sandbox> {
    const request = parseMessage(StopRequestSchema, body);
    const sandbox = await this.get(p, sandboxId);
    const grace = request.gracefulShutdownSeconds ?? sandbox.gracefulShutdownSeconds;
    if (grace < 0 || grace > 3600)
      throw invalidField("gracefulShutdownSeconds", `must be from 0 to 3600, found ${grace}`);
    if (isTerminal(sandbox.status) || sandbox.desired === "stopped") return sandbox;
    const stopping =
      (await new SandboxRepo(this.db).setDesired(sandbox.organizationId, sandboxId, {
        desired: "stopped",
        gracefulShutdownSeconds: grace,
        status:
          sandbox.status === "SANDBOX_STATUS_PENDING" &&
          !this.hub.isConnected(sandbox.organizationId, sandbox.runnerId)
            ? "SANDBOX_STATUS_TERMINATED"
            : "SANDBOX_STATUS_TERMINATING",
        statusReason: "stop requested",
        updatedAt: this.clock.now(),
      })) ?? sandbox;
    this.hub.push(stopping);
    if (!request.waitForReady) return stopping;
    return (
      (await this.hub.waitFor(
        sandbox.organizationId,
        sandboxId,
        (s) => !s || isTerminal(s.status),
        grace * 1000 + 15_000,
      )) ?? stopping
    );
  }

  /**
   * Stops the sandbox if needed and removes it and everything its runner made
   * for it; answers once the runner has, unless `wait` is false: then once
   * the deletion is recorded (the sandbox is gone from the API at once, and
   * its runner removes it, now or when it is back).
   */
  async delete(p: Principal, sandboxId: string, wait = true): Promise<void> {
    const sandbox = await this.get(p, sandboxId);
    await this.markDeleted(sandbox);
    // A runner that is away removes it when it is back: no point in waiting for that.
    if (!wait || !this.hub.isConnected(sandbox.organizationId, sandbox.runnerId)) return;
    await this.hub.waitFor(
      sandbox.organizationId,
      sandboxId,
      (s) => !s,
      sandbox.gracefulShutdownSeconds * 1000 + 15_000,
    );
  }

  private async markDeleted(sandbox: Sandbox): Promise<void> {
    const repo = new SandboxRepo(this.db);
    // Never placed on a runner that is away: nothing to clean up anywhere.
    if (
      sandbox.status === "SANDBOX_STATUS_PENDING" &&
      !this.hub.isConnected(sandbox.organizationId, sandbox.runnerId)
    ) {
      await repo.delete(sandbox.organizationId, sandbox.sandboxId);
      this.hub.gone(sandbox.sandboxId);
      return;
    }
    const deleting = await repo.setDesired(sandbox.organizationId, sandbox.sandboxId, {
      desired: "deleted",
      gracefulShutdownSeconds: sandbox.gracefulShutdownSeconds,
      updatedAt: this.clock.now(),
    });
    if (deleting) this.hub.push(deleting);
  }

  /**
   * Before a runner is deleted: refused while it has sandboxes not yet
   * terminal (RUNNER_IN_USE), unless forced, which deletes them first.
   */
  async drainRunner(p: Principal, runnerId: string, force: boolean): Promise<void> {
    const user = requireUser(p);
    const all = await new SandboxRepo(this.db).forRunner(user.organizationId, runnerId);
    const live = all.filter((s) => !isTerminal(s.status) && s.desired !== "deleted");
    if (live.length > 0 && !force) {
      throw new AppError(
        "FAILED_PRECONDITION",
        `runner '${runnerId}' has ${live.length} sandbox(es) not yet terminal; stop them first or delete with ?force=true`,
        { reason: "RUNNER_IN_USE", metadata: { runnerId, sandboxes: String(live.length) } },
      );
    }
    await Promise.all(all.filter((s) => s.desired !== "deleted").map((s) => this.markDeleted(s)));
    await Promise.all(
      all.map((s) =>
        this.hub.waitFor(
          user.organizationId,
          s.sandboxId,
          (x) => !x,
          s.gracefulShutdownSeconds * 1000 + 15_000,
        ),
      ),
    );
  }

  private async running(p: Principal, sandboxId: string): Promise<Sandbox> {
    const sandbox = await this.get(p, sandboxId);
    if (sandbox.status !== "SANDBOX_STATUS_RUNNING") {
      throw new AppError(
        "FAILED_PRECONDITION",
        `sandbox ${sandboxId} is not running (status ${sandbox.status})`,
        {
          reason: "SANDBOX_NOT_RUNNING",
          metadata: { status: sandbox.status },
        },
      );
    }
    return sandbox;
  }

  async exec(
    p: Principal,
    sandboxId: string,
    body: unknown,
  ): Promise<z.infer<typeof ExecResponseSchema>> {
    const request = parseMessage(ExecRequestSchema, body);
    const command = [...request.command, ...(request.args ?? [])];
    if (command.length === 0 || command[0] === "")
      throw invalidField("command", "required: the program and its arguments");
    const timeoutSeconds = request.maxTimeoutSeconds ?? DEFAULT_EXEC_TIMEOUT_SECONDS;
    if (timeoutSeconds <= 0 || timeoutSeconds > MAX_LIFETIME_SECONDS)
      throw invalidField(
        "maxTimeoutSeconds",
        `must be from 1 to ${MAX_LIFETIME_SECONDS} (30 days, the longest a sandbox lives), found ${timeoutSeconds}`,
      );
    const stdin = request.stdin ?? "";
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(stdin)) throw invalidField("stdin", "must be base64");
    const envProblems = environmentViolations(
      request.environmentVariables ?? {},
      "environmentVariables",
    );
    if (envProblems.length > 0) throw invalidArgument(envProblems);
    const sandbox = await this.running(p, sandboxId);
    const result = await this.hub.request(sandbox.organizationId, sandbox.runnerId, {
      op: "exec",
      sandboxId,
      command,
      stdin,
      env: request.environmentVariables ?? {},
      workingDir: request.workingDir ?? "",
      // Node timers fire at once past 2^31-1 ms (24.8 days): longer is as good as forever here.
      timeoutMs: Math.min(timeoutSeconds * 1000, MAX_TIMER_MS),
      maxOutputBytes: MAX_EXEC_OUTPUT_BYTES,
    }).result;
    return ExecResponseSchema.parse(result);
  }

  async writeFile(p: Principal, sandboxId: string, body: unknown): Promise<void> {
    const request = parseMessage(AddFileRequestSchema, body);
    checkPath(request.filePath, "filePath");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(request.fileContent))
      throw invalidField("fileContent", "must be base64");
    if (Buffer.byteLength(request.fileContent, "base64") > MAX_FILE_BYTES) {
      throw new AppError(
        "INVALID_ARGUMENT",
        `fileContent is larger than ${MAX_FILE_BYTES} bytes (32 MiB)`,
        {
          reason: "FILE_TOO_LARGE",
          fieldViolations: [
            { field: "fileContent", description: `must be at most ${MAX_FILE_BYTES} bytes` },
          ],
        },
      );
    }
    const sandbox = await this.running(p, sandboxId);
    await this.hub.request(sandbox.organizationId, sandbox.runnerId, {
      op: "writeFile",
      sandboxId,
      path: request.filePath,
      content: request.fileContent,
    }).result;
  }

  async readFile(p: Principal, sandboxId: string, path: string): Promise<Buffer> {
    checkPath(path, "path");
    const sandbox = await this.running(p, sandboxId);
    const result = (await this.hub.request(sandbox.organizationId, sandbox.runnerId, {
      op: "readFile",
      sandboxId,
      path,
      maxBytes: MAX_FILE_BYTES,
    }).result) as { content: string };
    return Buffer.from(result.content, "base64");
  }

  /** Streams the main process's output; logs stay readable after the sandbox ends, until it is deleted. */
  async logs(
    p: Principal,
    sandboxId: string,
    options: { follow: boolean; tailLines: number | undefined; timestamps: boolean },
    onData: (chunk: Buffer) => void,
  ): Promise<{ done: Promise<unknown>; cancel(): void }> {
    const sandbox = await this.get(p, sandboxId);
    const handle = this.hub.request(
      sandbox.organizationId,
      sandbox.runnerId,
      {
        op: "logs",
        sandboxId,
        follow: options.follow,
        timestamps: options.timestamps,
        ...(options.tailLines !== undefined ? { tailLines: options.tailLines } : {}),
      },
      onData,
    );
    return { done: handle.result, cancel: handle.cancel };
  }

  async interactive(
    p: Principal,
    sandboxId: string,
    command: string[],
    tty: boolean,
    onData: (chunk: Buffer) => void,
  ) {
    const sandbox = await this.running(p, sandboxId);
    return this.hub.request(
      sandbox.organizationId,
      sandbox.runnerId,
      { op: "interactive", sandboxId, command, env: {}, tty },
      onData,
    );
  }
}

function canSee(user: UserPrincipal, sandbox: Sandbox): boolean {
  return user.role === "SANDBOX_ADMIN" || sandbox.userId === user.userId;
}

function checkPath(path: string, field: string): void {
  if (!path.startsWith("/") || path.includes("\0"))
    throw invalidField(field, `must be an absolute path, found ${JSON.stringify(path)}`);
}
