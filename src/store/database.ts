import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { type Dialect, Kysely, Migrator, PostgresDialect } from "kysely";
import { PGliteDialect } from "kysely-pglite-dialect";
import pg from "pg";
import { migrationProvider } from "./migrations.js";
import { registerVersions, TableVersions, versionedDialect } from "./read-cache.js";
import type { Database } from "./schema.js";

export type Db = Kysely<Database>;

export type StoreLocation =
  | { kind: "embedded"; dataDir: string }
  | { kind: "memory" }
  | { kind: "postgres"; url: string };

export interface OpenedStore {
  db: Db;
  kind: StoreLocation["kind"];
  close(): Promise<void>;
}

/**
 * Opens the system of record (embedded PGlite under the data dir, or a
 * PostgreSQL server) and brings its schema up to date.
 */
export async function openStore(location: StoreLocation): Promise<OpenedStore> {
  let dialect: Dialect;
  if (location.kind === "postgres") {
    const pool = new pg.Pool({ connectionString: location.url, max: 10 });
    // An idle connection the server dropped (a restart, a failover) is
    // reported here, then discarded by the pool; the next query reconnects.
    // Unhandled, it would end the process.
    pool.on("error", () => undefined);
    dialect = new PostgresDialect({ pool });
  } else {
    let pglite: PGlite;
    if (location.kind === "embedded") {
      const dir = join(location.dataDir, "pgdata");
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      pglite = await PGlite.create(dir);
    } else {
      pglite = await PGlite.create();
    }
    dialect = new PGliteDialect(pglite);
  }
  const versions = new TableVersions();
  const db: Db = new Kysely<Database>({ dialect: versionedDialect(dialect, versions) });
  registerVersions(db, versions);
  try {
    await migrate(db);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return { db, kind: location.kind, close: () => db.destroy() };
}

export async function migrate(db: Db): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`database migration ${failed} failed: ${(error as Error).message ?? error}`);
  }
}

/** Postgres error codes that services translate into API errors. */
export const PG_UNIQUE_VIOLATION = "23505";
export const PG_FOREIGN_KEY_VIOLATION = "23503";

export function pgErrorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
