import { rmSync } from "node:fs";
import { pino } from "pino";
import { bootstrap } from "../../src/bootstrap.js";
import { systemClock } from "../../src/clock.js";
import type { RunnerHub } from "../../src/runners/hub.js";
import { buildApp, buildServices, startLocalRunner } from "../../src/server.js";
import { type OpenedStore, openStore, type StoreLocation } from "../../src/store/database.js";
import { tempDir } from "./process.js";

export interface TestResponse {
  status: number;
  body: any;
}

export interface TestApp {
  store: OpenedStore;
  adminToken: string;
  call(method: string, path: string, body?: unknown, token?: string): Promise<TestResponse>;
  /** Sends a raw body text (for syntax and duplicate-key tests). */
  callRaw(method: string, path: string, text: string, token?: string): Promise<TestResponse>;
  /** The raw Response (binary bodies, streams); the admin token unless `token` is given. */
  fetch(method: string, path: string, token?: string): Promise<Response>;
  close(): Promise<void>;
}

export const ADMIN_TOKEN = "pdk_test-admin-token";

/** The real app on an in-memory PGlite store (or the given one), called in-process. */
export async function startTestApp(
  location: StoreLocation = { kind: "memory" },
  /** `kubeconfig`: the embedded runner places sandboxes on that cluster instead. */
  options: { localRunner?: boolean; kubeconfig?: string } = {},
): Promise<TestApp> {
  const store = await openStore(location);
  const dataDir = tempDir();
  await bootstrap(store.db, {
    localRunner: true,
    bootstrapToken: ADMIN_TOKEN,
    dataDir,
    clock: systemClock,
  });
  const logger = pino({ level: process.env.PADDOCK_TEST_LOG ?? "silent" });
  const services = buildServices(store, logger);
  const localRunner = options.localRunner
    ? await startLocalRunner(
        services,
        {
          dataDir,
          organizationId: "default",
          runnerId: "local",
          ...(options.kubeconfig ? { kubeconfig: options.kubeconfig } : {}),
        },
        logger,
      )
    : undefined;
  if (localRunner) await waitForRunner(services.hub);
  const app = buildApp(store, services, logger);
  const callRaw = async (
    method: string,
    path: string,
    text: string | undefined,
    token = ADMIN_TOKEN,
  ) => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (text !== undefined) headers["content-type"] = "application/json";
    const response = await app.request(path, {
      method,
      headers,
      ...(text !== undefined ? { body: text } : {}),
    });
    const raw = await response.text();
    let body: unknown = raw;
    try {
      body = JSON.parse(raw);
    } catch {}
    return { status: response.status, body };
  };
  return {
    store,
    adminToken: ADMIN_TOKEN,
    call: (method, path, body, token) =>
      callRaw(method, path, body === undefined ? undefined : JSON.stringify(body), token),
    callRaw: (method, path, text, token) => callRaw(method, path, text, token),
    fetch: (method, path, token = ADMIN_TOKEN) =>
      Promise.resolve(app.request(path, { method, headers: { authorization: `Bearer ${token}` } })),
    async close() {
      await localRunner?.removeAll();
      await services.hub.idle();
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function waitForRunner(hub: RunnerHub): Promise<void> {
  for (let i = 0; i < 200 && !hub.isConnected("default", "local"); i++)
    await new Promise((r) => setTimeout(r, 10));
  if (!hub.isConnected("default", "local")) {
    throw new Error(
      `the local runner did not connect: ${hub.unavailableReason("default", "local") ?? "no reason given"}`,
    );
  }
}
