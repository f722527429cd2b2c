import { describe, expect, it } from "vitest";
import { Batcher } from "./batcher.js";

/** A batcher whose writes record their groups, and fail for any item in `failing`. */
function recording(failing: Set<number> = new Set(), maxItems?: number) {
  const groups: number[][] = [];
  let during: (() => void) | undefined;
  const batcher = new Batcher<number>(async (items) => {
    groups.push(items);
    during?.();
    during = undefined;
    await new Promise((r) => setTimeout(r, 5));
    const bad = items.find((i) => failing.has(i));
    if (bad !== undefined) throw new Error(`item ${bad} refused`);
  }, maxItems);
  return { batcher, groups, whileWriting: (f: () => void) => (during = f) };
}

describe("Batcher", () => {
  it("writes items submitted in one round of the event loop together", async () => {
    const { batcher, groups } = recording();
    await Promise.all([1, 2, 3].map((i) => batcher.submit(i)));
    expect(groups).toEqual([[1, 2, 3]]);
  });

  it("writes a lone item alone, and items submitted during a write in the next one", async () => {
    const { batcher, groups, whileWriting } = recording();
    const late: Promise<void>[] = [];
    whileWriting(() => late.push(batcher.submit(2), batcher.submit(3)));
    await batcher.submit(1);
    await Promise.all(late);
    expect(groups).toEqual([[1], [2, 3]]);
    await batcher.submit(4);
    expect(groups.at(-1)).toEqual([4]);
  });

  it("splits a burst into groups of at most maxItems", async () => {
    const { batcher, groups } = recording(new Set(), 2);
    await Promise.all([1, 2, 3, 4, 5].map((i) => batcher.submit(i)));
    expect(groups).toEqual([[1, 2], [3, 4], [5]]);
  });

  it("when a group fails, writes its items one by one: only the bad one's caller gets the error", async () => {
    const { batcher, groups } = recording(new Set([2]));
    const results = await Promise.allSettled([1, 2, 3].map((i) => batcher.submit(i)));
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason.message).toBe("item 2 refused");
    expect(groups).toEqual([[1, 2, 3], [1], [2], [3]]);
    // And it goes on writing afterwards.
    await batcher.submit(4);
    expect(groups.at(-1)).toEqual([4]);
  });
});
