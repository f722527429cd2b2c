import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiError, PaddockClient } from "./client.js";

/**
 * A server that answers the first request on each connection and resets the
 * connection on the second: what a client sees when it reuses a kept-alive
 * connection at the moment the server closes it.
 */
let server: Server;
let url: string;
let connections = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const socket = req.socket as typeof req.socket & { served?: number };
    socket.served = (socket.served ?? 0) + 1;
    if (socket.served > 1) {
      socket.resetAndDestroy();
      return;
    }
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ ok: true }));
  });
  server.on("connection", () => {
    connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe("PaddockClient on a reset kept-alive connection", () => {
  it("repeats a GET once, on a new connection", async () => {
    const client = new PaddockClient(url, "t");
    await client.get("/a");
    const before = connections;
    expect(await client.get("/b")).toEqual({ ok: true });
    expect(connections).toBe(before + 1);
  });

  it("never repeats a POST: it fails UNAVAILABLE, naming the server", async () => {
    const client = new PaddockClient(url, "t");
    await client.get("/a");
    const error = await client.post("/start", {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status.code).toBe(14);
    expect((error as ApiError).status.message).toContain(url);
  });
});
