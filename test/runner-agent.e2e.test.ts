import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { PaddockClient } from "../src/client/client.js";
import {
  runCli,
  type ServerProcess,
  startRunnerAgent,
  startServerProcess,
  tempDir,
} from "./support/process.js";

/**
 * A runner agent as its own process (`paddock runner start`), connected out
 * to a real `paddock serve` over WebSocket: it runs sandboxes, keeps them
 * through a control-plane crash, and reconnects by itself.
 */
describe("paddock runner start", () => {
  let server: ServerProcess;
  let agent: ChildProcess;
  let admin: PaddockClient;
  const dataDir = tempDir();
  const agentDir = tempDir();
  let listen = "";

  const waitConnected = async (client: PaddockClient) => {
    for (let i = 0; i < 100; i++) {
      const { runner } = await client.get<{
        runner: { connectionStatus: string; backend: string };
      }>("/v1beta2/sandbox/runners/edge");
      if (runner.connectionStatus === "CONNECTED") return runner;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("runner edge never connected");
  };

  beforeAll(async () => {
    server = await startServerProcess({
      dataDir,
      args: ["--listen", "127.0.0.1:0", "--no-local-runner"],
    });
    listen = new URL(server.url).host;
    admin = new PaddockClient(server.url, server.token());
    const { profileTemplate } = await admin.get<{ profileTemplate: { id: string } }>(
      "/v1beta2/sandbox/profile-templates/default",
    );
    await admin.post("/v1beta2/sandbox/runners", {
      runnerId: "edge",
      runner: {
        identity: { zone: "edge-1" },
        profileBindings: [{ profileTemplateId: profileTemplate.id, isDefault: true }],
      },
    });
    const { token } = await admin.post<{ token: string }>(
      "/v1beta2/sandbox/runners/edge/tokens",
      {},
    );
    agent = startRunnerAgent(server.url, token, "edge", [
      "--backend",
      "local",
      "--data-dir",
      agentDir,
    ]);
  });
  afterAll(async () => {
    agent?.kill("SIGTERM");
    await server?.stop();
  });

  it("connects and reports its backend and version", async () => {
    const runner = await waitConnected(admin);
    expect(runner.backend).toBe("local");
  });

  it("runs sandboxes placed on it", async () => {
    const run = await runCli(["sandbox", "run", "--runner", "edge", "--", "echo", "hi from edge"], {
      env: { PADDOCK_SERVER: server.url, PADDOCK_TOKEN: server.token() },
    });
    expect(run.stderr).toBe("");
    expect(run.stdout).toBe("hi from edge\n");
  });

  it("keeps its sandboxes through a control-plane crash and reconnects", async () => {
    const started = await admin.post<{ sandboxId: string; sandboxStatus: string }>(
      "/v1beta2/sandboxes?wait=true",
      {
        runnerIds: ["edge"],
      },
    );
    expect(started.sandboxStatus).toBe("SANDBOX_STATUS_RUNNING");
    await admin.post(`/v1beta2/sandboxes/${started.sandboxId}/files`, {
      filePath: "/tmp/state",
      fileContent: Buffer.from("kept").toString("base64"),
    });
    await server.stop("SIGKILL");
    server = await startServerProcess({ dataDir, args: ["--listen", listen, "--no-local-runner"] });
    admin = new PaddockClient(server.url, server.token());
    await waitConnected(admin);
    const after = await admin.get<{ sandboxStatus: string }>(
      `/v1beta2/sandboxes/${started.sandboxId}`,
    );
    expect(after.sandboxStatus).toBe("SANDBOX_STATUS_RUNNING");
    const exec = await admin.post<{ stdout: string }>(
      `/v1beta2/sandboxes/${started.sandboxId}/exec`,
      { command: ["cat", "/tmp/state"] },
    );
    expect(Buffer.from(exec.stdout, "base64").toString()).toBe("kept");
    await admin.delete(`/v1beta2/sandboxes/${started.sandboxId}`);
  });

  it("refuses user tokens and another runner's id at the connection", async () => {
    const status = (token: string, runnerId: string) =>
      new Promise<number>((resolve, reject) => {
        const url = new URL(
          `/v1beta2/runner/connect?runnerId=${runnerId}`,
          server.url.replace("http", "ws"),
        );
        const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
        ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.once("open", () => {
          ws.close();
          resolve(101);
        });
        ws.once("error", reject);
      });
    expect(await status(server.token(), "edge")).toBe(403);
    const { token } = await admin.post<{ token: string }>(
      "/v1beta2/sandbox/runners/edge/tokens",
      {},
    );
    expect(await status(token, "someone-else")).toBe(403);
    expect(await status("pdk_nope", "edge")).toBe(401);
  });
});
