import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

type Answer<T> = { value: T } | { error: string };

/**
 * Runs the module at `moduleUrl` on a worker thread with `data`, and resolves
 * with what its answerFromWorker work answers: a load with its own event
 * loop, so that the server under test does not delay its sending or timing.
 */
export function inWorker<T>(moduleUrl: string, data: unknown, name: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(moduleUrl), { workerData: data });
    worker.once("message", (answer: Answer<T>) =>
      "error" in answer ? reject(new Error(`${name}: ${answer.error}`)) : resolve(answer.value),
    );
    worker.once("error", reject);
    worker.once("exit", (code) => {
      if (code !== 0) reject(new Error(`the ${name} worker exited with ${code}`));
    });
  });
}

/** On a worker thread started by inWorker: answers with `work(data)`. Nothing on the main thread. */
export function answerFromWorker<D, T>(work: (data: D) => Promise<T>): void {
  if (isMainThread || !parentPort) return;
  const port = parentPort;
  void work(workerData as D).then(
    (value) => port.postMessage({ value } satisfies Answer<T>),
    (error: unknown) => port.postMessage({ error: String(error) } satisfies Answer<T>),
  );
}
