import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LogWriter, parseLogLine, renderRecord, streamLog, tail } from "./logs.js";

const NOW = new Date("2026-01-02T03:04:05.678Z");
const STAMP = "2026-01-02T03:04:05.678000000Z";

let dir: string;
let n = 0;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "paddock-logs-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const newLog = () => join(dir, `log-${++n}`);
const records = (path: string) => readFileSync(path, "utf8").split("\n").filter(Boolean);

/** What a user sees for the whole file, without follow. */
async function render(
  path: string,
  options: { tailLines?: number; timestamps?: boolean } = {},
): Promise<string> {
  const chunks: Buffer[] = [];
  await streamLog(
    path,
    {
      tailLines: options.tailLines,
      timestamps: options.timestamps ?? false,
      follow: false,
      done: () => true,
    },
    (c) => chunks.push(c),
    new AbortController().signal,
  );
  return Buffer.concat(chunks).toString("utf8");
}

describe("LogWriter", () => {
  it("writes one CRI record per complete line, holding back the unterminated rest", () => {
    const path = newLog();
    const w = new LogWriter(path, () => NOW);
    w.write("stdout", Buffer.from("one\ntw"));
    expect(records(path)).toEqual([`${STAMP} stdout F one`]);
    w.write("stdout", Buffer.from("o\n\nthree"));
    expect(records(path)).toEqual([
      `${STAMP} stdout F one`,
      `${STAMP} stdout F two`,
      `${STAMP} stdout F `,
    ]);
    w.close();
    expect(records(path).at(-1)).toBe(`${STAMP} stdout P three`);
  });

  it("keeps stdout and stderr lines apart", () => {
    const path = newLog();
    const w = new LogWriter(path, () => NOW);
    w.write("stdout", Buffer.from("out-"));
    w.write("stderr", Buffer.from("err\n"));
    w.write("stdout", Buffer.from("line\n"));
    w.close();
    expect(records(path)).toEqual([`${STAMP} stderr F err`, `${STAMP} stdout F out-line`]);
  });

  it("cuts lines longer than 16 KiB into partial records", () => {
    const path = newLog();
    const w = new LogWriter(path, () => NOW);
    const long = "x".repeat(16 * 1024 * 2 + 5);
    w.write("stdout", Buffer.from(`${long}\n`));
    w.close();
    const recs = records(path).map((l) => parseLogLine(l));
    expect(recs.map((r) => [r?.partial, r?.text.length])).toEqual([
      [false, long.length], // a line complete within one chunk is one record
    ]);
    const path2 = newLog();
    const w2 = new LogWriter(path2, () => NOW);
    w2.write("stdout", Buffer.from(long));
    w2.write("stdout", Buffer.from("\n"));
    w2.close();
    const recs2 = records(path2).map((l) => parseLogLine(l));
    expect(recs2.map((r) => [r?.partial, r?.text.length])).toEqual([
      [true, 16 * 1024],
      [true, 16 * 1024],
      [false, 5],
    ]);
  });

  it("decodes a character split across two chunks", () => {
    const path = newLog();
    const w = new LogWriter(path, () => NOW);
    const bytes = Buffer.from("é€😀\n");
    for (const b of bytes) w.write("stdout", Buffer.from([b]));
    w.close();
    expect(records(path)).toEqual([`${STAMP} stdout F é€😀`]);
  });

  it("never cuts a surrogate pair at the 16 KiB limit", () => {
    const path = newLog();
    const w = new LogWriter(path, () => NOW);
    const text = `${"x".repeat(16 * 1024 - 1)}😀tail`;
    w.write("stdout", Buffer.from(text));
    w.close();
    expect(readFileSync(path, "utf8")).not.toContain("\uFFFD");
    expect(
      records(path)
        .map((l) => parseLogLine(l)?.text)
        .join(""),
    ).toBe(text);
  });
});

