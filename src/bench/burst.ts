import { PaddockClient } from "../client/client.js";
import { answerFromWorker, inWorker } from "./worker.js";

interface BurstOptions {
  url: string;
  token: string;
  count: number;
}

/**
 * `count` sandbox starts sent at once, each waiting until its sandbox runs,
 * from a worker thread: the clients have their own event loop, as separate
 * users would. Sent from the server's own event loop, each connection waits
 * for the server's work of the round before it is even opened, which spreads
 * the burst out and measures the two loops sharing, not the server.
 */
export function concurrentStarts(
  url: string,
  token: string,
  count: number,
): Promise<{ ms: number; ids: string[] }> {
  return inWorker(import.meta.url, { url, token, count } satisfies BurstOptions, "burst");
}

answerFromWorker(({ url, token, count }: BurstOptions) =>
  burst(new PaddockClient(url, token), count),
);

async function burst(client: PaddockClient, count: number): Promise<{ ms: number; ids: string[] }> {
  // A fresh thread compiles its HTTP client first: untimed.
  for (let i = 0; i < 20; i++) await client.get("/healthz");
  const t0 = performance.now();
  const started = await Promise.all(
    Array.from({ length: count }, () =>
      client.post<{ sandboxId: string; sandboxStatus: string }>("/v1beta2/sandboxes?wait=true", {}),
    ),
  );
  const ms = performance.now() - t0;
  const notRunning = started.filter((b) => b.sandboxStatus !== "SANDBOX_STATUS_RUNNING").length;
  if (notRunning > 0) throw new Error(`${notRunning} of ${count} concurrent starts did not run`);
  return { ms, ids: started.map((b) => b.sandboxId) };
}
