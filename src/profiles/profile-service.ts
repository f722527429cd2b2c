import { randomUUID } from "node:crypto";
import { type Clock, systemClock } from "../clock.js";
import { AppError, notFound } from "../errors.js";
import { type Principal, requireSandboxAdmin, requireUser } from "../identity/identity.js";
import { type BoundProfile, resolveBindings } from "../runners/runner.js";
import { RunnerRepo } from "../runners/runner-repo.js";
import {
  type Db,
  PG_FOREIGN_KEY_VIOLATION,
  PG_UNIQUE_VIOLATION,
  pgErrorCode,
} from "../store/database.js";
import { type PageRequest, readPage } from "../store/paging.js";
import { type ProfileTemplate, parseProfileTemplate } from "./profile.js";
import { ProfileRepo } from "./profile-repo.js";

export function profileNotFound(idOrName: string): AppError {
  return notFound("profile template", idOrName, "PROFILE_NOT_FOUND");
}

export class ProfileService {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock = systemClock,
    private readonly newId: () => string = randomUUID,
    /** Told after a profile changed (the warm pools of runners binding it follow it). */
    private readonly changed: (organizationId: string) => Promise<void> = async () => undefined,
  ) {}

  async create(p: Principal, body: unknown): Promise<ProfileTemplate> {
    const admin = requireSandboxAdmin(p);
    const fields = parseProfileTemplate(body, { kind: "create" });
    const now = this.clock.now();
    const profile: ProfileTemplate = {
      id: this.newId(),
      organizationId: admin.organizationId,
      ...fields,
      createdAt: now,
      updatedAt: now,
    };
    try {
      await new ProfileRepo(this.db).insert(profile);
    } catch (error) {
      throw translateUnique(error, profile.displayName);
    }
    return profile;
  }

  /** By id, else by display name. */
  async get(p: Principal, idOrName: string): Promise<ProfileTemplate> {
    const { organizationId } = requireUser(p);
    const repo = new ProfileRepo(this.db);
    const profile =
      (await repo.get(organizationId, idOrName)) ??
      (await repo.getByDisplayName(organizationId, idOrName));
    if (!profile) throw profileNotFound(idOrName);
    return profile;
  }

  async list(p: Principal, page: PageRequest) {
    const { organizationId } = requireUser(p);
    return new ProfileRepo(this.db).list(organizationId, readPage(page));
  }

  /**
   * Replaces displayName, description, labels and spec. Refused when the new
   * spec would make any runner's binding of this profile invalid.
   */
  async edit(p: Principal, id: string, body: unknown): Promise<ProfileTemplate> {
    const admin = requireSandboxAdmin(p);
    const fields = parseProfileTemplate(body, { kind: "edit", id });
    const edited = await this.db.transaction().execute(async (trx) => {
      const profiles = new ProfileRepo(trx);
      const current = await profiles.get(admin.organizationId, id, "update");
      if (!current) throw profileNotFound(id);
      const updated: ProfileTemplate = { ...current, ...fields, updatedAt: this.clock.now() };
      for (const runner of await new RunnerRepo(trx).bindingTemplate(admin.organizationId, id)) {
        const bound = await profiles.getMany(
          admin.organizationId,
          runner.bindings.map((b) => b.profileTemplateId),
        );
        const byId = new Map<string, BoundProfile>(bound.map((t) => [t.id, t]));
        byId.set(id, updated);
        try {
          resolveBindings(runner.bindings, byId, runner.zoneDefaults);
        } catch (error) {
          if (!(error instanceof AppError)) throw error;
          throw new AppError(
            "INVALID_ARGUMENT",
            `spec: this edit would make runner '${runner.runnerId}' invalid: ${error.message}`,
            {
              reason: "BINDING_INVALID",
              metadata: { runnerId: runner.runnerId },
              fieldViolations: error.fieldViolations.map((v) => ({
                field: "spec",
                description: `runner '${runner.runnerId}' ${v.field}: ${v.description}`,
              })),
            },
          );
        }
      }
      try {
        await profiles.update(updated);
      } catch (error) {
        throw translateUnique(error, updated.displayName);
      }
      return updated;
    });
    await this.changed(admin.organizationId);
    return edited;
  }

  async delete(p: Principal, id: string): Promise<void> {
    const admin = requireSandboxAdmin(p);
    await this.db.transaction().execute(async (trx) => {
      const profiles = new ProfileRepo(trx);
      const current = await profiles.get(admin.organizationId, id, "update");
      if (!current) throw profileNotFound(id);
      const runners = await profiles.bindingRunners(admin.organizationId, id);
      if (runners.length > 0) throw profileBound(current, runners);
      try {
        await profiles.delete(admin.organizationId, id);
      } catch (error) {
        if (pgErrorCode(error) === PG_FOREIGN_KEY_VIOLATION) throw profileBound(current, runners);
        throw error;
      }
    });
  }
}

function profileBound(profile: ProfileTemplate, runnerIds: string[]): AppError {
  const names = runnerIds.length > 0 ? runnerIds.map((r) => `'${r}'`).join(", ") : "a runner";
  return new AppError(
    "FAILED_PRECONDITION",
    `profile template '${profile.displayName}' is bound by runner ${names}; detach the binding (paddock sandbox runner edit) before deleting it`,
    {
      reason: "PROFILE_BOUND",
      metadata: { profileTemplateId: profile.id, runnerIds: runnerIds.join(",") },
    },
  );
}

function translateUnique(error: unknown, displayName: string): unknown {
  if (pgErrorCode(error) === PG_UNIQUE_VIOLATION) {
    return new AppError(
      "ALREADY_EXISTS",
      `displayName: a profile template named '${displayName}' already exists in this organization`,
      {
        reason: "PROFILE_EXISTS",
        fieldViolations: [
          { field: "displayName", description: "must be unique within the organization" },
        ],
      },
    );
  }
  return error;
}