describe("parse and render", () => {
  it("parses its own records and rejects other text", () => {
    expect(parseLogLine(`${STAMP} stderr P a b  c`)).toEqual({
      time: STAMP,
      stream: "stderr",
      partial: true,
      text: "a b  c",
    });
    expect(parseLogLine(`${STAMP} stdout F `)?.text).toBe("");
    expect(parseLogLine("garbage")).toBeUndefined();
    expect(parseLogLine(`${STAMP} stdin F x`)).toBeUndefined();
  });

  it("renders complete lines with a newline, partial ones without, timestamps on request", () => {
    const full = { time: STAMP, stream: "stdout", partial: false, text: "hi" };
    expect(renderRecord(full, false)).toBe("hi\n");
    expect(renderRecord(full, true)).toBe(`${STAMP} hi\n`);
    expect(renderRecord({ ...full, partial: true }, false)).toBe("hi");
  });

  it("tail keeps the last N records", () => {
    const lines = ["a", "b", "c"];
    expect(tail(lines, undefined)).toEqual(lines);
    expect(tail(lines, -1)).toEqual(lines);
    expect(tail(lines, 0)).toEqual([]);
    expect(tail(lines, 2)).toEqual(["b", "c"]);
    expect(tail(lines, 10)).toEqual(lines);
  });

  it("round trip: what a process wrote is what the user reads, however it was chunked", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: "grapheme", maxLength: 40 }), { maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 }),
        async (pieces, cuts) => {
          const text = pieces.join("\n");
          const bytes = Buffer.from(text);
          const path = newLog();
          const w = new LogWriter(path, () => NOW);
          for (let at = 0, i = 0; at < bytes.length; i++) {
            const size = cuts[i % cuts.length] as number;
            w.write("stdout", bytes.subarray(at, at + size));
            at += size;
          }
          w.close();
          expect(await render(path)).toBe(text);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("streams the tail, with timestamps when asked", async () => {
    const path = newLog();
    const w = new LogWriter(path, () => NOW);
    w.write("stdout", Buffer.from("1\n2\n3\n"));
    w.close();
    expect(await render(path, { tailLines: 2 })).toBe("2\n3\n");
    expect(await render(path, { tailLines: 1, timestamps: true })).toBe(`${STAMP} 3\n`);
    expect(await render(join(dir, "missing"))).toBe("");
  });

  it("reassembles a record (and a character) a read caught half written", async () => {
    const path = newLog();
    const full = `${STAMP} stdout F héllo\n${STAMP} stdout F again\n`;
    const bytes = Buffer.from(full);
    const cut = bytes.indexOf(Buffer.from("é")) + 1; // inside the two bytes of é
    writeFileSync(path, bytes.subarray(0, cut));
    const chunks: string[] = [];
    await streamLog(
      path,
      {
        tailLines: undefined,
        timestamps: false,
        follow: true,
        // The first read got the first part; the rest lands before the next one.
        done: () => {
          writeFileSync(path, bytes);
          return true;
        },
      },
      (c) => chunks.push(c.toString("utf8")),
      new AbortController().signal,
    );
    expect(chunks.join("")).toBe("héllo\nagain\n");
  });
});

describe("follow", () => {
  it("streams what is appended and stops once the writer is done and everything is read", async () => {
    const path = newLog();
    const w = new LogWriter(path, () => NOW);
    w.write("stdout", Buffer.from("before\n"));
    const got: string[] = [];
    let writerDone = false;
    let seen: () => void = () => undefined;
    const firstSeen = new Promise<void>((r) => {
      seen = r;
    });
    const streaming = streamLog(
      path,
      { tailLines: undefined, timestamps: false, follow: true, done: () => writerDone },
      (c) => {
        got.push(c.toString());
        seen();
      },
      new AbortController().signal,
    );
    await firstSeen;
    expect(got.join("")).toBe("before\n");
    w.write("stdout", Buffer.from("after\nlast"));
    w.close();
    writerDone = true;
    await streaming; // returns: follow ends on its own
    expect(got.join("")).toBe("before\nafter\nlast");
  });

  it("stops when the request is aborted, even if the writer goes on", async () => {
    const path = newLog();
    const w = new LogWriter(path, () => NOW);
    w.write("stdout", Buffer.from("x\n"));
    const abort = new AbortController();
    const streaming = streamLog(
      path,
      { tailLines: 0, timestamps: false, follow: true, done: () => false },
      () => undefined,
      abort.signal,
    );
    abort.abort();
    await streaming;
    w.close();
  });
});
