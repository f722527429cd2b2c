import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { sql } from "kysely";
import { type Logger, pino } from "pino";
import { bootstrap } from "./bootstrap.js";
import { type Clock, systemClock } from "./clock.js";
import { parseListen, type ServeConfig } from "./config.js";
import { createApp } from "./http/app.js";
import { IdentityService } from "./identity/identity-service.js";
import { identityRoutes } from "./identity/routes.js";
import { ProfileService } from "./profiles/profile-service.js";
import { profileRoutes } from "./profiles/routes.js";
import { runnerRoutes } from "./runners/routes.js";
import { RunnerService } from "./runners/runner-service.js";
import { type OpenedStore, openStore, type StoreLocation } from "./store/database.js";
import { VERSION } from "./version.js";

export interface Services {
  identity: IdentityService;
  profiles: ProfileService;
  runners: RunnerService;
}

/** The composition root: every service wired by hand over one store. */
export function buildServices(store: OpenedStore, clock: Clock = systemClock): Services {
  const identity = new IdentityService(store.db, clock);
  return {
    identity,
    profiles: new ProfileService(store.db, clock),
    runners: new RunnerService(store.db, identity, clock),
  };
}

export function buildApp(store: OpenedStore, services: Services, logger: Logger) {
  return createApp({
    identity: services.identity,
    routes: [
      ...identityRoutes(services.identity),
      ...profileRoutes(services.profiles),
      ...runnerRoutes(services.runners),
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
  const services = buildServices(store);
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
  const app = buildApp(store, services, logger);
  const { host, port } = parseListen(config.listen);
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s));
    s.once("error", reject);
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${shownHost}:${address.port}`;
  return {
    url,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await store.close();
    },
  };
}
