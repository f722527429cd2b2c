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
 * Calls `stop` at the deadline or when `signal` aborts, whichever comes
 * first; `timedOut` says whether the deadline did it. `disarm` once the
 * command is done.
 */
export function stopOnDeadlineOrAbort(
  limits: { timeoutMs?: number | undefined; signal?: AbortSignal | undefined },
  stop: () => void,
): { readonly timedOut: boolean; disarm(): void } {
  let timedOut = false;
  const timer =
    limits.timeoutMs !== undefined
      ? setTimeout(() => {
          timedOut = true;
          stop();
        }, limits.timeoutMs)
      : undefined;
  limits.signal?.addEventListener("abort", stop, { once: true });
  return {
    get timedOut() {
      return timedOut;
    },
    disarm() {
      if (timer) clearTimeout(timer);
      limits.signal?.removeEventListener("abort", stop);
    },
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
    const deadline = stopOnDeadlineOrAbort(options, () => {
      if (child.exitCode === null) child.kill("SIGTERM");
    });
    child.stdout.on("data", (c: Buffer) => stdout.push(c));
    child.stderr.on("data", (c: Buffer) => stderr.push(c));
    child.stdin.on("error", () => undefined); // the command may exit without reading its input
    child.once("error", (error) => {
      deadline.disarm();
      reject(error);
    });
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let finished = false;
    const finish = () => {
      if (finished || !exit) return;
      finished = true;
      deadline.disarm();
      child.stdout.destroy();
      child.stderr.destroy();
      resolve(
        helperResult(
          exit.code ?? 128 + (exit.signal ? signalNumber(exit.signal) : 0),
          stdout,
          stderr,
          deadline.timedOut,
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
