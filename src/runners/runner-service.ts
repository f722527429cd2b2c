import { type Clock, systemClock } from "../clock.js";
import { AppError, notFound } from "../errors.js";
import { type Principal, requireSandboxAdmin, requireUser } from "../identity/identity.js";
import type { IdentityService } from "../identity/identity-service.js";
import { ProfileRepo } from "../profiles/profile-repo.js";
import { type Db, PG_UNIQUE_VIOLATION, pgErrorCode } from "../store/database.js";
import { type PageRequest, readPage } from "../store/paging.js";
import {
  type BoundProfile,
  parseCreateRunner,
  parseEditRunner,
  type Runner,
  type RunnerFields,
  type RunnerWire,
  resolveBindings,
  toWireRunner,
} from "./runner.js";
import { RunnerRepo } from "./runner-repo.js";

export function runnerNotFound(runnerId: string): AppError {
  return notFound("runner", runnerId, "RUNNER_NOT_FOUND");
}

export class RunnerService {
  constructor(
    private readonly db: Db,
    private readonly identity: IdentityService,
    private readonly clock: Clock = systemClock,
    /** Told after a runner's bindings may have changed (its warm pools follow them). */
    private readonly changed: (organizationId: string) => Promise<void> = async () => undefined,
  ) {}

  async create(p: Principal, body: unknown): Promise<Runner> {
    const admin = requireSandboxAdmin(p);
    const { runnerId, fields } = parseCreateRunner(body);
    const created = await this.db.transaction().execute(async (trx) => {
      const now = this.clock.now();
      const runner = await this.applyFields(
        trx,
        {
          organizationId: admin.organizationId,
          runnerId,
          displayName: runnerId,
          zone: "",
          clusterId: "",
          releaseChannel: "RELEASE_CHANNEL_STABLE",
          bindings: [],
          zoneDefaults: {},
          connectionStatus: "DISCONNECTED",
          lastHeartbeatAt: null,
          backend: "",
          agentVersion: "",
          createdAt: now,
          updatedAt: now,
        },
        fields,
      );
      try {
        await new RunnerRepo(trx).insert(runner);
      } catch (error) {
        throw translateUnique(error, runner);
      }
      return runner;
    });
    await this.changed(admin.organizationId);
    return created;
  }

  async get(p: Principal, runnerId: string): Promise<Runner> {
    const { organizationId } = requireUser(p);
    const runner = await new RunnerRepo(this.db).get(organizationId, runnerId);
    if (!runner) throw runnerNotFound(runnerId);
    return runner;
  }

  async list(p: Principal, page: PageRequest) {
    const { organizationId } = requireUser(p);
    return new RunnerRepo(this.db).list(organizationId, readPage(page));
  }

  /** Fields present in the body replace the stored ones; a present `profileBindings` replaces the list. */
  async edit(p: Principal, runnerId: string, body: unknown): Promise<Runner> {
    const admin = requireSandboxAdmin(p);
    const fields = parseEditRunner(body, runnerId);
    const edited = await this.db.transaction().execute(async (trx) => {
      const repo = new RunnerRepo(trx);
      const current = await repo.get(admin.organizationId, runnerId, "update");
      if (!current) throw runnerNotFound(runnerId);
      const updated = await this.applyFields(
        trx,
        { ...current, updatedAt: this.clock.now() },
        fields,
      );
      try {
        await repo.update(updated);
      } catch (error) {
        throw translateUnique(error, updated);
      }
      return updated;
    });
    await this.changed(admin.organizationId);
    return edited;
  }

  async delete(p: Principal, runnerId: string): Promise<void> {
    const admin = requireSandboxAdmin(p);
    if (!(await new RunnerRepo(this.db).delete(admin.organizationId, runnerId)))
      throw runnerNotFound(runnerId);
  }

  async createToken(p: Principal, runnerId: string): Promise<{ token: string }> {
    const admin = requireSandboxAdmin(p);
    await this.get(admin, runnerId);
    const { token } = await this.identity.issueRunnerToken(admin.organizationId, runnerId);
    return { token };
  }

  /** Answers carry each binding's effective profile name, which comes from its template. */
  async toWire(runners: Runner[]): Promise<RunnerWire[]> {
    const first = runners[0];
    if (!first) return [];
    const ids = runners.flatMap((r) => r.bindings.map((b) => b.profileTemplateId));
    const profiles = await new ProfileRepo(this.db).getMany(first.organizationId, ids);
    const byId = new Map<string, BoundProfile>(profiles.map((t) => [t.id, t]));
    return runners.map((r) => toWireRunner(r, byId));
  }

  /** Merges parsed fields into a runner, re-checking every binding against its (locked) templates. */
  private async applyFields(trx: Db, base: Runner, fields: RunnerFields): Promise<Runner> {
    const runner: Runner = { ...base };
    if (fields.displayName !== undefined)
      runner.displayName = fields.displayName || runner.runnerId;
    if (fields.identity) {
      runner.zone = fields.identity.zone;
      runner.clusterId = fields.identity.clusterId;
    }
    if (fields.releaseChannel) runner.releaseChannel = fields.releaseChannel;
    if (fields.zoneDefaults) runner.zoneDefaults = fields.zoneDefaults;
    if (fields.bindings || fields.zoneDefaults) {
      const inputs = fields.bindings ?? base.bindings;
      const templates = await new ProfileRepo(trx).getMany(
        runner.organizationId,
        inputs.map((b) => b.profileTemplateId),
        "share",
      );
      const byId = new Map<string, BoundProfile>(templates.map((t) => [t.id, t]));
      runner.bindings = resolveBindings(inputs, byId, runner.zoneDefaults);
    }
    return runner;
  }
}

function translateUnique(error: unknown, runner: Runner): unknown {
  if (pgErrorCode(error) !== PG_UNIQUE_VIOLATION) return error;
  const constraint = (error as { constraint?: string }).constraint ?? "";
  if (constraint.includes("cluster") || (error as Error).message.includes("runners_cluster")) {
    return new AppError(
      "ALREADY_EXISTS",
      `cluster '${runner.clusterId}' already has a runner in this organization`,
      {
        reason: "CLUSTER_HAS_RUNNER",
        fieldViolations: [
          { field: "identity.clusterId", description: "must be unique within the organization" },
        ],
      },
    );
  }
  return new AppError("ALREADY_EXISTS", `runner '${runner.runnerId}' already exists`, {
    reason: "RUNNER_EXISTS",
  });
}
