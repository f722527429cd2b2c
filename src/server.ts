import { fork } from "node:child_process";
import type { Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { sql } from "kysely";
import { type Logger, pino } from "pino";
import { localBackendOptions } from "./backends/local/local-backend.js";
import { bootstrap, DEFAULT_ORG, LOCAL_RUNNER } from "./bootstrap.js";
import { type Clock, systemClock } from "./clock.js";
import { parseListen, type ServeConfig } from "./config.js";
import { createApp } from "./http/app.js";
import { attachWebSockets } from "./http/websocket.js";
import { IdentityService } from "./identity/identity-service.js";
import { identityRoutes } from "./identity/routes.js";
import { ProfileService } from "./profiles/profile-service.js";
import { profileRoutes } from "./profiles/routes.js";
import { RunnerHub } from "./runners/hub.js";
import type { ChildMessage, ParentMessage } from "./runners/local-runner-process.js";
import { metricsRoute } from "./runners/metrics.js";
import type { AgentMessage, ControlMessage, Link } from "./runners/protocol.js";
import { runnerRoutes } from "./runners/routes.js";
import { RunnerService } from "./runners/runner-service.js";
import { sandboxRoutes } from "./sandboxes/routes.js";
import { SandboxService } from "./sandboxes/sandbox-service.js";
import { type Db, type OpenedStore, openStore, type StoreLocation } from "./store/database.js";
import { PACKAGE_ROOT, VERSION } from "./version.js";

export interface Services {
  identity: IdentityService;
  profiles: ProfileService;
  runners: RunnerService;
  hub: RunnerHub;
  sandboxes: SandboxService;
}

/** The composition root: every service wired by hand over one store. */
export function buildServices(
  store: OpenedStore,
  logger: Logger,
  clock: Clock = systemClock,
): Services {
  const identity = new IdentityService(store.db, clock);
  const hub = new RunnerHub(store.db, logger, clock);
  return {
    identity,
    profiles: new ProfileService(store.db, clock, undefined, (org) => hub.refreshWarmPools(org)),
    runners: new RunnerService(store.db, identity, clock, (org) => hub.refreshWarmPools(org)),
    hub,
    sandboxes: new SandboxService(store.db, hub, clock),
  };
}

export interface LocalRunnerHandle {
  /** Ends the runner; its sandboxes end with it, their files stay for logs. */
  close(): Promise<void>;
  /** Deletes every sandbox of the runner, then ends it (tests). */
  removeAll(): Promise<void>;
}

/**
 * Starts the embedded local runner as a child process connected to the hub
 * over the IPC channel: the same agent and protocol as `paddock runner start`.
 */
export async function startLocalRunner(
  services: Services,
  options: { dataDir: string; organizationId: string; runnerId: string; kubeconfig?: string },
  logger: Logger,
): Promise<LocalRunnerHandle> {
  const backendOptions = localBackendOptions(options.dataDir, process.env);
  const child = fork(join(PACKAGE_ROOT, "dist", "runners", "local-runner-process.js"), [], {
    env: {
      ...process.env,
      ...(options.kubeconfig ? { PADDOCK_EMBEDDED_KUBECONFIG: options.kubeconfig } : {}),
      PADDOCK_LOCAL_RUNNER: JSON.stringify(backendOptions),
      PADDOCK_LOG_LEVEL: logger.level,
    },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    serialization: "advanced",
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const listeners: ((m: AgentMessage) => void)[] = [];
  const closeListeners: (() => void)[] = [];
  child.on("message", (m: ChildMessage) => {
    if (m.kind === "message") for (const l of listeners) l(m.message);
  });
  child.once("exit", (code, signal) => {
    for (const l of closeListeners) l();
    if (code !== 0) logger.error({ code, signal }, "the local runner exited");
  });
  const link: Link<ControlMessage, AgentMessage> = {
    send: (message) => {
      if (child.connected) child.send({ kind: "message", message } satisfies ParentMessage);
    },
    onMessage: (l) => listeners.push(l),
    onClose: (l) => closeListeners.push(l),
    close: () => child.kill("SIGTERM"),
  };
  services.hub.attach(link, options.organizationId, options.runnerId);
  await services.hub.waitForHello(options.organizationId, options.runnerId, 15_000);
  const shutdown = async (removeAll: boolean) => {
    if (child.connected) child.send({ kind: "shutdown", removeAll } satisfies ParentMessage);
    else child.kill("SIGTERM");
    await exited;
  };
  return { close: () => shutdown(false), removeAll: () => shutdown(true) };
}

export function buildApp(store: OpenedStore, services: Services, logger: Logger) {
  return createApp({
    identity: services.identity,
    routes: [
      ...identityRoutes(services.identity),
      ...profileRoutes(services.profiles),
      ...runnerRoutes(services.runners, services.sandboxes),
      ...sandboxRoutes(services.sandboxes),
      metricsRoute(services.hub),
    ],
    logger,
    version: VERSION,
    ready: async () => {
      try {
        await sql`select 1`.execute(store.db);
        return true;
      } catch {
        return false;
      }
    },
  });
}

export interface RunningServer {
  url: string;
  /** The server's store, for tools in the same process (the benchmarks seed it). */
  db: Db;
  close(): Promise<void>;
}

export function storeLocation(config: ServeConfig): StoreLocation {
  return config.databaseUrl
    ? { kind: "postgres", url: config.databaseUrl }
    : { kind: "embedded", dataDir: config.dataDir };
}

export async function startServer(
  config: ServeConfig,
  logger: Logger = pino({ level: config.logLevel }),
): Promise<RunningServer> {
  const store = await openStore(storeLocation(config));
  const services = buildServices(store, logger);
  const boot = await bootstrap(store.db, {
    localRunner: config.localRunner,
    bootstrapToken: config.bootstrapToken,
    dataDir: config.dataDir,
    clock: systemClock,
  });
  if (boot.created)
    logger.info(
      { tokenFile: boot.tokenFile },
      "bootstrapped organization 'default' and user 'admin'",
    );
  const localRunner = config.localRunner
    ? await startLocalRunner(
        services,
        {
          dataDir: config.dataDir,
          organizationId: DEFAULT_ORG,
          runnerId: LOCAL_RUNNER,
          ...(config.kubeconfig ? { kubeconfig: config.kubeconfig } : {}),
        },
        logger,
      )
    : undefined;
  const app = buildApp(store, services, logger);
  const { host, port } = parseListen(config.listen);
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s));
    s.once("error", reject);
  });
  attachWebSockets(server as unknown as HttpServer, { ...services, logger });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${shownHost}:${address.port}`;
  return {
    url,
    db: store.db,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      // Sandboxes end with the runner; their records say so before the store closes.
      await localRunner?.close();
      await new Promise((resolve) => setImmediate(resolve));
      await services.hub.idle();
      await store.close();
    },
  };
}
