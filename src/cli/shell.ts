import WebSocket from "ws";
import type { PaddockClient } from "../client/client.js";
import { CliError } from "./context.js";

/**
 * An interactive session over the exec WebSocket: a real terminal when
 * stdin is one (raw mode, window size kept in step), plain pipes otherwise.
 */
export async function interactiveShell(
  client: PaddockClient,
  sandboxId: string,
  command: string[],
): Promise<number> {
  const tty = process.stdin.isTTY === true;
  const url = new URL(
    `/v1beta2/sandboxes/${encodeURIComponent(sandboxId)}/exec/stream`,
    client.server,
  );
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  for (const part of command) url.searchParams.append("command", part);
  url.searchParams.set("tty", String(tty));
  const ws = new WebSocket(url, {
    headers: client.token ? { authorization: `Bearer ${client.token}` } : {},
  });
  return new Promise<number>((resolve, reject) => {
    let exitCode: number | undefined;
    const sendSize = () =>
      ws.send(
        JSON.stringify({ type: "resize", rows: process.stdout.rows, cols: process.stdout.columns }),
      );
    ws.on("unexpected-response", (_req, res) => {
      let text = "";
      res.on("data", (c: Buffer) => {
        text += c.toString();
      });
      res.on("end", () => {
        try {
          reject(new CliError(JSON.parse(text).message));
        } catch {
          reject(new CliError(`HTTP ${res.statusCode}: ${text}`));
        }
      });
    });
    ws.on("open", () => {
      if (tty) {
        process.stdin.setRawMode(true);
        sendSize();
        process.stdout.on("resize", sendSize);
      }
      process.stdin.on("data", (chunk: Buffer) => ws.send(chunk, { binary: true }));
      process.stdin.on("end", () => ws.send(JSON.stringify({ type: "stdin-close" })));
    });
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        process.stdout.write(data);
        return;
      }
      const control = JSON.parse(data.toString()) as {
        type: string;
        exitCode?: number;
        message?: string;
      };
      if (control.type === "exit") exitCode = control.exitCode ?? 0;
      if (control.type === "error")
        reject(new CliError(control.message ?? "interactive session failed"));
    });
    ws.on("close", () => {
      if (tty) process.stdin.setRawMode(false);
      process.stdin.pause();
      resolve(exitCode ?? 1);
    });
    ws.on("error", (error) => reject(new CliError(error.message)));
  });
}
