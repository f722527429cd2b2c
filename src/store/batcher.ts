/**
 * Groups writes submitted close together into one: items wait for the event
 * loop's next check phase (setImmediate), so everything that arrived in the
 * same round of I/O (a burst of requests) goes in one write, and items
 * submitted while a write is under way go in the next. PGlite runs a
 * statement synchronously, so without the wait nothing would ever queue up.
 * A lone write waits for nothing but the end of the current round. When a
 * group's write fails, its items run again one by one, so that each caller
 * gets its own answer (a unique violation, say).
 */
export class Batcher<T> {
  private waiting: { item: T; resolve(): void; reject(error: unknown): void }[] = [];
  private running = false;

  constructor(
    private readonly write: (items: T[]) => Promise<void>,
    private readonly maxItems = 100,
  ) {}

  submit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (!this.running) {
        this.running = true;
        setImmediate(() => void this.run());
      }
    });
  }

  private async run(): Promise<void> {
    while (this.waiting.length > 0) {
      const group = this.waiting.splice(0, this.maxItems);
      try {
        await this.write(group.map((g) => g.item));
        for (const g of group) g.resolve();
      } catch (error) {
        if (group.length === 1) group[0]?.reject(error);
        else {
          for (const g of group) {
            await this.write([g.item]).then(g.resolve, g.reject);
          }
        }
      }
    }
    this.running = false;
  }
}
