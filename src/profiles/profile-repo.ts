import type { Selectable } from "kysely";
import type { Db } from "../store/database.js";
import { finishPage, type Page } from "../store/paging.js";
import { cachedRead } from "../store/read-cache.js";
import type { ProfileTemplatesTable } from "../store/schema.js";
import type { ProfileTemplate } from "./profile.js";
import type { ProfileSpec } from "./spec-schema.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(text: string): boolean {
  return UUID.test(text);
}

/** Profile template rows. Every query is scoped to one organization. */
export class ProfileRepo {
  constructor(private readonly db: Db) {}

  async insert(p: ProfileTemplate): Promise<void> {
    await this.db
      .insertInto("profile_templates")
      .values({
        id: p.id,
        organization_id: p.organizationId,
        display_name: p.displayName,
        description: p.description,
        labels: JSON.stringify(p.labels),
        spec: JSON.stringify(p.spec),
        created_at: p.createdAt,
        updated_at: p.updatedAt,
      })
      .execute();
  }

  async get(
    organizationId: string,
    id: string,
    lock?: "update" | "share",
  ): Promise<ProfileTemplate | undefined> {
    if (!isUuid(id)) return undefined;
    if (lock) return this.selectOne(organizationId, id, lock);
    return cachedRead(this.db, "profile", ["profile_templates"], `${organizationId}/${id}`, () =>
      this.selectOne(organizationId, id),
    );
  }

  private async selectOne(
    organizationId: string,
    id: string,
    lock?: "update" | "share",
  ): Promise<ProfileTemplate | undefined> {
    let q = this.db
      .selectFrom("profile_templates")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("id", "=", id);
    if (lock === "update") q = q.forUpdate();
    if (lock === "share") q = q.forShare();
    const row = await q.executeTakeFirst();
    return row && toProfile(row);
  }

  async getByDisplayName(
    organizationId: string,
    displayName: string,
  ): Promise<ProfileTemplate | undefined> {
    const key = `${organizationId}/${displayName}`;
    return cachedRead(this.db, "profile-by-name", ["profile_templates"], key, async () => {
      const row = await this.db
        .selectFrom("profile_templates")
        .selectAll()
        .where("organization_id", "=", organizationId)
        .where("display_name", "=", displayName)
        .executeTakeFirst();
      return row && toProfile(row);
    });
  }

  /** The named templates; `share` locks them so that they cannot be deleted while being bound. */
  async getMany(organizationId: string, ids: string[], lock?: "share"): Promise<ProfileTemplate[]> {
    const valid = [...new Set(ids.filter(isUuid))];
    if (valid.length === 0) return [];
    if (lock) return this.selectMany(organizationId, valid, lock);
    const key = `${organizationId}/${[...valid].sort().join(",")}`;
    return cachedRead(this.db, "profiles", ["profile_templates"], key, () =>
      this.selectMany(organizationId, valid),
    );
  }

  private async selectMany(
    organizationId: string,
    ids: string[],
    lock?: "share",
  ): Promise<ProfileTemplate[]> {
    let q = this.db
      .selectFrom("profile_templates")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("id", "in", ids);
    if (lock === "share") q = q.forShare();
    return (await q.execute()).map(toProfile);
  }

  async list(
    organizationId: string,
    page: Page,
  ): Promise<{ items: ProfileTemplate[]; nextPageToken: string }> {
    let q = this.db
      .selectFrom("profile_templates")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .orderBy("created_at")
      .orderBy("id")
      .limit(page.limit + 1);
    const [at, id] = page.after ?? [];
    if (at !== undefined && id !== undefined && isUuid(id)) {
      const after = new Date(at);
      q = q.where((eb) =>
        eb.or([
          eb("created_at", ">", after),
          eb.and([eb("created_at", "=", after), eb("id", ">", id)]),
        ]),
      );
    }
    const rows = (await q.execute()).map(toProfile);
    return finishPage(rows, page, (p) => [p.createdAt.toISOString(), p.id]);
  }

  async update(p: ProfileTemplate): Promise<void> {
    await this.db
      .updateTable("profile_templates")
      .set({
        display_name: p.displayName,
        description: p.description,
        labels: JSON.stringify(p.labels),
        spec: JSON.stringify(p.spec),
        updated_at: p.updatedAt,
      })
      .where("organization_id", "=", p.organizationId)
      .where("id", "=", p.id)
      .execute();
  }

  async delete(organizationId: string, id: string): Promise<boolean> {
    if (!isUuid(id)) return false;
    const result = await this.db
      .deleteFrom("profile_templates")
      .where("organization_id", "=", organizationId)
      .where("id", "=", id)
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  /** Runner ids that bind the template. */
  async bindingRunners(organizationId: string, id: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom("runner_bindings")
      .select("runner_id")
      .where("organization_id", "=", organizationId)
      .where("profile_template_id", "=", id)
      .orderBy("runner_id")
      .execute();
    return rows.map((r) => r.runner_id);
  }
}

function toProfile(r: Selectable<ProfileTemplatesTable>): ProfileTemplate {
  return {
    id: r.id,
    organizationId: r.organization_id,
    displayName: r.display_name,
    description: r.description,
    labels: r.labels,
    spec: r.spec as ProfileSpec,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}
