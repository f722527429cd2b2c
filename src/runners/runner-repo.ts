import type { Selectable } from "kysely";
import type { ProfileSpec } from "../profiles/spec-schema.js";
import type { Db } from "../store/database.js";
import { finishPage, type Page } from "../store/paging.js";
import { cachedRead } from "../store/read-cache.js";
import type { RunnerBindingsTable, RunnersTable } from "../store/schema.js";
import type { Binding, ConnectionStatus, ReleaseChannel, Runner } from "./runner.js";

/** Runner rows and their bindings. Every query is scoped to one organization. */
export class RunnerRepo {
  constructor(private readonly db: Db) {}

  async insert(r: Runner): Promise<void> {
    await this.db
      .insertInto("runners")
      .values({
        organization_id: r.organizationId,
        runner_id: r.runnerId,
        display_name: r.displayName,
        zone: r.zone,
        cluster_id: r.clusterId,
        release_channel: r.releaseChannel,
        zone_defaults: JSON.stringify(r.zoneDefaults),
        connection_status: r.connectionStatus,
        last_heartbeat_at: r.lastHeartbeatAt,
        backend: r.backend,
        agent_version: r.agentVersion,
        created_at: r.createdAt,
        updated_at: r.updatedAt,
      })
      .execute();
    await this.insertBindings(r);
  }

  /** Replaces the admin-written fields and the whole binding list. */
  async update(r: Runner): Promise<void> {
    await this.db
      .updateTable("runners")
      .set({
        display_name: r.displayName,
        zone: r.zone,
        cluster_id: r.clusterId,
        release_channel: r.releaseChannel,
        zone_defaults: JSON.stringify(r.zoneDefaults),
        updated_at: r.updatedAt,
      })
      .where("organization_id", "=", r.organizationId)
      .where("runner_id", "=", r.runnerId)
      .execute();
    await this.db
      .deleteFrom("runner_bindings")
      .where("organization_id", "=", r.organizationId)
      .where("runner_id", "=", r.runnerId)
      .execute();
    await this.insertBindings(r);
  }

  private async insertBindings(r: Runner): Promise<void> {
    if (r.bindings.length === 0) return;
    await this.db
      .insertInto("runner_bindings")
      .values(
        r.bindings.map((b, position) => ({
          organization_id: r.organizationId,
          runner_id: r.runnerId,
          position,
          profile_template_id: b.profileTemplateId,
          profile_name: b.profileName,
          is_default: b.isDefault,
          overrides_json: b.overridesJson,
          overrides: JSON.stringify(b.overrides),
          warm_pool_size: b.warmPoolSize ?? 0,
        })),
      )
      .execute();
  }

  async get(
    organizationId: string,
    runnerId: string,
    lock?: "update",
  ): Promise<Runner | undefined> {
    let q = this.db
      .selectFrom("runners")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("runner_id", "=", runnerId);
    if (lock === "update") q = q.forUpdate();
    const row = await q.executeTakeFirst();
    if (!row) return undefined;
    const [runner] = await this.withBindings([row]);
    return runner;
  }

  async list(
    organizationId: string,
    page: Page,
  ): Promise<{ items: Runner[]; nextPageToken: string }> {
    let q = this.db
      .selectFrom("runners")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .orderBy("runner_id")
      .limit(page.limit + 1);
    if (page.after) q = q.where("runner_id", ">", page.after[0] ?? "");
    const rows = await q.execute();
    const { items, nextPageToken } = finishPage(rows, page, (r) => [r.runner_id]);
    return { items: await this.withBindings(items), nextPageToken };
  }

  /** Every runner of the organization, for placement. */
  async all(organizationId: string): Promise<Runner[]> {
    return cachedRead(
      this.db,
      "runners",
      ["runners", "runner_bindings"],
      organizationId,
      async () => {
        const rows = await this.db
          .selectFrom("runners")
          .selectAll()
          .where("organization_id", "=", organizationId)
          .orderBy("runner_id")
          .execute();
        return this.withBindings(rows);
      },
    );
  }

  /** Runners that bind the template, locked for update. */
  async bindingTemplate(organizationId: string, profileTemplateId: string): Promise<Runner[]> {
    const rows = await this.db
      .selectFrom("runners")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("runner_id", "in", (eb) =>
        eb
          .selectFrom("runner_bindings")
          .select("runner_id")
          .where("organization_id", "=", organizationId)
          .where("profile_template_id", "=", profileTemplateId),
      )
      .orderBy("runner_id")
      .forUpdate()
      .execute();
    return this.withBindings(rows);
  }

  /** Output-only fields that the connected agent reports. */
  async setConnection(
    organizationId: string,
    runnerId: string,
    change: {
      connectionStatus?: ConnectionStatus;
      lastHeartbeatAt?: Date;
      backend?: string;
      agentVersion?: string;
    },
  ): Promise<void> {
    const set: Record<string, unknown> = {};
    if (change.connectionStatus) set.connection_status = change.connectionStatus;
    if (change.lastHeartbeatAt) set.last_heartbeat_at = change.lastHeartbeatAt;
    if (change.backend !== undefined) set.backend = change.backend;
    if (change.agentVersion !== undefined) set.agent_version = change.agentVersion;
    if (Object.keys(set).length === 0) return;
    await this.db
      .updateTable("runners")
      .set(set)
      .where("organization_id", "=", organizationId)
      .where("runner_id", "=", runnerId)
      .execute();
  }

  async delete(organizationId: string, runnerId: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom("runners")
      .where("organization_id", "=", organizationId)
      .where("runner_id", "=", runnerId)
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  private async withBindings(rows: Selectable<RunnersTable>[]): Promise<Runner[]> {
    if (rows.length === 0) return [];
    const organizationId = (rows[0] as Selectable<RunnersTable>).organization_id;
    const bindingRows = await this.db
      .selectFrom("runner_bindings")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where(
        "runner_id",
        "in",
        rows.map((r) => r.runner_id),
      )
      .orderBy("runner_id")
      .orderBy("position")
      .execute();
    const byRunner = new Map<string, Binding[]>();
    for (const b of bindingRows) {
      const list = byRunner.get(b.runner_id) ?? [];
      list.push(toBinding(b));
      byRunner.set(b.runner_id, list);
    }
    return rows.map((r) => toRunner(r, byRunner.get(r.runner_id) ?? []));
  }
}

function toBinding(b: Selectable<RunnerBindingsTable>): Binding {
  return {
    profileTemplateId: b.profile_template_id,
    profileName: b.profile_name,
    isDefault: b.is_default,
    overridesJson: b.overrides_json,
    overrides: b.overrides as ProfileSpec,
    warmPoolSize: b.warm_pool_size,
  };
}

function toRunner(r: Selectable<RunnersTable>, bindings: Binding[]): Runner {
  return {
    organizationId: r.organization_id,
    runnerId: r.runner_id,
    displayName: r.display_name,
    zone: r.zone,
    clusterId: r.cluster_id,
    releaseChannel: r.release_channel as ReleaseChannel,
    bindings,
    zoneDefaults: r.zone_defaults as ProfileSpec,
    connectionStatus: r.connection_status as ConnectionStatus,
    lastHeartbeatAt: r.last_heartbeat_at,
    backend: r.backend,
    agentVersion: r.agent_version,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}
