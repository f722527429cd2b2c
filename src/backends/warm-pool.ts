/**
 * Prepared sandbox shells, kept ready per key so that a start takes one
 * instead of building it. A key names everything a shell was built for;
 * a start takes only a shell of its own key, so a changed profile never
 * gets an old shell: its key differs, and shells of keys no longer wanted
 * are destroyed.
 */
export interface WarmPoolHooks<Shell> {
  make(key: string): Promise<Shell>;
  destroy(shell: Shell): Promise<void>;
  onError(error: unknown, key: string): void;
  /** Whether starts are still under way: a refill after takes waits for them (up to its latest time). */
  busy?(): boolean;
}

export interface WarmPoolCounts {
  target: number;
  ready: number;
}

/**
 * A refill waits for takes to go quiet this long, and for starts still
 * under way: building a shell spawns processes and would slow the requests
 * that follow a start (its first exec, a burst of other starts). It waits
 * at most REFILL_MAX_WAIT_MS after the first take it follows, so that a
 * steady stream of starts still gets its shells back.
 */
const REFILL_QUIET_MS = 100;
const REFILL_MAX_WAIT_MS = 2000;
/** After a failed build, the pool waits this long before trying that key again. */
const RETRY_DELAY_MS = 5_000;

export class WarmPool<Shell> {
  private readonly ready = new Map<string, Shell[]>();
  private targets = new Map<string, number>();
  private readonly failedUntil = new Map<string, number>();
  private filling: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When a refill after the current run of takes must start at the latest. */
  private refillDueBy: number | undefined;
  private closed = false;

  constructor(private readonly hooks: WarmPoolHooks<Shell>) {}

  /** Sets how many shells to keep per key; shells of other keys, or beyond a target, go. */
  configure(targets: ReadonlyMap<string, number>): void {
    if (this.closed) return;
    this.targets = new Map([...targets].filter(([, size]) => size > 0));
    for (const [key, shells] of this.ready) {
      const surplus = shells.splice(this.targets.get(key) ?? 0);
      if (shells.length === 0) this.ready.delete(key);
      for (const shell of surplus) void this.destroyQuietly(shell, key);
    }
    this.failedUntil.clear();
    this.schedule(0);
  }

  /** A ready shell for `key`, if there is one; the pool refills behind it. */
  take(key: string): Shell | undefined {
    const shell = this.ready.get(key)?.shift();
    if (shell !== undefined && !this.closed && !this.filling) {
      const now = Date.now();
      this.refillDueBy ??= now + REFILL_MAX_WAIT_MS;
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.schedule(Math.max(0, Math.min(REFILL_QUIET_MS, this.refillDueBy - now)));
    }
    return shell;
  }

  counts(key: string): WarmPoolCounts {
    return { target: this.targets.get(key) ?? 0, ready: this.ready.get(key)?.length ?? 0 };
  }

  /** Every shell held now (ready ones; taken shells belong to their sandboxes). */
  shells(): Shell[] {
    return [...this.ready.values()].flat();
  }

  /** Resolves once no shell is being built (for tests and benchmarks: the pool is as full as it gets). */
  async settled(): Promise<void> {
    while (this.filling || this.timer) {
      if (this.filling) await this.filling;
      else await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Stops refilling and destroys every ready shell. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.filling;
    const all = [...this.ready].flatMap(([key, shells]) => shells.map((s) => [key, s] as const));
    this.ready.clear();
    await Promise.all(all.map(([key, shell]) => this.destroyQuietly(shell, key)));
  }

  private schedule(delayMs: number): void {
    if (this.closed || this.filling || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const due = this.refillDueBy;
      if (due !== undefined && Date.now() < due && this.hooks.busy?.()) {
        this.schedule(Math.min(REFILL_QUIET_MS, due - Date.now()));
        return;
      }
      this.refillDueBy = undefined;
      this.filling = this.fill().finally(() => {
        this.filling = undefined;
      });
    }, delayMs);
  }

  /** Builds one shell at a time, for the key furthest below its target. */
  private async fill(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      const key = this.neediest();
      if (key === undefined) return;
      let shell: Shell;
      try {
        shell = await this.hooks.make(key);
      } catch (error) {
        this.hooks.onError(error, key);
        this.failedUntil.set(key, Date.now() + RETRY_DELAY_MS);
        continue;
      }
      const shells = this.ready.get(key) ?? [];
      if (this.closed || shells.length >= (this.targets.get(key) ?? 0)) {
        await this.destroyQuietly(shell, key);
        continue;
      }
      shells.push(shell);
      this.ready.set(key, shells);
    }
  }

  private neediest(): string | undefined {
    let best: string | undefined;
    let bestGap = 0;
    const now = Date.now();
    let retryAt = Number.POSITIVE_INFINITY;
    for (const [key, target] of this.targets) {
      const until = this.failedUntil.get(key) ?? 0;
      const gap = target - (this.ready.get(key)?.length ?? 0);
      if (gap <= 0) continue;
      if (until > now) {
        retryAt = Math.min(retryAt, until);
        continue;
      }
      if (gap > bestGap) {
        best = key;
        bestGap = gap;
      }
    }
    if (best === undefined && retryAt !== Number.POSITIVE_INFINITY) {
      // Come back when the failed key may be tried again (after this fill ends).
      setTimeout(() => this.schedule(0), retryAt - now).unref();
    }
    return best;
  }

  private async destroyQuietly(shell: Shell, key: string): Promise<void> {
    try {
      await this.hooks.destroy(shell);
    } catch (error) {
      this.hooks.onError(error, key);
    }
  }
}
