import type {
  CompiledQuery,
  DatabaseConnection,
  Dialect,
  Driver,
  Kysely,
  QueryResult,
  TransactionSettings,
} from "kysely";
import type { Database } from "./schema.js";

/**
 * In-process read caches for the control plane's hot reads (the caller's
 * token, a sandbox, a profile, placement's inputs), kept exact without any
 * time-to-live: Paddock's control plane is the only writer of its store (one
 * replica; PGlite cannot be shared at all), so every write passes through
 * the driver below, which bumps a version per table it touches once the write
 * is done (for a transaction, at its commit or rollback). A cached value is
 * served only while the versions it was read at still hold, and is stored
 * only if no write to its tables finished while it was being read.
 */
export type TableName = keyof Database & string;

/** Foreign keys with `on delete cascade` (migrations.ts): a delete there writes these too. */
const CASCADES: Partial<Record<TableName, TableName[]>> = {
  organizations: [
    "users",
    "profile_templates",
    "runners",
    "runner_bindings",
    "api_tokens",
    "sandboxes",
  ],
  runners: ["runner_bindings", "api_tokens", "sandboxes"],
  users: ["api_tokens"],
};

const ALL_TABLES = "*";

export class TableVersions {
  private readonly versions = new Map<string, number>();
  private readonly caches = new Map<string, ReadCache<unknown>>();

  snapshot(tables: readonly TableName[]): number[] {
    const everything = this.versions.get(ALL_TABLES) ?? 0;
    return tables.map((table) => (this.versions.get(table) ?? 0) + everything);
  }

  bump(tables: Iterable<string>): void {
    for (const table of tables) this.versions.set(table, (this.versions.get(table) ?? 0) + 1);
  }

  cache<T>(name: string, tables: readonly TableName[]): ReadCache<T> {
    let cache = this.caches.get(name);
    if (!cache) {
      cache = new ReadCache<unknown>(this, tables);
      this.caches.set(name, cache);
    }
    return cache as ReadCache<T>;
  }
}

const MAX_ENTRIES = 10_000;

export class ReadCache<T> {
  private readonly entries = new Map<string, { value: T; at: number[] }>();

  constructor(
    private readonly versions: TableVersions,
    private readonly tables: readonly TableName[],
  ) {}

  /** The cached value if still exact, else `load()`'s, kept when nothing was written meanwhile. */
  async get(key: string, load: () => Promise<T>): Promise<T> {
    const before = this.versions.snapshot(this.tables);
    const hit = this.entries.get(key);
    if (hit && sameVersions(hit.at, before)) return copyOf(hit.value);
    const value = await load();
    const after = this.versions.snapshot(this.tables);
    // A write that finished meanwhile may or may not be in `value`.
    if (sameVersions(before, after)) this.keep(key, value, after);
    return value;
  }

  /**
   * Runs `write()`, a single statement to this cache's tables answering the
   * rows it left, by key (a key it does not answer has none), and keeps those
   * answers when no other write to those tables finished meanwhile (each
   * table moved by exactly its one bump). Every key in `keys` is retired.
   */
  async put(
    keys: readonly string[],
    write: () => Promise<Map<string, T>>,
  ): Promise<Map<string, T>> {
    const before = this.versions.snapshot(this.tables);
    const values = await write();
    const after = this.versions.snapshot(this.tables);
    for (const key of keys) this.entries.delete(key);
    if (after.every((v, i) => v === (before[i] ?? 0) + 1)) {
      for (const [key, value] of values) this.keep(key, value, after);
    }
    return values;
  }

  /** Keeps a copy of `value` as read at `at`, newest last; the oldest goes when full. */
  private keep(key: string, value: T, at: number[]): void {
    this.entries.delete(key);
    if (this.entries.size >= MAX_ENTRIES) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, { value: copyOf(value), at });
  }
}

/**
 * A deep copy of a cached value: rows made of plain objects, arrays, dates
 * and primitives are copied by hand, several times faster than
 * structuredClone (which serializes and parses); anything else goes
 * through structuredClone.
 */
export function copyOf<T>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  if (value instanceof Date) return new Date(value.getTime()) as T;
  if (Array.isArray(value)) return value.map(copyOf) as T;
  if (Object.getPrototypeOf(value) !== Object.prototype) return structuredClone(value);
  const copy: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) copy[k] = copyOf(v);
  return copy as T;
}

