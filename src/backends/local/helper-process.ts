import { spawn } from "node:child_process";
import { CappedBuffer } from "../capped-buffer.js";

export interface HelperResult {
  code: number;
  stdout: Buffer;
  stderr: Buffer;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  timedOut: boolean;
}

/** A finished command's status and what it wrote, as its capped buffers kept it. */
export function helperResult(
  code: number,
  stdout: CappedBuffer,
  stderr: CappedBuffer,
  timedOut: boolean,
): HelperResult {
  return {
    code,
    stdout: stdout.value(),
    stderr: stderr.value(),
    stdoutTruncated: stdout.truncated,
    stderrTruncated: stderr.truncated,
    timedOut,
  };
}

/**
 * Runs a helper to completion: stdin written then closed, output capped,
 * SIGTERM on timeout or abort (the nsexec helper turns that into SIGKILL
 * of the command's whole session).
 */
export function runHelper(
  file: string,
  args: string[],
  options: { stdin?: Buffer; maxOutputBytes: number; timeoutMs?: number; signal?: AbortSignal },
): Promise<HelperResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });
    const stdout = new CappedBuffer(options.maxOutputBytes);
    const stderr = new CappedBuffer(options.maxOutputBytes);
    let timedOut = false;
    const kill = () => {
      if (child.exitCode === null) child.kill("SIGTERM");
    };
    const timer =
      options.timeoutMs !== undefined
        ? setTimeout(() => {
            timedOut = true;
            kill();
          }, options.timeoutMs)
        : undefined;
    options.signal?.addEventListener("abort", kill, { once: true });
    child.stdout.on("data", (c: Buffer) => stdout.push(c));
    child.stderr.on("data", (c: Buffer) => stderr.push(c));
    child.stdin.on("error", () => undefined); // the command may exit without reading its input
    child.once("error", (error) => {
      if (timer) clearTimeout(timer);
      reject(error);
    });
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let finished = false;
    const finish = () => {
      if (finished || !exit) return;
      finished = true;
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener("abort", kill);
      child.stdout.destroy();
      child.stderr.destroy();
      resolve(
        helperResult(
          exit.code ?? 128 + (exit.signal ? signalNumber(exit.signal) : 0),
          stdout,
          stderr,
          timedOut,
        ),
      );
    };
    child.once("close", finish);
    // A background process the command started may hold the pipes open long
    // after the command is done: once it has exited, drain briefly, then answer.
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      setTimeout(finish, 50).unref();
    });
    child.stdin.end(options.stdin ?? Buffer.alloc(0));
  });
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = {
    SIGKILL: 9,
    SIGTERM: 15,
    SIGINT: 2,
    SIGHUP: 1,
  };
  return numbers[signal] ?? 0;
}
