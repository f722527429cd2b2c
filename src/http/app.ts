import { randomUUID } from "node:crypto";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Logger } from "pino";
import * as z from "zod";
import { AppError } from "../errors.js";
import type { Principal } from "../identity/identity.js";
import type { IdentityService } from "../identity/identity-service.js";
import { PayloadSyntaxError, parseStrictJson } from "../wire/strict-json.js";
import { openApiDocument } from "./openapi.js";
import type { Route, RouteContext } from "./route.js";
import { internalError, toRpcStatus } from "./status.js";

/** Methods whose requests carry no body Paddock reads. */
const READS = new Set(["GET", "HEAD", "OPTIONS"]);

/** 32 MiB of file content is about 43 MiB once base64-encoded in JSON. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

export interface AppDeps {
  identity: IdentityService;
  routes: Route[];
  logger: Logger;
  version: string;
  /** Answers whether the store is reachable, for /readyz. */
  ready(): Promise<boolean>;
}

export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  const { logger } = deps;

  const builtIn: Route[] = [
    {
      method: "get",
      path: "/healthz",
      tag: "health",
      summary: "Liveness: the process serves requests",
      public: true,
      response: z.strictObject({ status: z.string() }),
      handle: async () => ({ status: "ok" }),
    },
    {
      method: "get",
      path: "/readyz",
      tag: "health",
      summary: "Readiness: the store answers",
      public: true,
      response: z.strictObject({ status: z.string() }),
      async handle() {
        if (!(await deps.ready()))
          throw new AppError("UNAVAILABLE", "store is not reachable", {
            reason: "STORE_UNAVAILABLE",
          });
        return { status: "ready" };
      },
    },
  ];
  const routes = [...builtIn, ...deps.routes];
  const openapi = openApiDocument(
    [
      ...routes,
      {
        method: "get",
        path: "/openapi.json",
        tag: "health",
        summary: "This document",
        public: true,
        response: z.object({}).loose(),
        handle: async () => ({}),
      },
    ],
    deps.version,
  );
  const openapiText = JSON.stringify(openapi);

  app.onError((error, c) => {
    const appError = error instanceof AppError ? error : undefined;
    if (!appError) logger.error({ err: error, path: c.req.path }, "unhandled error");
    const { httpStatus, body } = toRpcStatus(appError ?? internalError());
    return c.json(body, httpStatus as 400);
  });
  app.notFound((c) => {
    const { httpStatus, body } = toRpcStatus(
      new AppError("NOT_FOUND", `no route for ${c.req.method} ${c.req.path}`, {
        reason: "ROUTE_NOT_FOUND",
      }),
    );
    return c.json(body, httpStatus as 404);
  });

  app.use(async (c, next) => {
    const started = performance.now();
    const requestId = c.req.header("x-request-id") ?? randomUUID();
    c.header("x-request-id", requestId);
    await next();
    logger.debug(
      {
        requestId,
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        durationMs: Math.round(performance.now() - started),
      },
      "request",
    );
  });
  const limitBody = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: () => {
      throw new AppError(
        "INVALID_ARGUMENT",
        `request body is larger than ${MAX_BODY_BYTES} bytes`,
        {
          reason: "BODY_TOO_LARGE",
        },
      );
    },
  });
  // Only where a body is read: looking for one builds the request's fetch
  // Request (and its AbortSignal), which a get never needs.
  app.use((c, next) => (READS.has(c.req.method) ? next() : limitBody(c, next)));

  app.get("/openapi.json", (c) => c.body(openapiText, 200, { "content-type": "application/json" }));

  for (const route of routes) {
    let honoPath = route.path.replace(/\{(\w+)\}/g, ":$1");
    if (route.greedyLastParam) honoPath += "{.+}";
    app.on(route.method.toUpperCase(), honoPath, async (c) => {
      let principal: Principal | undefined;
      if (!route.public)
        principal = await authenticate(deps.identity, c.req.header("authorization"));
      let bodyCache: unknown;
      const ctx: RouteContext = {
        principal: principal as Principal,
        params: c.req.param() as Record<string, string>,
        query: new URL(c.req.url).searchParams,
        hono: c,
        async body() {
          if (bodyCache === undefined) bodyCache = await readJsonBody(c.req.raw);
          return bodyCache;
        },
      };
      const result = await route.handle(ctx);
      if (result instanceof Response) return result;
      return c.body(JSON.stringify(result), 200, { "content-type": "application/json" });
    });
  }
  return app;
}

async function authenticate(
  identity: IdentityService,
  header: string | undefined,
): Promise<Principal> {
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!match?.[1]) {
    throw new AppError(
      "UNAUTHENTICATED",
      "missing bearer token: send 'Authorization: Bearer <token>'",
      {
        reason: "MISSING_TOKEN",
      },
    );
  }
  const principal = await identity.authenticate(match[1]);
  if (!principal) {
    throw new AppError("UNAUTHENTICATED", "the bearer token is not valid (unknown or revoked)", {
      reason: "INVALID_TOKEN",
    });
  }
  return principal;
}

async function readJsonBody(request: Request): Promise<unknown> {
  const text = await request.text();
  if (text.trim() === "") return {};
  try {
    return parseStrictJson(text);
  } catch (error) {
    if (error instanceof PayloadSyntaxError) {
      throw new AppError("INVALID_ARGUMENT", `request body: ${error.message}`, {
        reason: "MALFORMED_BODY",
        fieldViolations: [{ field: "body", description: error.message }],
      });
    }
    throw error;
  }
}
