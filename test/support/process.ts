import { type ChildProcess, type StdioOptions, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const PADDOCK_BIN = fileURLToPath(new URL("../../bin/paddock", import.meta.url));

/** A temporary directory, under the test run's own (removed when the run ends). */
export function tempDir(prefix = "paddock-test-"): string {
  return mkdtempSync(join(process.env.PADDOCK_TEST_TMPDIR ?? tmpdir(), prefix));
}

/** Environment without the caller's Paddock settings, so tests see only what they pass. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PADDOCK_")) env[k] = v;
  return { ...env, PADDOCK_LOG_LEVEL: "warn", ...extra };
}

export interface ServerProcess {
  url: string;
  dataDir: string;
  child: ChildProcess;
  token(): string;
  /** SIGTERM, resolving with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts the real `./bin/paddock serve` and waits for its "listening on" line. */
export async function startServerProcess(
  options: { dataDir?: string; args?: string[]; env?: Record<string, string>; cwd?: string } = {},
): Promise<ServerProcess> {
  const dataDir = options.dataDir ?? tempDir();
  const args = ["serve", "--data-dir", dataDir, ...(options.args ?? ["--listen", "127.0.0.1:0"])];
  const child = spawn(PADDOCK_BIN, args, {
    env: cleanEnv(options.env),
    cwd: options.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match?.[1]) resolve(match[1]);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) =>
      reject(new Error(`paddock serve exited with ${code} before listening:\n${output}`)),
    );
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  return {
    url,
    dataDir,
    child,
    token: () => readFileSync(join(dataDir, "admin.token"), "utf8").trim(),
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `./bin/paddock ARGS` to completion. */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; input?: string; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(PADDOCK_BIN, args, {
      env: cleanEnv(options.env),
      cwd: options.cwd,
      stdio: ["pipe", "pipe", "pipe"],
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
    child.once("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

/** `paddock runner start` as its own process, connecting out to `serverUrl` with a runner token. */
export function startRunnerAgent(
  serverUrl: string,
  token: string,
  runnerId: string,
  backendArgs: string[],
  stdio: StdioOptions = "ignore",
): ChildProcess {
  return spawn(
    PADDOCK_BIN,
    [
      "--server",
      serverUrl,
      "--token",
      token,
      "runner",
      "start",
      "--runner-id",
      runnerId,
      ...backendArgs,
    ],
    { env: cleanEnv(), stdio },
  );
}
