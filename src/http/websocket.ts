import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import { AppError } from "../errors.js";
import type { Principal } from "../identity/identity.js";
import type { IdentityService } from "../identity/identity-service.js";
import type { RunnerHub } from "../runners/hub.js";
import {
  type AgentMessage,
  AgentMessageSchema,
  type ControlMessage,
  type Link,
} from "../runners/protocol.js";
import type { SandboxService } from "../sandboxes/sandbox-service.js";
import { toRpcStatus } from "./status.js";

export const RUNNER_CONNECT_PATH = "/v1beta2/runner/connect";
const EXEC_STREAM = /^\/v1beta2\/sandboxes\/([^/]+)\/exec\/stream$/;

/**
 * WebSocket routes: interactive exec for users, and the connection runner
 * agents open to the control plane. Both authenticate with the bearer token
 * of the upgrade request.
 */
export function attachWebSockets(
  server: Server,
  deps: { identity: IdentityService; hub: RunnerHub; sandboxes: SandboxService; logger: Logger },
): void {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 * 1024 });
  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    const reject = (error: AppError) => {
      const { httpStatus, body } = toRpcStatus(error);
      const text = JSON.stringify(body);
      socket.end(
        `HTTP/1.1 ${httpStatus} Error\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      );
    };
    void authenticate(deps.identity, request.headers.authorization)
      .then(async (principal) => {
        if (url.pathname === RUNNER_CONNECT_PATH) {
          if (principal.kind !== "runner")
            throw new AppError("PERMISSION_DENIED", "only a runner token may connect as a runner", {
              reason: "PERMISSION_DENIED",
            });
          const claimed = url.searchParams.get("runnerId");
          if (claimed && claimed !== principal.runnerId) {
            throw new AppError(
              "PERMISSION_DENIED",
              `this token belongs to runner '${principal.runnerId}', not '${claimed}'`,
              { reason: "RUNNER_MISMATCH" },
            );
          }
          wss.handleUpgrade(request, socket, head, (ws) => {
            deps.hub.attach(
              serverLink(ws, deps.logger),
              principal.organizationId,
              principal.runnerId,
            );
          });
          return;
        }
        const exec = EXEC_STREAM.exec(url.pathname);
        if (!exec)
          throw new AppError("NOT_FOUND", `no WebSocket route for ${url.pathname}`, {
            reason: "ROUTE_NOT_FOUND",
          });
        const command = url.searchParams.getAll("command");
        const tty = url.searchParams.get("tty") === "true";
        // Checked before the upgrade, so that refusals are ordinary HTTP errors.
        const sandboxId = decodeURIComponent(exec[1] ?? "");
        await deps.sandboxes.get(principal, sandboxId);
        wss.handleUpgrade(request, socket, head, (ws) => {
          void interactive(
            ws,
            deps.sandboxes,
            principal,
            sandboxId,
            command.length > 0 ? command : ["/bin/sh"],
            tty,
          );
        });
      })
      .catch((error: unknown) =>
        reject(error instanceof AppError ? error : new AppError("INTERNAL", String(error))),
      );
  });
}

async function authenticate(
  identity: IdentityService,
  header: string | undefined,
): Promise<Principal> {
  const token = header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
  const principal = token ? await identity.authenticate(token) : undefined;
  if (!principal)
    throw new AppError("UNAUTHENTICATED", "a valid bearer token is required", {
      reason: "INVALID_TOKEN",
    });
  return principal;
}

/**
 * Frames: binary = terminal bytes both ways; text = JSON control
 * (client: {"type":"resize","rows","cols"} | {"type":"stdin-close"};
 * server: {"type":"exit","exitCode"} | {"type":"error",...google.rpc.Status}).
 */
async function interactive(
  ws: WebSocket,
  sandboxes: SandboxService,
  principal: Principal,
  sandboxId: string,
  command: string[],
  tty: boolean,
): Promise<void> {
  // Input may arrive before the session exists: keep it, in order, until then.
  const early: { data: RawData; isBinary: boolean }[] = [];
  let deliver: ((data: RawData, isBinary: boolean) => void) | undefined;
  ws.on("message", (data: RawData, isBinary: boolean) => {
    if (deliver) deliver(data, isBinary);
    else early.push({ data, isBinary });
  });
  try {
    const handle = await sandboxes.interactive(principal, sandboxId, command, tty, (data) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(data, { binary: true });
    });
    deliver = (data, isBinary) => {
      if (isBinary) return handle.input(toBuffer(data));
      try {
        const control = JSON.parse(toBuffer(data).toString()) as {
          type?: string;
          rows?: number;
          cols?: number;
        };
        if (control.type === "resize" && control.rows && control.cols)
          handle.resize(control.rows, control.cols);
        if (control.type === "stdin-close") handle.closeInput();
      } catch {
        // not a control message
      }
    };
    for (const m of early.splice(0)) deliver(m.data, m.isBinary);
    ws.on("close", () => handle.cancel());
    const result = (await handle.result) as { exitCode: number };
    ws.send(JSON.stringify({ type: "exit", exitCode: result.exitCode }));
    ws.close(1000);
  } catch (error) {
    const status = toRpcStatus(
      error instanceof AppError ? error : new AppError("INTERNAL", String(error)),
    ).body;
    ws.send(JSON.stringify({ type: "error", ...status }));
    ws.close(1011);
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** The control plane's end of an agent's WebSocket; every message is checked against the protocol. */
function serverLink(ws: WebSocket, logger: Logger): Link<ControlMessage, AgentMessage> {
  return {
    send: (m) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
    },
    onMessage: (listener) =>
      ws.on("message", (data: RawData) => {
        const parsed = AgentMessageSchema.safeParse(JSON.parse(toBuffer(data).toString()));
        if (parsed.success) listener(parsed.data);
        else
          logger.warn(
            { issues: parsed.error.issues.slice(0, 3) },
            "malformed message from a runner",
          );
      }),
    onClose: (listener) => ws.on("close", listener),
    close: () => ws.close(),
  };
}
