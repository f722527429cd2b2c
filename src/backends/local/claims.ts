import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

/**
 * Host-wide claims on numbered slots (sandbox uids, network addresses): one
 * file per slot, created exclusively, so that every Paddock runner on the
 * host agrees on who holds what. The file holds its owner.
 */
export class SlotClaims {
  constructor(
    private readonly dir: string,
    private readonly size: number,
    private readonly what: string,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** Where the next claim without a preference starts looking: after the last one. */
  private cursor = 0;

  /**
   * The first free slot from `preferred` on. Without one, from after the
   * last slot this process claimed: each claim then tries about one file,
   * not every slot in use, and a slot just released is not handed out again
   * at once.
   */
  claim(owner: string, preferred = this.cursor): number {
    for (let i = 0; i < this.size; i++) {
      const slot = (preferred + i) % this.size;
      try {
        const fd = openSync(join(this.dir, String(slot)), "wx", 0o600);
        writeFileSync(fd, owner);
        closeSync(fd);
        this.cursor = (slot + 1) % this.size;
        return slot;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
    }
    throw new Error(`no free ${this.what} left on this host (${this.size} in use)`);
  }

  release(slot: number): void {
    rmSync(join(this.dir, String(slot)), { force: true });
  }

  owned(ownerPrefix: string): { slot: number; owner: string }[] {
    const out: { slot: number; owner: string }[] = [];
    for (const name of readdirSync(this.dir)) {
      try {
        const owner = readFileSync(join(this.dir, name), "utf8");
        if (owner.startsWith(ownerPrefix)) out.push({ slot: Number(name), owner });
      } catch {
        // released meanwhile
      }
    }
    return out;
  }
}
