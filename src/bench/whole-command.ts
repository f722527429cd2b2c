import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../version.js";
import { type Figure, figure, timed } from "./stats.js";

/** One run of a command to its exit; throws on a non-zero exit. */
function runOnce(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(" ")} exited ${code}: ${stderr.trim()}`));
    });
  });
}

function samples(runs: number, command: string, args: string[], env: NodeJS.ProcessEnv) {
  return timed(runs, () => runOnce(command, args, env));
}

/**
 * Whole commands, as a user types them: `paddock sandbox run -- true`
 * against Anthropic's `srt true` (@anthropic-ai/sandbox-runtime, a dev
 * dependency; on Linux it needs bubblewrap, socat and ripgrep).
 */
export async function wholeCommandFigures(
  serverUrl: string,
  token: string,
  runs: number,
): Promise<Figure[]> {
  const srt = join(PACKAGE_ROOT, "node_modules", ".bin", "srt");
  if (!existsSync(srt)) throw new Error("srt is not installed: run npm install");
  const env = { ...process.env, PADDOCK_SERVER: serverUrl, PADDOCK_TOKEN: token };
  const paddock = [join(PACKAGE_ROOT, "bin", "paddock"), "sandbox", "run", "--", "true"];
  // Once each first: disk caches, srt's first-run checks.
  await runOnce(srt, ["true"], env);
  await runOnce(process.execPath, paddock, env);
  const reference = figure(
    "srt true (sandbox-runtime 0.0.78)",
    await samples(runs, srt, ["true"], env),
  );
  const ours = figure(
    "paddock sandbox run -- true (whole CLI command, warm pool)",
    await samples(runs, process.execPath, paddock, env),
    reference,
  );
  const nodeFloor = figure(
    "node -e 0 (the CLI's runtime starting, nothing else)",
    await samples(runs, process.execPath, ["-e", "0"], env),
    reference,
  );
  return [reference, ours, nodeFloor];
}
