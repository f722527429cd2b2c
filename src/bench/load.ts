import http from "node:http";
import { answerFromWorker, inWorker } from "./worker.js";

export interface FixedRateOptions {
  url: string;
  token: string;
  paths: string[];
  ratePerSecond: number;
  requests: number;
  clients: number;
}

/**
 * fixedRateLatencies on a worker thread: the load has its own event loop,
 * so the server's work (or its garbage collection) does not delay the
 * sending and the timing of requests.
 */
export function fixedRateLatenciesInWorker(options: FixedRateOptions): Promise<number[]> {
  return inWorker(import.meta.url, options, "load");
}

// A fresh thread compiles its HTTP client first: one untimed second of the same load.
answerFromWorker((options: FixedRateOptions) =>
  fixedRateLatencies({ ...options, requests: options.ratePerSecond }).then(() =>
    fixedRateLatencies(options),
  ),
);

/**
 * Open-loop load at a fixed request rate over a fixed pool of keep-alive
 * connections (the "clients"). Each latency is measured from when the
 * request was due, not from when a connection was free, so that a slow
 * server cannot hide its queueing (no coordinated omission).
 */
export async function fixedRateLatencies(options: FixedRateOptions): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.clients });
  const target = new URL(options.url);
  const once = (path: string) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: target.hostname,
          port: target.port,
          path,
          agent,
          headers: { authorization: `Bearer ${options.token}` },
        },
        (res) => {
          res.resume();
          res.on("end", () =>
            res.statusCode === 200 ? resolve() : reject(new Error(`${path}: ${res.statusCode}`)),
          );
        },
      );
      req.on("error", reject);
      req.end();
    });
  const latencies: number[] = [];
  const interval = 1000 / options.ratePerSecond;
  const start = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < options.requests; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const path = options.paths[i % options.paths.length] ?? "/";
    // Sent up to 1 ms early (a timer that short is not worth it): then timed from sending.
    const from = Math.min(due, performance.now());
    inFlight.push(once(path).then(() => void latencies.push(performance.now() - from)));
  }
  await Promise.all(inFlight);
  agent.destroy();
  return latencies;
}
