import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { type RawData, WebSocket } from "ws";
import type { Backend } from "../backends/backend.js";
import { RUNNER_CONNECT_PATH } from "../http/websocket.js";
import { RunnerAgent } from "./agent.js";
import {
  type AgentMessage,
  type ControlMessage,
  ControlMessageSchema,
  type Link,
} from "./protocol.js";

const FIRST_RETRY_MS = 200;
const MAX_RETRY_MS = 10_000;

/** Backoff with full jitter: 200 ms doubling to 10 s, so that many runners do not reconnect in step. */
export function retryDelayMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * `paddock runner start`: connects out to the control plane (no inbound
 * route needed), serves its assignments, and reconnects with backoff for as
 * long as it runs. Sandboxes keep running while the control plane is away.
 */
export async function runAgent(options: {
  server: string;
  token: string;
  runnerId: string;
  backend: Backend;
  logger: Logger;
  signal: AbortSignal;
}): Promise<void> {
  const { logger, signal } = options;
  const agent = new RunnerAgent(options.backend, logger);
  const url = new URL(RUNNER_CONNECT_PATH, options.server);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("runnerId", options.runnerId);
  let attempt = 0;
  while (!signal.aborted) {
    try {
      const ws = await open(url, options.token);
      attempt = 0;
      logger.info(
        { server: options.server, runnerId: options.runnerId },
        "connected to the control plane",
      );
      const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
      const onAbort = () => ws.close(1000);
      signal.addEventListener("abort", onAbort, { once: true });
      await agent.attach(clientLink(ws, logger));
      await closed;
      signal.removeEventListener("abort", onAbort);
      if (!signal.aborted) logger.warn("lost the control plane; reconnecting");
    } catch (error) {
      logger.warn(
        { attempt, error: (error as Error).message },
        "cannot reach the control plane; retrying",
      );
    }
    if (signal.aborted) break;
    await sleep(retryDelayMs(attempt++), undefined, { signal }).catch(() => undefined);
  }
}

function open(url: URL, token: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${token}` },
      handshakeTimeout: 10_000,
    });
    ws.once("open", () => resolve(ws));
    ws.once("unexpected-response", (_request, response) => {
      let text = "";
      response.on("data", (c: Buffer) => {
        text += c.toString();
      });
      response.on("end", () => reject(new Error(`HTTP ${response.statusCode}: ${text}`)));
    });
    ws.once("error", reject);
  });
}

function clientLink(ws: WebSocket, logger: Logger): Link<AgentMessage, ControlMessage> {
  return {
    send: (m) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
    },
    onMessage: (listener) =>
      ws.on("message", (data: RawData) => {
        const parsed = ControlMessageSchema.safeParse(JSON.parse(data.toString()));
        if (parsed.success) listener(parsed.data);
        else
          logger.warn(
            { issues: parsed.error.issues.slice(0, 3) },
            "malformed message from the control plane",
          );
      }),
    onClose: (listener) => ws.on("close", listener),
    close: () => ws.close(),
  };
}
