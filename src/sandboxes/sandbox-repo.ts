import { type Selectable, sql } from "kysely";
import { Batcher } from "../store/batcher.js";
import type { Db } from "../store/database.js";
import { finishPage, type Page } from "../store/paging.js";
import { cachedRead, cachedWrite } from "../store/read-cache.js";
import type { SandboxesTable } from "../store/schema.js";
import { type LaunchSpec, type Sandbox, type SandboxStatus, TERMINAL_STATUSES } from "./sandbox.js";

export interface SandboxFilter {
  userId?: string | undefined;
  status?: SandboxStatus | undefined;
  tags?: string[] | undefined;
  runnerId?: string | undefined;
}

const TERMINAL = [...TERMINAL_STATUSES];

/** One batcher of inserts per store: repositories come and go with each call. */
const INSERTS = new WeakMap<Db, Batcher<Sandbox>>();

/** What a runner observed of one sandbox. */
export type Observation = Pick<
  Sandbox,
  | "sandboxId"
  | "status"
  | "statusReason"
  | "exitCode"
  | "startedAt"
  | "serviceAddress"
  | "exposedPorts"
  | "updatedAt"
>;

interface ObservedRow {
  sandbox_id: string;
  status: string;
  status_reason: string;
  exit_code: number | null;
  service_address: string;
  updated_at: Date;
  started_at: Date | null;
  exposed_ports: string | null;
}

/** The read cache of single sandboxes: its name, its tables, the key of one. */
const oneSandbox = (organizationId: string, sandboxId: string) =>
  ["sandbox", ["sandboxes"], `${organizationId}/${sandboxId}`] as const;

/** Sandbox records. Rows marked `desired = deleted` wait only for their runner's clean-up. */
export class SandboxRepo {
  constructor(private readonly db: Db) {}

  /** Inserts submitted in the same round of the event loop go in one statement (a burst of starts). */
  insert(s: Sandbox): Promise<void> {
    let batcher = INSERTS.get(this.db);
    if (!batcher) {
      const db = this.db;
      batcher = new Batcher<Sandbox>(async (all) => {
        await db.insertInto("sandboxes").values(all.map(toRow)).execute();
      });
      INSERTS.set(this.db, batcher);
    }
    return batcher.submit(s);
  }

  async get(organizationId: string, sandboxId: string): Promise<Sandbox | undefined> {
    if (!/^[0-9a-f-]{36}$/i.test(sandboxId)) return undefined;
    return cachedRead(this.db, ...oneSandbox(organizationId, sandboxId), async () => {
      const row = await this.db
        .selectFrom("sandboxes")
        .selectAll()
        .where("organization_id", "=", organizationId)
        .where("sandbox_id", "=", sandboxId)
        .executeTakeFirst();
      return row && toSandbox(row);
    });
  }

  async list(
    organizationId: string,
    filter: SandboxFilter,
    page: Page,
  ): Promise<{ items: Sandbox[]; nextPageToken: string }> {
    let q = this.db
      .selectFrom("sandboxes")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("desired", "<>", "deleted")
      .orderBy("created_at")
      .orderBy("sandbox_id")
      .limit(page.limit + 1);
    if (filter.userId) q = q.where("user_id", "=", filter.userId);
    if (filter.status) q = q.where("status", "=", filter.status);
    if (filter.runnerId) q = q.where("runner_id", "=", filter.runnerId);
    if (filter.tags && filter.tags.length > 0)
      q = q.where(sql<boolean>`tags @> ${JSON.stringify(filter.tags)}::jsonb`);
    const [at, id] = page.after ?? [];
    if (at !== undefined && id !== undefined) {
      const after = new Date(at);
      q = q.where((eb) =>
        eb.or([
          eb("created_at", ">", after),
          eb.and([eb("created_at", "=", after), eb("sandbox_id", ">", id)]),
        ]),
      );
    }
    const rows = (await q.execute()).map(toSandbox);
    return finishPage(rows, page, (s) => [s.createdAt.toISOString(), s.sandboxId]);
  }

  /** Every record a runner must know of, deleted-but-not-cleaned ones included. */
  async forRunner(organizationId: string, runnerId: string): Promise<Sandbox[]> {
    const rows = await this.db
      .selectFrom("sandboxes")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("runner_id", "=", runnerId)
      .execute();
    return rows.map(toSandbox);
  }

