import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPostgres, type TestPostgres } from "../testing/postgres.js";
import { type OpenedStore, openStore } from "./database.js";
import { cachedRead, cachedWrite, copyOf, writtenTables } from "./read-cache.js";

// On PostgreSQL a read runs beside an open transaction (a pool); PGlite
// runs one statement at a time, so the same read waits for the commit.
describe.each(["pglite", "postgres"])("read cache on %s", (kind) => {
  let store: OpenedStore;
  let postgres: TestPostgres | undefined;

  beforeAll(async () => {
    if (kind === "postgres") {
      postgres = await startPostgres();
      store = await openStore({ kind: "postgres", url: await postgres.newDatabase() });
    } else {
      store = await openStore({ kind: "memory" });
    }
    await store.db
      .insertInto("organizations")
      .values({
        organization_id: "org-a",
        display_name: "A",
        max_cpu: "",
        max_memory: "",
        created_at: new Date(),
        updated_at: new Date(),
      })
      .execute();
  });

  afterAll(async () => {
    await store?.close();
    await postgres?.stop();
  });

  const readerNames = new WeakMap<object, string>();
  const readerName = (read: object) => readerNames.get(read) ?? "";

  /** Reads org-a's display name through the cache, counting real loads. */
  function reader() {
    const counter = { loads: 0 };
    const name = `test-${Math.random()}`;
    /** `during` runs after the row was read, before the load returns. */
    const read = (during?: () => Promise<unknown>) =>
      cachedRead(store.db, name, ["organizations"], "org-a", async () => {
        counter.loads++;
        const row = await store.db
          .selectFrom("organizations")
          .select("display_name")
          .where("organization_id", "=", "org-a")
          .executeTakeFirstOrThrow();
        await during?.();
        return row.display_name;
      });
    readerNames.set(read, name);
    return { counter, read };
  }

  function rename(db: OpenedStore["db"], name: string) {
    return db
      .updateTable("organizations")
      .set({ display_name: name })
      .where("organization_id", "=", "org-a")
      .execute();
  }

  describe("writtenTables", () => {
    const db = () => store.db;
    it("sees reads as writing nothing, and a write's table with what its deletes cascade to", () => {
      expect(writtenTables(db().selectFrom("sandboxes").selectAll().compile())).toEqual([]);
      expect(writtenTables(db().updateTable("sandboxes").set({ status: "x" }).compile())).toEqual([
        "sandboxes",
      ]);
      expect(writtenTables(db().deleteFrom("runners").compile())).toEqual([
        "runners",
        "runner_bindings",
        "api_tokens",
        "sandboxes",
      ]);
      expect(writtenTables(db().deleteFrom("users as u").compile())).toEqual([
        "users",
        "api_tokens",
      ]);
    });

    it("takes raw SQL other than a select as writing every table", () => {
      expect(writtenTables(sql`select 1`.compile(db()))).toEqual([]);
      expect(writtenTables(sql`truncate sandboxes`.compile(db()))).toEqual(["*"]);
    });
  });

  describe("cachedRead", () => {
    it("answers from the cache until its table is written, then reads the new value", async () => {
      const { counter, read } = reader();
      await rename(store.db, "first");
      expect(await read()).toBe("first");
      expect(await read()).toBe("first");
      expect(counter.loads).toBe(1);
      await rename(store.db, "second");
      expect(await read()).toBe("second");
      expect(counter.loads).toBe(2);
    });

    it("a write to another table leaves the cached value alone", async () => {
      const { counter, read } = reader();
      await read();
      await store.db
        .deleteFrom("sandboxes")
        .where("sandbox_id", "=", crypto.randomUUID())
        .execute();
      await read();
      expect(counter.loads).toBe(1);
    });

    it("a transaction's writes retire what was read while it ran, at its commit", async () => {
      const { counter, read } = reader();
      await rename(store.db, "before");
      let release!: () => void;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      let written!: () => void;
      const wrote = new Promise<void>((resolve) => {
        written = resolve;
      });
      const transaction = store.db.transaction().execute(async (trx) => {
        await rename(trx, "inside");
        written();
        await held;
      });
      await wrote;
      const during = read();
      if (kind === "postgres") expect(await during).toBe("before");
      release();
      await transaction;
      if (kind === "pglite") expect(await during).toBe("inside");
      expect(await read()).toBe("inside");
      expect(counter.loads).toBe(2);
    });

    it("a rolled-back transaction retires what was read meanwhile", async () => {
      const { counter, read } = reader();
      await rename(store.db, "kept");
      await read();
      await expect(
        store.db.transaction().execute(async (trx) => {
          await rename(trx, "undone");
          throw new Error("roll back");
        }),
      ).rejects.toThrow("roll back");
      expect(await read()).toBe("kept");
      expect(counter.loads).toBe(2);
    });

    it("does not keep a value read while a write ran", async () => {
      const { counter, read } = reader();
      await rename(store.db, "old");
      // The load reads "old", then a write lands before the load returns.
      expect(await read(() => rename(store.db, "new"))).toBe("old");
      expect(await read()).toBe("new");
      expect(counter.loads).toBe(2);
    });

    it("hands out copies: a caller changing its value does not change the cache", async () => {
      const name = `copy-${Math.random()}`;
      const read = () =>
        cachedRead(store.db, name, ["organizations"], "k", async () => ({ tags: ["a"] }));
      (await read()).tags.push("changed");
      (await read()).tags.push("changed");
      expect((await read()).tags).toEqual(["a"]);
    });

    it("a write through the cache leaves its answer for the next read", async () => {
      const { counter, read } = reader();
      const renamed = (name: string, during?: () => Promise<unknown>) =>
        cachedWrite(store.db, readerName(read), ["organizations"], ["org-a"], async () => {
          const rows = await store.db
            .updateTable("organizations")
            .set({ display_name: name })
            .where("organization_id", "in", ["org-a", "org-b"])
            .returning(["organization_id", "display_name"])
            .execute();
          await during?.();
          return new Map(rows.map((r) => [r.organization_id, r.display_name]));
        }).then((rows) => rows.get("org-a"));
      expect(await renamed("written")).toBe("written");
      expect(await read()).toBe("written");
      expect(counter.loads).toBe(0);
      // Another write finishing meanwhile: the answer may be stale, so it is not kept.
      expect(await renamed("mine", () => rename(store.db, "theirs"))).toBe("mine");
      expect(await read()).toBe("theirs");
      expect(counter.loads).toBe(1);
    });

    it("a transaction's own reads never use the cache", async () => {
      const { counter } = reader();
      await store.db.transaction().execute(async (trx) => {
        const load = async () => {
          counter.loads++;
          return "x";
        };
        await cachedRead(trx, "in-trx", ["organizations"], "k", load);
        await cachedRead(trx, "in-trx", ["organizations"], "k", load);
      });
      expect(counter.loads).toBe(2);
    });
  });
});

describe("copyOf", () => {
  it("copies rows deeply: nested objects, arrays and dates are new, values equal", () => {
    const at = new Date("2026-01-02T03:04:05.006Z");
    const newRow = () => ({
      id: "a",
      n: 1,
      none: null,
      at,
      spec: { env: { A: "1" }, ports: [1, 2] },
      tags: ["x"],
    });
    const row = newRow();
    const copy = copyOf(row);
    expect(copy).toEqual(row);
    expect(copy.at).not.toBe(at);
    expect(copy.at.getTime()).toBe(at.getTime());
    copy.spec.env.A = "changed";
    copy.spec.ports.push(3);
    copy.tags.push("y");
    expect(row).toEqual(newRow());
  });

  it("copies what is not a plain object (a Map, a Buffer) as structuredClone would", () => {
    const value = { m: new Map([["k", { v: 1 }]]), b: Buffer.from("hi") };
    const copy = copyOf(value);
    expect(copy.m).not.toBe(value.m);
    expect(copy.m.get("k")).toEqual({ v: 1 });
    (copy.m.get("k") as { v: number }).v = 2;
    expect(value.m.get("k")).toEqual({ v: 1 });
    expect(Buffer.from(copy.b).toString()).toBe("hi");
  });
});
