import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { PaddockClient } from "../src/client/client.js";
import {
  type CliResult,
  cleanEnv,
  PADDOCK_BIN,
  runCli,
  type ServerProcess,
  startServerProcess,
  tempDir,
} from "./support/process.js";

/** CONTRACT §7's sandbox commands: the real ./bin/paddock against a real `paddock serve`. */
describe("paddock sandbox, end to end", () => {
  let server: ServerProcess;
  let api: PaddockClient;
  let env: Record<string, string>;
  let work: string;
  const cli = (args: string[], input?: string) =>
    runCli(args, { env, ...(input !== undefined ? { input } : {}) });
  const ok = async (args: string[], input?: string) => {
    const r = await cli(args, input);
    expect(r.code, `paddock ${args.join(" ")}\n${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const liveIds = async () =>
    (
      await api.get<{ sandboxes: { sandboxId: string }[] }>("/v1beta2/sandboxes?pageSize=1000")
    ).sandboxes
      .map((s) => s.sandboxId)
      .sort();

  beforeAll(async () => {
    server = await startServerProcess();
    work = tempDir();
    api = new PaddockClient(server.url, server.token());
    env = {
      PADDOCK_SERVER: server.url,
      PADDOCK_TOKEN: server.token(),
      PADDOCK_CONFIG: join(work, "config.json"),
    };
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("run -- echo hi prints hi, exits 0 and leaves no sandbox behind", async () => {
    const before = await liveIds();
    const r = await cli(["sandbox", "run", "--", "echo", "hi"]);
    expect(r).toEqual({ code: 0, stdout: "hi\n", stderr: "" });
    expect(await liveIds()).toEqual(before);
  });

  it("run exits with the command's exit code, and passes flags through", async () => {
    const seven = await cli(["sandbox", "run", "--", "sh", "-c", "echo to-stderr >&2; exit 7"]);
    expect(seven.code).toBe(7);
    expect(seven.stderr).toBe("to-stderr\n");
    const flagged = await cli([
      "sandbox",
      "run",
      "--env",
      "GREETING=hello there",
      "--cwd",
      "/tmp",
      "--",
      "sh",
      "-c",
      'echo "$GREETING from $(pwd)"',
    ]);
    expect(flagged.code, flagged.stderr).toBe(0);
    expect(flagged.stdout).toBe("hello there from /tmp\n");
  });

  it("run with a refused request exits 1 with the server's message", async () => {
    const r = await cli(["sandbox", "run", "--egress", "lan", "--", "true"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("network.egressMode");
    expect(r.stderr).toContain("internet");
    const usage = await cli(["sandbox", "run", "--env", "NOEQUALS", "--", "true"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("KEY=VALUE");
  });

  it("create, ls, get, exec (stdin piped), files write/read, logs, stop, delete", async () => {
    const id = (
      await ok([
        "sandbox",
        "create",
        "--wait",
        "--tag",
        "cli-e2e",
        "--env",
        "FOO=bar",
        "--",
        "sh",
        "-c",
        "echo from-main; exec sleep 600",
      ])
    ).trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const [table, running, failed, json, plain, byRunner] = await Promise.all([
      ok(["sandbox", "ls", "--tag", "cli-e2e"]),
      ok(["sandbox", "ls", "--status", "RUNNING", "-o", "json"]),
      ok(["sandbox", "ls", "--status", "FAILED", "-o", "json"]),
      ok(["sandbox", "get", id, "-o", "json"]),
      ok(["sandbox", "get", id]),
      ok(["sandbox", "ls", "--runner-id", "local", "--tag", "cli-e2e", "-o", "json"]),
    ]);
    expect(table).toMatch(/^ID\s+STATUS\s+PROFILE\s+RUNNER/);
    expect(table).toMatch(new RegExp(`${id}\\s+RUNNING\\s+default\\s+local\\s+none`));
    expect(JSON.parse(running).map((s: any) => s.sandboxId)).toContain(id);
    expect(JSON.parse(failed)).toEqual([]);
    expect(JSON.parse(byRunner).map((s: any) => s.sandboxId)).toEqual([id]);
    expect(JSON.parse(json)).toMatchObject({
      sandboxId: id,
      sandboxStatus: "SANDBOX_STATUS_RUNNING",
      tags: ["cli-e2e"],
    });
    expect(plain).toMatch(new RegExp(`${id}\\s+RUNNING`));

    const piped = await cli(
      ["sandbox", "exec", id, "--", "sh", "-c", 'tr a-z A-Z; echo "FOO=$FOO"'],
      "piped input\n",
    );
    expect(piped).toEqual({ code: 0, stdout: "PIPED INPUT\nFOO=bar\n", stderr: "" });
    const failing = await cli(["sandbox", "exec", id, "--", "sh", "-c", "echo err >&2; exit 4"]);
    expect(failing).toEqual({ code: 4, stdout: "", stderr: "err\n" });

    const local = join(work, "blob.bin");
    const bytes = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 7) % 256));
    writeFileSync(local, bytes);
    await ok(["sandbox", "files", "write", id, "/tmp/dir with space/blob.bin", local]);
    const back = join(work, "back.bin");
    await ok([
      "sandbox",
      "files",
      "read",
      id,
      "/tmp/dir with space/blob.bin",
      "--output-file",
      back,
    ]);
    expect(readFileSync(back).equals(bytes)).toBe(true);
    await ok(["sandbox", "files", "write", id, "/tmp/note.txt", "-"], "from stdin\n");
    expect(await ok(["sandbox", "files", "read", id, "/tmp/note.txt"])).toBe("from stdin\n");
    const missing = await cli(["sandbox", "files", "read", id, "/tmp/nope"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("/tmp/nope");

    const [logs, stamped] = await Promise.all([
      ok(["sandbox", "logs", id]),
      ok(["sandbox", "logs", id, "--tail", "1", "--timestamps"]),
    ]);
    expect(logs).toBe("from-main\n");
    expect(stamped).toMatch(/^\d{4}-\d\d-\d\dT\S+Z from-main\n$/);

    expect(await ok(["sandbox", "stop", id, "--grace", "0"])).toBe(`${id} TERMINATED\n`);
    const stoppedExec = await cli(["sandbox", "exec", id, "--", "true"]);
    expect(stoppedExec.code).toBe(1);
    expect(stoppedExec.stderr).toContain("not running");
    // Logs outlive the sandbox until it is deleted.
    expect(await ok(["sandbox", "logs", id])).toBe("from-main\n");

    expect(await ok(["sandbox", "delete", id])).toBe(`sandbox ${id} deleted\n`);
    const gone = await cli(["sandbox", "get", id]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(id);
    expect((await cli(["sandbox", "delete", id, "--missing-ok"])).code).toBe(0);
  });

  it("files read ID REMOTE -o LOCAL writes the file (the -o of CONTRACT §7)", async () => {
    const id = (await ok(["sandbox", "create", "--wait"])).trim();
    await ok(["sandbox", "files", "write", id, "/tmp/o.txt", "-"], "dash-o\n");
    const local = join(work, "dash-o.txt");
    const r = await cli(["sandbox", "files", "read", id, "/tmp/o.txt", "-o", local]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    expect(readFileSync(local, "utf8")).toBe("dash-o\n");
    await ok(["sandbox", "delete", id]);
  });

  it("logs -f follows the main process until it ends", async () => {
    const id = (
      await ok([
        "sandbox",
        "create",
        "--",
        "sh",
        "-c",
        "echo one; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo two",
      ])
    ).trim();
    const following = cli(["sandbox", "logs", id, "-f"]);
    // Released only through the API: whatever `logs -f` prints after "one" it got by following.
    while (!(await ok(["sandbox", "logs", id])).includes("one")) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await ok(["sandbox", "files", "write", id, "/tmp/go", "-"], "");
    const r = await following;
    expect(r).toEqual({ code: 0, stdout: "one\ntwo\n", stderr: "" });
    await ok(["sandbox", "delete", id]);
  });

  it("sh ID with piped stdin runs the commands and exits with the shell's code", async () => {
    const id = (await ok(["sandbox", "create", "--wait"])).trim();
    const r = await shell(id, 'echo "in the shell: $HOSTNAME"\ncd /tmp && pwd\nexit 5\n');
    expect(r.stdout).toBe(`in the shell: sandbox-${id.slice(0, 8)}\n/tmp\n`);
    expect(r.code).toBe(5);
    const bad = await cli(["sandbox", "sh", "00000000-0000-4000-8000-000000000000"], "exit 0\n");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("not found");
    await ok(["sandbox", "delete", id]);
  });

  it("the exec stream keeps stdin sent the moment it opens (as `sandbox sh` sends it)", async () => {
    const id = (await ok(["sandbox", "create", "--wait"])).trim();
    const url = new URL(`/v1beta2/sandboxes/${id}/exec/stream?command=/bin/sh`, server.url);
    url.protocol = "ws:";
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${server.token()}` } });
    let output = "";
    let exitCode: number | undefined;
    // A lost stdin leaves the shell waiting: after a generous while, hang up and fail below.
    const hangUp = setTimeout(() => ws.close(), 15_000);
    await new Promise<void>((resolve, reject) => {
      ws.on("open", () => {
        ws.send(Buffer.from("echo early-bird; exit 6\n"), { binary: true });
        ws.send(JSON.stringify({ type: "stdin-close" }));
      });
      ws.on("message", (data: Buffer, isBinary: boolean) => {
        if (isBinary) output += data.toString();
        else if (JSON.parse(data.toString()).type === "exit")
          exitCode = JSON.parse(data.toString()).exitCode;
      });
      ws.on("close", () => resolve());
      ws.on("error", reject);
    });
    clearTimeout(hangUp);
    expect({ output, exitCode }).toEqual({ output: "early-bird\n", exitCode: 6 });
    await ok(["sandbox", "delete", id]);
  });

  /**
   * `paddock sandbox sh` with stdin piped in. A hung session would otherwise
   * keep the server (and afterAll) waiting: after a generous while it is
   * killed, and the test fails on what it printed.
   */
  function shell(id: string, input: string): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(PADDOCK_BIN, ["sandbox", "sh", id], {
        env: cleanEnv(env),
        stdio: ["pipe", "pipe", "pipe"],
        timeout: 30_000,
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => {
        stdout += c.toString();
      });
      child.stderr.on("data", (c: Buffer) => {
        stderr += c.toString();
      });
      child.once("error", reject);
      child.once("close", (code, signal) =>
        resolve({
          code: code ?? (signal ? -1 : null),
          stdout,
          stderr: signal ? `killed by ${signal}\n${stderr}` : stderr,
        }),
      );
      child.stdin.end(input);
    });
  }
});
