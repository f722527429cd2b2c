import type { Selectable } from "kysely";
import type { Db } from "../store/database.js";
import { finishPage, type Page } from "../store/paging.js";
import { cachedRead } from "../store/read-cache.js";
import type { OrganizationsTable, UsersTable } from "../store/schema.js";
import type { Organization, Principal, Role, TokenInfo, User } from "./identity.js";

/** Identity rows in the store: organizations, users and hashed tokens. */
export class IdentityRepo {
  constructor(private readonly db: Db) {}

  async insertOrganization(o: Organization): Promise<void> {
    await this.db
      .insertInto("organizations")
      .values({
        organization_id: o.organizationId,
        display_name: o.displayName,
        max_cpu: o.maxCpu,
        max_memory: o.maxMemory,
        created_at: o.createdAt,
        updated_at: o.updatedAt,
      })
      .execute();
  }

  async getOrganization(id: string): Promise<Organization | undefined> {
    return cachedRead(this.db, "organization", ["organizations"], id, async () => {
      const row = await this.db
        .selectFrom("organizations")
        .selectAll()
        .where("organization_id", "=", id)
        .executeTakeFirst();
      return row && toOrganization(row);
    });
  }

  async listOrganizations(page: Page): Promise<{ items: Organization[]; nextPageToken: string }> {
    let q = this.db
      .selectFrom("organizations")
      .selectAll()
      .orderBy("organization_id")
      .limit(page.limit + 1);
    if (page.after) q = q.where("organization_id", ">", page.after[0] ?? "");
    const rows = (await q.execute()).map(toOrganization);
    return finishPage(rows, page, (o) => [o.organizationId]);
  }

  async updateOrganization(o: Organization): Promise<void> {
    await this.db
      .updateTable("organizations")
      .set({
        display_name: o.displayName,
        max_cpu: o.maxCpu,
        max_memory: o.maxMemory,
        updated_at: o.updatedAt,
      })
      .where("organization_id", "=", o.organizationId)
      .execute();
  }

  async insertUser(u: User): Promise<void> {
    await this.db
      .insertInto("users")
      .values({
        organization_id: u.organizationId,
        user_id: u.userId,
        role: u.role,
        platform_admin: u.platformAdmin,
        created_at: u.createdAt,
      })
      .execute();
  }

  async getUser(organizationId: string, userId: string): Promise<User | undefined> {
    const row = await this.db
      .selectFrom("users")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("user_id", "=", userId)
      .executeTakeFirst();
    return row && toUser(row);
  }

  async listUsers(
    organizationId: string,
    page: Page,
  ): Promise<{ items: User[]; nextPageToken: string }> {
    let q = this.db
      .selectFrom("users")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .orderBy("user_id")
      .limit(page.limit + 1);
    if (page.after) q = q.where("user_id", ">", page.after[0] ?? "");
    const rows = (await q.execute()).map(toUser);
    return finishPage(rows, page, (u) => [u.userId]);
  }

  async insertToken(t: {
    tokenId: string;
    tokenHash: string;
    organizationId: string;
    userId?: string;
    runnerId?: string;
    createdAt: Date;
  }): Promise<void> {
    await this.db
      .insertInto("api_tokens")
      .values({
        token_id: t.tokenId,
        token_hash: t.tokenHash,
        organization_id: t.organizationId,
        user_id: t.userId ?? null,
        runner_id: t.runnerId ?? null,
        created_at: t.createdAt,
        last_used_at: null,
      })
      .execute();
  }

  async listUserTokens(organizationId: string, userId: string): Promise<TokenInfo[]> {
    const rows = await this.db
      .selectFrom("api_tokens")
      .select(["token_id", "created_at", "last_used_at"])
      .where("organization_id", "=", organizationId)
      .where("user_id", "=", userId)
      .orderBy("created_at")
      .orderBy("token_id")
      .execute();
    return rows.map((r) => ({
      tokenId: r.token_id,
      createdAt: r.created_at,
      lastUsedAt: r.last_used_at,
    }));
  }

  async deleteUserToken(organizationId: string, userId: string, tokenId: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom("api_tokens")
      .where("organization_id", "=", organizationId)
      .where("user_id", "=", userId)
      .where("token_id", "=", tokenId)
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  /**
   * One indexed lookup, or its cached answer, which any write to tokens or
   * users retires: a revoked token fails on the very next call.
   */
  principalForTokenHash(tokenHash: string): Promise<Principal | undefined> {
    return cachedRead(this.db, "principal", ["api_tokens", "users"], tokenHash, () =>
      this.loadPrincipal(tokenHash),
    );
  }

  private async loadPrincipal(tokenHash: string): Promise<Principal | undefined> {
    const row = await this.db
      .selectFrom("api_tokens as t")
      .leftJoin("users as u", (join) =>
        join
          .onRef("u.organization_id", "=", "t.organization_id")
          .onRef("u.user_id", "=", "t.user_id"),
      )
      .select([
        "t.token_id",
        "t.organization_id",
        "t.user_id",
        "t.runner_id",
        "u.role",
        "u.platform_admin",
      ])
      .where("t.token_hash", "=", tokenHash)
      .executeTakeFirst();
    if (!row) return undefined;
    if (row.runner_id !== null) {
      return {
        kind: "runner",
        organizationId: row.organization_id,
        runnerId: row.runner_id,
        tokenId: row.token_id,
      };
    }
    if (row.user_id === null || row.role === null) return undefined;
    return {
      kind: "user",
      organizationId: row.organization_id,
      userId: row.user_id,
      role: row.role as Role,
      platformAdmin: row.platform_admin === true,
      tokenId: row.token_id,
    };
  }

  async touchToken(tokenId: string, at: Date): Promise<void> {
    await this.db
      .updateTable("api_tokens")
      .set({ last_used_at: at })
      .where("token_id", "=", tokenId)
      .execute();
  }

  async countOrganizations(): Promise<number> {
    const row = await this.db
      .selectFrom("organizations")
      .select((eb) => eb.fn.countAll<string>().as("n"))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}

function toOrganization(r: Selectable<OrganizationsTable>): Organization {
  return {
    organizationId: r.organization_id,
    displayName: r.display_name,
    maxCpu: r.max_cpu,
    maxMemory: r.max_memory,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function toUser(r: Selectable<UsersTable>): User {
  return {
    organizationId: r.organization_id,
    userId: r.user_id,
    role: r.role as Role,
    platformAdmin: r.platform_admin,
    createdAt: r.created_at,
  };
}
