import { closeSync, existsSync, openSync, readSync, statSync, writeSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * A sandbox's main-process output, one line per record in the CRI log
 * format Kubernetes uses: `<RFC 3339 nano> <stdout|stderr> <F|P> <text>`
 * (P marks a partial line, cut at a size limit or at exit).
 */
export class LogWriter {
  private readonly fd: number;
  private readonly pending: Record<"stdout" | "stderr", string> = { stdout: "", stderr: "" };
  /** Per stream, so that a character split across two chunks is decoded whole. */
  private readonly decoders = {
    stdout: new StringDecoder("utf8"),
    stderr: new StringDecoder("utf8"),
  };
  private static readonly MAX_LINE = 16 * 1024;

  /** Appends to the file at `file`, or to `file` as an fd opened for appending (it closes it). */
  constructor(
    file: string | number,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.fd = typeof file === "number" ? file : openSync(file, "a", 0o600);
  }

  write(stream: "stdout" | "stderr", chunk: Buffer): void {
    let text = this.pending[stream] + this.decoders[stream].write(chunk);
    let newline = text.indexOf("\n");
    const stamp = timestamp(this.now());
    let out = "";
    while (newline >= 0) {
      out += `${stamp} ${stream} F ${text.slice(0, newline)}\n`;
      text = text.slice(newline + 1);
      newline = text.indexOf("\n");
    }
    while (text.length > LogWriter.MAX_LINE) {
      // Never cut a surrogate pair in two: each half alone is not UTF-8.
      const high = text.charCodeAt(LogWriter.MAX_LINE - 1);
      const cut = high >= 0xd800 && high <= 0xdbff ? LogWriter.MAX_LINE - 1 : LogWriter.MAX_LINE;
      out += `${stamp} ${stream} P ${text.slice(0, cut)}\n`;
      text = text.slice(cut);
    }
    this.pending[stream] = text;
    if (out) writeSync(this.fd, out);
  }

  /** Writes what is left of unterminated lines and closes the file. */
  close(): void {
    const stamp = timestamp(this.now());
    for (const stream of ["stdout", "stderr"] as const) {
      this.pending[stream] += this.decoders[stream].end();
      if (this.pending[stream])
        writeSync(this.fd, `${stamp} ${stream} P ${this.pending[stream]}\n`);
      this.pending[stream] = "";
    }
    closeSync(this.fd);
  }
}

/** Nanosecond-style RFC 3339 (milliseconds padded), as CRI logs carry. */
function timestamp(date: Date): string {
  return date.toISOString().replace("Z", "000000Z");
}

export interface LogRecord {
  time: string;
  stream: string;
  partial: boolean;
  text: string;
}

export function parseLogLine(line: string): LogRecord | undefined {
  const match = /^(\S+) (stdout|stderr) ([FP]) (.*)$/s.exec(line);
  if (!match) return undefined;
  return {
    time: match[1] as string,
    stream: match[2] as string,
    partial: match[3] === "P",
    text: match[4] as string,
  };
}

/** Renders records as the user sees them: text, optionally prefixed by its time. */
export function renderRecord(record: LogRecord, timestamps: boolean): string {
  const body = record.partial ? record.text : `${record.text}\n`;
  return timestamps ? `${record.time} ${body}` : body;
}

/** The last `tailLines` records of a log (all when undefined). */
export function tail(lines: string[], tailLines: number | undefined): string[] {
  if (tailLines === undefined || tailLines < 0) return lines;
  return tailLines === 0 ? [] : lines.slice(-tailLines);
}

/**
 * Streams a log file: its tail, then (with follow) what is appended until
 * `done()` says the writer has finished and everything is read.
 */
export async function streamLog(
  path: string,
  options: {
    tailLines: number | undefined;
    timestamps: boolean;
    follow: boolean;
    done: () => boolean;
  },
  onData: (chunk: Buffer) => void,
  signal: AbortSignal,
): Promise<void> {
  if (!existsSync(path)) return;
  let offset = 0;
  // Bytes after the last complete record: a read may end inside a record, even inside a character.
  let carry = Buffer.alloc(0);
  const readNew = (): string[] => {
    const size = statSync(path).size;
    if (size <= offset) return [];
    const fd = openSync(path, "r");
    try {
      const buffer = Buffer.alloc(size - offset);
      const n = readSync(fd, buffer, 0, buffer.length, offset);
      offset += n;
      const bytes = Buffer.concat([carry, buffer.subarray(0, n)]);
      const end = bytes.lastIndexOf(0x0a);
      carry = Buffer.from(bytes.subarray(end + 1));
      if (end < 0) return [];
      return bytes.subarray(0, end).toString("utf8").split("\n");
    } finally {
      closeSync(fd);
    }
  };
  const emit = (lines: string[]) => {
    const out = lines
      .map(parseLogLine)
      .filter((r): r is LogRecord => r !== undefined)
      .map((r) => renderRecord(r, options.timestamps))
      .join("");
    if (out) onData(Buffer.from(out, "utf8"));
  };
  emit(tail(readNew(), options.tailLines));
  if (!options.follow) return;
  while (!signal.aborted) {
    const finished = options.done();
    emit(readNew());
    if (finished) return;
    await sleep(100, undefined, { signal }).catch(() => undefined);
  }
}
