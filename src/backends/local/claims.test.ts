import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SlotClaims } from "./claims.js";

describe("SlotClaims", () => {
  const dirs: string[] = [];
  const claims = (size: number) => {
    const dir = mkdtempSync(join(tmpdir(), "paddock-claims-"));
    dirs.push(dir);
    return { dir, claims: new SlotClaims(dir, size, "slots") };
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("claims each slot once across holders; a preferred slot first, else the next free one", () => {
    const { dir, claims: a } = claims(4);
    const b = new SlotClaims(dir, 4, "slots");
    expect(a.claim("a/1", 2)).toBe(2);
    expect(b.claim("b/1", 2)).toBe(3);
    expect(a.owned("a/")).toEqual([{ slot: 2, owner: "a/1" }]);
    expect(readdirSync(dir).sort()).toEqual(["2", "3"]);
  });

  it("without a preference, goes on after its last claim: a slot just released is not handed out again at once", () => {
    const { claims: c } = claims(4);
    expect(c.claim("x/1")).toBe(0);
    expect(c.claim("x/2")).toBe(1);
    c.release(0);
    expect(c.claim("x/3")).toBe(2);
    expect(c.claim("x/4")).toBe(3);
    // Round the end: the released slot is the free one.
    expect(c.claim("x/5")).toBe(0);
    expect(() => c.claim("x/6")).toThrow("no free slots left on this host (4 in use)");
  });
});