  /** Sandboxes not yet terminal, per runner, for placement. */
  async activeCounts(organizationId: string): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom("sandboxes")
      .select(["runner_id", (eb) => eb.fn.countAll<string>().as("n")])
      .where("organization_id", "=", organizationId)
      .where("status", "not in", TERMINAL)
      .groupBy("runner_id")
      .execute();
    return new Map(rows.map((r) => [r.runner_id, Number(r.n)]));
  }

  /**
   * Records what a runner observed of its sandboxes, in one statement however
   * many there are, except for those already terminal (terminal states are
   * final). Touches only observed columns, so a concurrent stop or delete is
   * never undone; started_at and exposed_ports only when observed. At most
   * one observation per sandbox (see latestReports). Answers the updated
   * records by sandbox id (none for a terminal or missing one).
   */
  async recordObserved(
    organizationId: string,
    observations: readonly Observation[],
  ): Promise<Map<string, Sandbox>> {
    if (observations.length === 0) return new Map();
    const column = <T>(pick: (o: Observation) => T) => observations.map(pick);
    // One array per column, unnested into rows: a fixed number of parameters.
    const observed = sql<ObservedRow>`unnest(
      ${column((o) => o.sandboxId)}::uuid[],
      ${column((o) => o.status)}::text[],
      ${column((o) => o.statusReason)}::text[],
      ${column((o) => o.exitCode)}::integer[],
      ${column((o) => o.serviceAddress)}::text[],
      ${column((o) => o.updatedAt.toISOString())}::timestamptz[],
      ${column((o) => o.startedAt?.toISOString() ?? null)}::timestamptz[],
      ${column((o) => (o.exposedPorts.length > 0 ? JSON.stringify(o.exposedPorts) : null))}::jsonb[]
    )`.as<"o">(
      sql`o(sandbox_id, status, status_reason, exit_code, service_address, updated_at, started_at, exposed_ports)`,
    );
    const keys = observations.map((o) => oneSandbox(organizationId, o.sandboxId)[2]);
    // The rows it leaves are what the next gets of them (an exec, say) read.
    const [name, tables] = oneSandbox(organizationId, "");
    return cachedWrite(this.db, name, tables, keys, async () => {
      const rows = await this.db
        .updateTable("sandboxes")
        .from(observed)
        .set((eb) => ({
          status: eb.ref("o.status"),
          status_reason: eb.ref("o.status_reason"),
          exit_code: eb.ref("o.exit_code"),
          service_address: eb.ref("o.service_address"),
          updated_at: eb.ref("o.updated_at"),
          started_at: eb.fn.coalesce("o.started_at", "sandboxes.started_at"),
          exposed_ports: sql<string>`coalesce(o.exposed_ports, sandboxes.exposed_ports)`,
        }))
        .whereRef("sandboxes.sandbox_id", "=", "o.sandbox_id")
        .where("sandboxes.organization_id", "=", organizationId)
        .where("sandboxes.status", "not in", TERMINAL)
        .returningAll("sandboxes")
        .execute();
      return new Map(
        rows.map((row) => [oneSandbox(organizationId, row.sandbox_id)[2], toSandbox(row)]),
      );
    }).then((byKey) => new Map([...byKey.values()].map((s) => [s.sandboxId, s])));
  }

  /** What the user wants (stop, delete), and the status that says so. */
  async setDesired(
    organizationId: string,
    sandboxId: string,
    change: Pick<Sandbox, "desired" | "gracefulShutdownSeconds" | "updatedAt"> &
      Partial<Pick<Sandbox, "status" | "statusReason">>,
  ): Promise<Sandbox | undefined> {
    const set: Record<string, unknown> = {
      desired: change.desired,
      graceful_shutdown_seconds: change.gracefulShutdownSeconds,
      updated_at: change.updatedAt,
    };
    if (change.status) set.status = change.status;
    if (change.statusReason !== undefined) set.status_reason = change.statusReason;
    const row = await this.db
      .updateTable("sandboxes")
      .set(set)
      .where("organization_id", "=", organizationId)
      .where("sandbox_id", "=", sandboxId)
      .returningAll()
      .executeTakeFirst();
    return row && toSandbox(row);
  }

  async delete(organizationId: string, sandboxId: string): Promise<void> {
    await this.db
      .deleteFrom("sandboxes")
      .where("organization_id", "=", organizationId)
      .where("sandbox_id", "=", sandboxId)
      .execute();
  }

  async expired(now: Date): Promise<Sandbox[]> {
    const rows = await this.db
      .selectFrom("sandboxes")
      .selectAll()
      .where("expires_at", "<=", now)
      .where("desired", "=", "running")
      .where("status", "not in", TERMINAL)
      .execute();
    return rows.map(toSandbox);
  }
}

function toRow(s: Sandbox) {
  return {
    sandbox_id: s.sandboxId,
    organization_id: s.organizationId,
    user_id: s.userId,
    runner_id: s.runnerId,
    profile_id: s.profileId,
    profile_name: s.profileName,
    status: s.status,
    status_reason: s.statusReason,
    desired: s.desired,
    graceful_shutdown_seconds: s.gracefulShutdownSeconds,
    spec: JSON.stringify(s.spec),
    tags: JSON.stringify(s.tags),
    applied_egress_mode: s.appliedEgressMode,
    applied_ingress_mode: s.appliedIngressMode,
    service_address: s.serviceAddress,
    exposed_ports: JSON.stringify(s.exposedPorts),
    exit_code: s.exitCode,
    started_at: s.startedAt,
    expires_at: s.expiresAt,
    created_at: s.createdAt,
    updated_at: s.updatedAt,
  };
}

function toSandbox(r: Selectable<SandboxesTable>): Sandbox {
  return {
    sandboxId: r.sandbox_id,
    organizationId: r.organization_id,
    userId: r.user_id,
    runnerId: r.runner_id,
    profileId: r.profile_id,
    profileName: r.profile_name,
    status: r.status as SandboxStatus,
    statusReason: r.status_reason,
    desired: r.desired as Sandbox["desired"],
    gracefulShutdownSeconds: r.graceful_shutdown_seconds,
    spec: r.spec as unknown as LaunchSpec,
    tags: r.tags,
    appliedEgressMode: r.applied_egress_mode,
    appliedIngressMode: r.applied_ingress_mode,
    serviceAddress: r.service_address,
    exposedPorts: r.exposed_ports,
    exitCode: r.exit_code,
    startedAt: r.started_at,
    expiresAt: r.expires_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}
