import { closeSync, openSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { basename, dirname } from "node:path";
import { CappedBuffer } from "../capped-buffer.js";
import { type HelperResult, helperResult, stopOnDeadlineOrAbort } from "./helper-process.js";

export interface ServiceCommand {
  command: string[];
  env: Record<string, string>;
  workingDir: string;
  stdin: Buffer;
  maxOutputBytes: number;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The service could not be reached: the caller may still enter the sandbox the slow way. */
export class ExecServiceUnreachable extends Error {}

/** The service's connection ended before the command's status came: the sandbox is going. */
export class ExecServiceGone extends Error {}

const FRAME_HEADER = 5;
const STDOUT = 1;
const STDERR = 2;
const EXIT = 3;

/**
 * A request to paddock-nsexec's exec service: two uint32s (spec and stdin
 * lengths), the spec as NUL-terminated items ("a" argument, "e" KEY=VALUE,
 * "w" working directory), then stdin.
 */
export function encodeRequest(c: Pick<ServiceCommand, "command" | "env" | "workingDir" | "stdin">) {
  const items = [
    ...(c.workingDir ? [`w${c.workingDir}`] : []),
    ...Object.entries(c.env).map(([k, v]) => `e${k}=${v}`),
    ...c.command.map((a) => `a${a}`),
  ];
  const spec = Buffer.from(items.map((i) => `${i}\0`).join(""));
  const head = Buffer.alloc(8);
  head.writeUInt32LE(spec.length, 0);
  head.writeUInt32LE(c.stdin.length, 4);
  return Buffer.concat([head, spec, c.stdin]);
}

/** Splits the service's answer into frames as they arrive: stdout, stderr, then the exit status. */
export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);
  constructor(
    private readonly on: {
      output(stream: 1 | 2, data: Buffer): void;
      exit(code: number): void;
    },
  ) {}

  push(chunk: Buffer): void {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    while (this.buffered.length >= FRAME_HEADER) {
      const length = this.buffered.readUInt32LE(1);
      if (this.buffered.length < FRAME_HEADER + length) return;
      const kind = this.buffered[0];
      const data = this.buffered.subarray(FRAME_HEADER, FRAME_HEADER + length);
      this.buffered = this.buffered.subarray(FRAME_HEADER + length);
      if (kind === STDOUT || kind === STDERR) this.on.output(kind, data);
      else if (kind === EXIT) this.on.exit(data.readInt32LE(0));
    }
  }
}

/**
 * Runs a command through a sandbox's exec service (paddock-nsexec -Z) at
 * socketPath: no process is spawned here, and the command forks from a
 * process already inside the sandbox. Closing the connection kills it, which
 * is how a timeout or an abort ends it.
 */
export function runThroughService(socketPath: string, c: ServiceCommand): Promise<HelperResult> {
  return new Promise((resolve, reject) => {
    const stdout = new CappedBuffer(c.maxOutputBytes);
    const stderr = new CappedBuffer(c.maxOutputBytes);
    let settled = false;
    let socket: Socket | undefined;
    const settle = (finish: () => void) => {
      if (settled) return;
      settled = true;
      deadline.disarm();
      socket?.destroy();
      finish();
    };
    const result = (code: number) => helperResult(code, stdout, stderr, deadline.timedOut);
    const deadline = stopOnDeadlineOrAbort(c, () => settle(() => resolve(result(137))));
    const frames = new FrameReader({
      output: (stream, data) => (stream === STDOUT ? stdout : stderr).push(data),
      exit: (code) => settle(() => resolve(result(code))),
    });
    let connected = false;
    try {
      socket = connectAt(socketPath, () => {
        connected = true;
        socket?.write(encodeRequest(c));
      });
    } catch (error) {
      settle(() => reject(new ExecServiceUnreachable((error as Error).message)));
      return;
    }
    socket.on("data", (chunk: Buffer) => frames.push(chunk));
    socket.once("error", (error) => {
      const failure = connected
        ? new ExecServiceGone(error.message)
        : new ExecServiceUnreachable(error.message);
      settle(() => reject(failure));
    });
    socket.once("close", () =>
      settle(() => reject(new ExecServiceGone("the exec service closed the connection"))),
    );
  });
}

/**
 * Connects to the unix socket at socketPath, whatever its length (a
 * sockaddr_un holds 108 bytes): through an fd of its directory.
 */
function connectAt(socketPath: string, onConnect: () => void): Socket {
  const dirFd = openSync(dirname(socketPath), "r");
  const socket = connect(`/proc/self/fd/${dirFd}/${basename(socketPath)}`);
  const closeDir = () => closeSync(dirFd);
  socket.once("connect", () => {
    socket.off("error", closeDir);
    closeDir();
    onConnect();
  });
  socket.once("error", closeDir);
  return socket;
}

/**
 * Tells a sandbox's exec service its init pid, once the sandbox's command
 * runs: true once it has joined the sandbox, false when it could not (or is
 * not there); commands then take the slow way.
 */
export function joinExecService(
  socketPath: string,
  initPid: number,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    let answer = "";
    let socket: Socket | undefined;
    const done = (ready: boolean) => {
      clearTimeout(timer);
      socket?.destroy();
      resolve(ready);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    try {
      socket = connectAt(socketPath, () => {
        const pid = Buffer.alloc(4);
        pid.writeUInt32LE(initPid, 0);
        socket?.write(pid);
      });
    } catch {
      done(false);
      return;
    }
    socket.on("data", (chunk: Buffer) => {
      answer += chunk.toString();
      if (answer.includes("\n")) done(answer.startsWith("ready\n"));
    });
    socket.once("error", () => done(false));
    socket.once("close", () => done(false));
  });
}
