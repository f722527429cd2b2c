/** Order statistics for benchmark samples (milliseconds). */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Sequential round trips of `call`, in milliseconds. */
export async function timed(runs: number, call: (i: number) => Promise<unknown>) {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await call(i);
    samples.push(performance.now() - t0);
  }
  return samples;
}

export interface Figure {
  name: string;
  unit: "ms" | "MiB";
  median: number;
  p99: number;
  runs: number;
  reference?: string;
  /** median / reference median */
  ratio?: number;
}

export function figure(
  name: string,
  samples: number[],
  reference?: Figure,
  unit: Figure["unit"] = "ms",
): Figure {
  const median = percentile(samples, 50);
  return {
    name,
    unit,
    median: round(median),
    p99: round(percentile(samples, 99)),
    runs: samples.length,
    ...(reference ? { reference: reference.name, ratio: round(median / reference.median) } : {}),
  };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
