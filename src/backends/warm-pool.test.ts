import { afterEach, describe, expect, it, vi } from "vitest";
import { WarmPool } from "./warm-pool.js";

/** The pool's own bookkeeping, with shells that are plain records (the real ones: local backend tests). */
function pool(options: { failFirst?: number; busy?: () => boolean } = {}) {
  let made = 0;
  let failures = options.failFirst ?? 0;
  const destroyed: string[] = [];
  const errors: string[] = [];
  const p = new WarmPool<{ id: string; key: string }>({
    async make(key) {
      if (failures > 0) {
        failures--;
        throw new Error("no room");
      }
      return { id: `${key}#${++made}`, key };
    },
    async destroy(shell) {
      destroyed.push(shell.id);
    },
    onError: (error, key) => errors.push(`${key}: ${(error as Error).message}`),
    ...(options.busy ? { busy: options.busy } : {}),
  });
  return { p, destroyed, errors, made: () => made };
}

describe("WarmPool", () => {
  it("fills each key to its target, one shell at a time, and refills after a take", async () => {
    const { p, made } = pool();
    p.configure(
      new Map([
        ["a", 2],
        ["b", 1],
        ["none", 0],
      ]),
    );
    await p.settled();
    expect(p.counts("a")).toEqual({ target: 2, ready: 2 });
    expect(p.counts("b")).toEqual({ target: 1, ready: 1 });
    expect(p.counts("none")).toEqual({ target: 0, ready: 0 });
    expect(made()).toBe(3);
    const taken = p.take("a");
    expect(taken?.key).toBe("a");
    expect(p.counts("a").ready).toBe(1);
    expect(p.take("other")).toBeUndefined();
    await p.settled();
    expect(p.counts("a").ready).toBe(2);
    expect(p.shells().map((s) => s.id)).not.toContain(taken?.id);
  });

  it("destroys shells of keys no longer wanted and beyond a lowered target", async () => {
    const { p, destroyed } = pool();
    p.configure(
      new Map([
        ["old", 2],
        ["kept", 3],
      ]),
    );
    await p.settled();
    p.configure(
      new Map([
        ["kept", 1],
        ["new", 1],
      ]),
    );
    await p.settled();
    const byKey = (key: string) => destroyed.filter((id) => id.startsWith(`${key}#`)).length;
    expect([byKey("old"), byKey("kept")]).toEqual([2, 2]);
    expect(
      p
        .shells()
        .map((s) => s.key)
        .sort(),
    ).toEqual(["kept", "new"]);
    expect(p.take("old")).toBeUndefined();
  });

  it("reports a failed build and tries that key again later, not in a loop", async () => {
    const { p, errors } = pool({ failFirst: 1 });
    p.configure(new Map([["a", 1]]));
    await p.settled();
    expect(errors).toEqual(["a: no room"]);
    expect(p.counts("a").ready).toBe(0);
    // A new configuration is a reason to try again at once.
    p.configure(new Map([["a", 1]]));
    await p.settled();
    expect(p.counts("a").ready).toBe(1);
  });

  describe("refill timing", () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    /** A pool of `size` ready shells for key "a", then fake timers. */
    async function filled(size: number, options: Parameters<typeof pool>[0] = {}) {
      const filledPool = pool(options);
      filledPool.p.configure(new Map([["a", size]]));
      await filledPool.p.settled();
      vi.useFakeTimers();
      return filledPool;
    }

    it("waits for takes to go quiet (100 ms), but never longer than 2 s after the first", async () => {
      const { p, made } = await filled(3);
      p.take("a");
      await vi.advanceTimersByTimeAsync(90);
      expect(made()).toBe(3);
      p.take("a"); // quiet again from here
      await vi.advanceTimersByTimeAsync(90);
      expect(made()).toBe(3);
      await vi.advanceTimersByTimeAsync(20);
      expect(made()).toBe(5);
      expect(p.counts("a").ready).toBe(3);
    });

    it("waits for starts still under way, but not past 2 s after the first take", async () => {
      let busy = true;
      const { p, made } = await filled(2, { busy: () => busy });
      p.take("a");
      await vi.advanceTimersByTimeAsync(500);
      expect(made()).toBe(2);
      busy = false;
      await vi.advanceTimersByTimeAsync(100);
      expect(made()).toBe(3);
      busy = true;
      p.take("a");
      await vi.advanceTimersByTimeAsync(1900);
      expect(made()).toBe(3);
      await vi.advanceTimersByTimeAsync(200);
      expect(made()).toBe(4);
    });

    it("a steady stream of takes still gets its refill, 2 s after the first take", async () => {
      const { p, made } = await filled(30);
      // A take every 80 ms never leaves the pool quiet for 100 ms.
      for (let elapsed = 0; elapsed < 1920; elapsed += 80) {
        expect(p.take("a")).toBeDefined();
        await vi.advanceTimersByTimeAsync(80);
      }
      expect(made()).toBe(30);
      expect(p.take("a")).toBeDefined();
      await vi.advanceTimersByTimeAsync(100);
      expect(made()).toBeGreaterThan(30);
    });
  });

  it("close destroys every ready shell and stops refilling", async () => {
    const { p, destroyed, made } = pool();
    p.configure(new Map([["a", 3]]));
    await p.settled();
    await p.close();
    expect(destroyed).toHaveLength(3);
    expect(p.shells()).toEqual([]);
    p.configure(new Map([["a", 3]]));
    await p.settled();
    expect(made()).toBe(3);
  });
});