function sameVersions(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

const VERSIONS = new WeakMap<object, TableVersions>();

/**
 * `load()` through the store's named cache. Only a store opened by
 * `openStore` has one: a transaction (whose reads must see its own writes)
 * always loads.
 */
export function cachedRead<T>(
  db: Kysely<Database>,
  cache: string,
  tables: readonly TableName[],
  key: string,
  load: () => Promise<T>,
): Promise<T> {
  const versions = VERSIONS.get(db);
  return versions ? versions.cache<T>(cache, tables).get(key, load) : load();
}

/** `write()` through the store's named cache (see ReadCache.put); a transaction just writes. */
export function cachedWrite<T>(
  db: Kysely<Database>,
  cache: string,
  tables: readonly TableName[],
  keys: readonly string[],
  write: () => Promise<Map<string, T>>,
): Promise<Map<string, T>> {
  const versions = VERSIONS.get(db);
  return versions ? versions.cache<T>(cache, tables).put(keys, write) : write();
}

export function registerVersions(db: Kysely<Database>, versions: TableVersions): void {
  VERSIONS.set(db, versions);
}

/** The tables a statement may write, cascades included; none for a read. */
export function writtenTables(query: CompiledQuery): string[] {
  const node = query.query as { kind: string; into?: unknown; table?: unknown; from?: unknown };
  let direct: string | undefined;
  switch (node.kind) {
    case "SelectQueryNode":
      return [];
    case "InsertQueryNode":
      direct = tableName(node.into);
      break;
    case "UpdateQueryNode":
      direct = tableName(node.table);
      break;
    case "DeleteQueryNode":
      direct = tableName((node.from as { froms?: unknown[] } | undefined)?.froms?.[0]);
      break;
    default:
      // Raw SQL: a plain read is harmless, anything else may write anything.
      return /^\s*select\b/i.test(query.sql) ? [] : [ALL_TABLES];
  }
  if (!direct) return [ALL_TABLES];
  return [direct, ...(CASCADES[direct as TableName] ?? [])];
}

function tableName(node: unknown): string | undefined {
  const n = node as {
    kind?: string;
    node?: unknown;
    table?: { identifier?: { name?: string } };
  };
  if (n?.kind === "AliasNode") return tableName(n.node);
  if (n?.kind === "TableNode") return n.table?.identifier?.name;
  return undefined;
}

/** A dialect whose driver reports every write to `versions`. */
export function versionedDialect(inner: Dialect, versions: TableVersions): Dialect {
  return {
    createAdapter: () => inner.createAdapter(),
    createIntrospector: (db) => inner.createIntrospector(db),
    createQueryCompiler: () => inner.createQueryCompiler(),
    createDriver: () => new VersionedDriver(inner.createDriver(), versions),
  };
}

class VersionedConnection implements DatabaseConnection {
  /** Set while a transaction runs on this connection: the tables it wrote. */
  transactionWrites: Set<string> | undefined;

  constructor(
    readonly inner: DatabaseConnection,
    private readonly versions: TableVersions,
  ) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const tables = writtenTables(query);
    if (tables.length === 0) return this.inner.executeQuery<R>(query);
    if (this.transactionWrites) {
      // Visible to others only once committed: counted at the commit.
      for (const t of tables) this.transactionWrites.add(t);
      return this.inner.executeQuery<R>(query);
    }
    try {
      return await this.inner.executeQuery<R>(query);
    } finally {
      this.versions.bump(tables);
    }
  }

  streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    if (writtenTables(query).length > 0) throw new Error("streamed writes are not supported");
    return this.inner.streamQuery<R>(query, chunkSize);
  }

  endTransaction(): void {
    if (this.transactionWrites) this.versions.bump(this.transactionWrites);
    this.transactionWrites = undefined;
  }
}

class VersionedDriver implements Driver {
  private readonly wrapped = new WeakMap<DatabaseConnection, VersionedConnection>();

  constructor(
    private readonly inner: Driver,
    private readonly versions: TableVersions,
  ) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await this.inner.acquireConnection();
    let wrapper = this.wrapped.get(connection);
    if (!wrapper) {
      wrapper = new VersionedConnection(connection, this.versions);
      this.wrapped.set(connection, wrapper);
    }
    return wrapper;
  }

  async beginTransaction(c: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const v = c as VersionedConnection;
    await this.inner.beginTransaction(v.inner, settings);
    v.transactionWrites = new Set();
  }

  async commitTransaction(c: DatabaseConnection): Promise<void> {
    const v = c as VersionedConnection;
    try {
      await this.inner.commitTransaction(v.inner);
    } finally {
      v.endTransaction();
    }
  }

  async rollbackTransaction(c: DatabaseConnection): Promise<void> {
    const v = c as VersionedConnection;
    try {
      await this.inner.rollbackTransaction(v.inner);
    } finally {
      v.endTransaction();
    }
  }

  releaseConnection(c: DatabaseConnection): Promise<void> {
    return this.inner.releaseConnection((c as VersionedConnection).inner);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}
