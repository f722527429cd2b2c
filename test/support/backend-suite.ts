import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_EXEC_OUTPUT_BYTES, MAX_FILE_BYTES } from "../../src/sandboxes/sandbox-service.js";
import type { TestApp, TestResponse } from "./app.js";
import { settle } from "./host-state.js";

/**
 * The backend suite: CONTRACT §6 over HTTP, against a real runner. Runs on
 * the local backend (src/sandboxes/sandbox-api.test.ts) and on the
 * kubernetes backend with a real node (test/kubernetes-backend.e2e.test.ts).
 */
export interface BackendUnderTest {
  name: "local" | "kubernetes";
  /** The app with its embedded runner `local` connected, whatever its backend. */
  start: () => Promise<TestApp>;
}

const BASE = "/v1beta2/sandboxes";
const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";
const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";

let t: TestApp;

let counter = 0;
const uniqueTag = (prefix: string) => `${prefix}-${++counter}-${process.pid}`;

function reason(res: TestResponse): string | undefined {
  return (res.body?.details ?? []).find((d: any) => d["@type"] === ERROR_INFO)?.reason;
}

function violations(res: TestResponse): string[] {
  const detail = (res.body?.details ?? []).find((d: any) => d["@type"] === BAD_REQUEST);
  return (detail?.fieldViolations ?? []).map((v: any) => v.field);
}

function expectError(res: TestResponse, httpStatus: number, code: number, why?: string): void {
  expect(res.status, JSON.stringify(res.body)).toBe(httpStatus);
  expect(res.body.code, JSON.stringify(res.body)).toBe(code);
  if (why !== undefined) expect(reason(res), JSON.stringify(res.body)).toBe(why);
}

function ok(res: TestResponse): any {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

const b64 = (text: string | Buffer) => Buffer.from(text).toString("base64");
const unb64 = (text: string) => Buffer.from(text, "base64").toString("utf8");

/** Starts a sandbox and waits until it runs (or, with `settle: "any"`, until it is running or ended). */
async function start(body: Record<string, unknown> = {}, token?: string): Promise<any> {
  const sandbox = ok(await t.call("POST", `${BASE}?wait=true`, body, token));
  expect(sandbox.sandboxStatus, JSON.stringify(sandbox)).toBe("SANDBOX_STATUS_RUNNING");
  return sandbox;
}

/** Polls a sandbox until `done` holds; no deadline of its own (the test's timeout applies). */
async function until(id: string, done: (s: any) => boolean): Promise<any> {
  for (;;) {
    const s = ok(await t.call("GET", `${BASE}/${id}`));
    if (done(s)) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const TERMINAL = new Set([
  "SANDBOX_STATUS_COMPLETED",
  "SANDBOX_STATUS_FAILED",
  "SANDBOX_STATUS_TERMINATED",
]);
const ended = (id: string) => until(id, (s) => TERMINAL.has(s.sandboxStatus));

function exec(id: string, body: Record<string, unknown>): Promise<TestResponse> {
  return t.call("POST", `${BASE}/${id}/exec`, body);
}

async function sh(id: string, script: string, extra: Record<string, unknown> = {}): Promise<any> {
  return ok(await exec(id, { command: ["sh", "-c", script], ...extra }));
}

async function logs(id: string, query = ""): Promise<string> {
  const res = await t.fetch("GET", `${BASE}/${id}/logs${query}`);
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return text;
}

const filePath = (id: string, path: string) =>
  `${BASE}/${id}/files/${path.replace(/^\//, "").split("/").map(encodeURIComponent).join("/")}`;

export function backendSuite(backend: BackendUnderTest): void {
  beforeAll(async () => {
    t = await backend.start();
  }, 300_000);
  afterAll(() => t?.close());
  const onKubernetes = backend.name === "kubernetes";

  describe("start, get, list", () => {
    it("start without wait answers at once; the sandbox then runs", async () => {
      const res = ok(await t.call("POST", BASE, {}));
      expect(res).toEqual({
        sandboxId: expect.stringMatching(/^[0-9a-f-]{36}$/),
        runnerId: "local",
        profileId: expect.stringMatching(/^[0-9a-f-]{36}$/),
        profileName: "default",
        namespace: expect.any(String),
        sandboxStatus: expect.stringMatching(/^SANDBOX_STATUS_(PENDING|CREATING)$/),
        statusReason: "",
        appliedEgressMode: "none",
        appliedIngressMode: "none",
        serviceAddress: "",
        exposedPorts: [],
        startedAtTime: null,
        exitCode: 0,
        // The local runner's starter profile names none; the cluster's runner has a zone default.
        containerImage: onKubernetes ? expect.stringContaining("busybox") : "",
        tags: [],
        userId: "admin",
        organizationId: "default",
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
        expiresAt: expect.any(String),
      });
      const settled = await until(res.sandboxId, (s) => !/PENDING|CREATING/.test(s.sandboxStatus));
      expect(settled.sandboxStatus).toBe("SANDBOX_STATUS_RUNNING");
      expect(Date.parse(settled.startedAtTime)).not.toBeNaN();
    });

    it("start with ?wait=true answers once RUNNING; get answers the same sandbox", async () => {
      const started = await start({ tags: ["waited"], maxLifetimeSeconds: 3600 });
      expect(Date.parse(started.startedAtTime)).not.toBeNaN();
      const got = ok(await t.call("GET", `${BASE}/${started.sandboxId}`));
      expect(got).toMatchObject({
        sandboxId: started.sandboxId,
        sandboxStatus: "SANDBOX_STATUS_RUNNING",
        runnerId: "local",
        profileName: "default",
        tags: ["waited"],
        exitCode: 0,
      });
      expect(Date.parse(got.expiresAt) - Date.parse(got.createdAt)).toBe(3600_000);
    });

    it("get of an unknown or malformed id answers 404 SANDBOX_NOT_FOUND", async () => {
      expectError(
        await t.call("GET", `${BASE}/00000000-0000-4000-8000-000000000000`),
        404,
        5,
        "SANDBOX_NOT_FOUND",
      );
      expectError(await t.call("GET", `${BASE}/not-a-uuid`), 404, 5, "SANDBOX_NOT_FOUND");
    });

    it("refuses unknown fields and bad values, naming the field", async () => {
      const unknown = await t.call("POST", BASE, { profileName: "default" });
      expectError(unknown, 400, 3);
      expect(unknown.body.message).toContain("profileName");
      const lifetime = await t.call("POST", BASE, { maxLifetimeSeconds: 31 * 24 * 3600 });
      expectError(lifetime, 400, 3);
      expect(violations(lifetime)).toEqual(["maxLifetimeSeconds"]);
      const egress = await t.call("POST", BASE, { network: { egressMode: "lan" } });
      expectError(egress, 400, 3);
      expect(egress.body.message).toMatch(/none.*internet|internet.*none/);
    });

    it("lists with status, tags and runnerId filters, page by page", async () => {
      const tag = uniqueTag("list");
      const ids = (await Promise.all([1, 2, 3].map(() => start({ tags: [tag, "shared"] })))).map(
        (s) => s.sandboxId,
      );
      const stopped = (await start({ tags: [tag] })).sandboxId;
      ok(await t.call("POST", `${BASE}/${stopped}/stop`, { gracefulShutdownSeconds: 0 }));
      await ended(stopped);

      const page1 = ok(await t.call("GET", `${BASE}?tags=${tag},shared&pageSize=2`));
      expect(page1.sandboxes).toHaveLength(2);
      expect(page1.nextPageToken).not.toBe("");
      const page2 = ok(
        await t.call(
          "GET",
          `${BASE}?tags=${tag}&tags=shared&pageSize=2&pageToken=${encodeURIComponent(page1.nextPageToken)}`,
        ),
      );
      expect(page2.sandboxes).toHaveLength(1);
      expect(page2.nextPageToken).toBe("");
      expect([...page1.sandboxes, ...page2.sandboxes].map((s: any) => s.sandboxId).sort()).toEqual(
        [...ids].sort(),
      );

      const idsOf = async (query: string) =>
        ok(await t.call("GET", `${BASE}?${query}`))
          .sandboxes.map((s: any) => s.sandboxId)
          .sort();
      expect(await idsOf(`tags=${tag}`)).toEqual([...ids, stopped].sort());
      expect(await idsOf(`tags=${tag}&status=RUNNING`)).toEqual([...ids].sort());
      expect(await idsOf(`tags=${tag}&status=SANDBOX_STATUS_RUNNING`)).toEqual([...ids].sort());
      expect(await idsOf(`tags=${tag}&status=terminated`)).toEqual([stopped]);
      expect(await idsOf(`tags=${tag}&status=PAUSED`)).toEqual([]);
      expect(await idsOf(`tags=${tag}&runnerId=local`)).toEqual([...ids, stopped].sort());
      expect(ok(await t.call("GET", `${BASE}?tags=${tag}&runnerId=elsewhere`)).sandboxes).toEqual(
        [],
      );
      const bad = await t.call("GET", `${BASE}?status=SLEEPING`);
      expectError(bad, 400, 3);
      expect(violations(bad)).toEqual(["status"]);
      await Promise.all([...ids, stopped].map((id) => t.call("DELETE", `${BASE}/${id}`)));
    });
  });

  describe("exec", () => {
    let id: string;
    beforeAll(async () => {
      id = (
        await start({ environmentVariables: { GREETING: "hello from start", SHARED: "start" } })
      ).sandboxId;
    });

    it("runs a command with stdin, env and workingDir; answers every field", async () => {
      ok(await exec(id, { command: ["mkdir", "-p", "/tmp/work dir"] }));
      const res = await sh(id, 'cat; echo "[$EXTRA]"; pwd; echo oops >&2', {
        stdin: b64("piped input\n"),
        environmentVariables: { EXTRA: "x y" },
        workingDir: "/tmp/work dir",
      });
      expect(res).toEqual({
        stdout: b64("piped input\n[x y]\n/tmp/work dir\n"),
        stderr: b64("oops\n"),
        exitCode: 0,
        stdoutTruncated: false,
        stderrTruncated: false,
      });
    });

    it("runs in /workspace by default; args append to command", async () => {
      const res = ok(await exec(id, { command: ["sh"], args: ["-c", "pwd"] }));
      expect(unb64(res.stdout)).toBe("/workspace\n");
    });

    it("gives exec'd commands the sandbox's environmentVariables; the exec's own win", async () => {
      const res = await sh(id, 'echo "$GREETING|$SHARED"', {
        environmentVariables: { SHARED: "exec" },
      });
      expect(unb64(res.stdout)).toBe("hello from start|exec\n");
    });

    it("answers a non-zero exit as a result, not an error", async () => {
      const res = await sh(id, "echo partial; echo failing >&2; exit 7");
      expect(res).toMatchObject({ exitCode: 7, stdoutTruncated: false, stderrTruncated: false });
      expect(unb64(res.stdout)).toBe("partial\n");
      expect(unb64(res.stderr)).toBe("failing\n");
      const missing = ok(await exec(id, { command: ["/no/such/program"] }));
      expect(missing.exitCode).not.toBe(0);
    });

    it("answers every exit code as a result, 125 and 126 included", async () => {
      for (const code of [1, 125, 126, 127, 255]) {
        const res = await exec(id, { command: ["sh", "-c", `exit ${code}`] });
        expect(res.status, `exit ${code}: ${JSON.stringify(res.body)}`).toBe(200);
        expect(res.body.exitCode).toBe(code);
      }
    });

    it("takes a timeout longer than a timer can hold as no timeout at all", async () => {
      const res = await sh(id, "sleep 0.2; echo finished", { maxTimeoutSeconds: 25 * 24 * 3600 });
      expect(res).toMatchObject({ exitCode: 0, stdout: b64("finished\n") });
      const tooLong = await exec(id, { command: ["true"], maxTimeoutSeconds: 30 * 24 * 3600 + 1 });
      expect(violations(tooLong)).toEqual(["maxTimeoutSeconds"]);
    });

    it("answers 504 COMMAND_TIMEOUT for a command past maxTimeoutSeconds, and kills it", async () => {
      const res = await exec(id, {
        command: ["sh", "-c", "touch /tmp/timeout-started; sleep 600; touch /tmp/timeout-survived"],
        maxTimeoutSeconds: 1,
      });
      expectError(res, 504, 4, "COMMAND_TIMEOUT");
      // The command ran, and nothing of it is left.
      expect((await sh(id, "ls /tmp/timeout-started")).exitCode).toBe(0);
      const left = await sh(id, "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c '[s]leep 600'");
      expect(unb64(left.stdout)).toBe("0\n");
    });

    it("caps stdout and stderr at MAX_EXEC_OUTPUT_BYTES each, flagging what was cut", async () => {
      const over = await sh(
        id,
        `head -c ${MAX_EXEC_OUTPUT_BYTES + 1} /dev/zero; head -c 10 /dev/zero >&2`,
      );
      expect(over.stdoutTruncated).toBe(true);
      expect(over.stderrTruncated).toBe(false);
      expect(Buffer.from(over.stdout, "base64").length).toBe(MAX_EXEC_OUTPUT_BYTES);
      expect(Buffer.from(over.stderr, "base64").length).toBe(10);
      const exact = await sh(id, `head -c ${MAX_EXEC_OUTPUT_BYTES} /dev/zero >&2`);
      expect(exact.stderrTruncated).toBe(false);
      expect(Buffer.from(exact.stderr, "base64").length).toBe(MAX_EXEC_OUTPUT_BYTES);
      const errOver = await sh(id, `head -c ${MAX_EXEC_OUTPUT_BYTES + 100} /dev/zero >&2`);
      expect([errOver.stdoutTruncated, errOver.stderrTruncated]).toEqual([false, true]);
    });

    it("refuses a missing command, bad stdin or a bad timeout, naming the field", async () => {
      expect(violations(await exec(id, { command: [] }))).toEqual(["command"]);
      expect(violations(await exec(id, { command: ["true"], stdin: "%%%" }))).toEqual(["stdin"]);
      expect(violations(await exec(id, { command: ["true"], maxTimeoutSeconds: 0 }))).toEqual([
        "maxTimeoutSeconds",
      ]);
      expect(
        violations(await exec(id, { command: ["true"], environmentVariables: { "A=B": "x" } })),
      ).toEqual(['environmentVariables["A=B"]']);
    });
  });

  describe("files", () => {
    let id: string;
    beforeAll(async () => {
      id = (await start()).sandboxId;
    });

    it("round-trips all 256 byte values", async () => {
      const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256));
      ok(
        await t.call("POST", `${BASE}/${id}/files`, {
          filePath: "/tmp/all.bin",
          fileContent: bytes.toString("base64"),
        }),
      );
      const res = await t.fetch("GET", filePath(id, "/tmp/all.bin"));
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
      // What the sandbox sees is the same bytes.
      const inside = await sh(id, "cat /tmp/all.bin");
      expect(Buffer.from(inside.stdout, "base64").equals(bytes)).toBe(true);
    });

    it("writes and reads a path with spaces, '%' and non-ASCII, creating parent directories", async () => {
      const path = "/workspace/a dir/100% sure ü#?.txt";
      ok(
        await t.call("POST", `${BASE}/${id}/files`, {
          filePath: path,
          fileContent: b64("spaced\n"),
        }),
      );
      const res = await t.fetch("GET", filePath(id, path));
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("spaced\n");
      expect(unb64((await sh(id, `cat '${path}'`)).stdout)).toBe("spaced\n");
      // Unencoded spaces reach the same file.
      const plain = await t.fetch(
        "GET",
        `${BASE}/${id}/files/workspace/a%20dir/100%25%20sure%20%C3%BC%23%3F.txt`,
      );
      expect(await plain.text()).toBe("spaced\n");
    });

    it("reads a file written by a command; an empty file is empty", async () => {
      await sh(id, "printf made-inside > /tmp/inside.txt; : > /tmp/empty");
      expect(await (await t.fetch("GET", filePath(id, "/tmp/inside.txt"))).text()).toBe(
        "made-inside",
      );
      const empty = await t.fetch("GET", filePath(id, "/tmp/empty"));
      expect(empty.status).toBe(200);
      expect((await empty.arrayBuffer()).byteLength).toBe(0);
    });

    it("a write that makes the sandbox end at once still succeeds", async () => {
      // The main process exits as soon as the file appears, while the write
      // of its 8 MiB is still going on: the write must still complete and say so.
      const fileContent = Buffer.alloc(8 * 1024 * 1024, 1).toString("base64");
      for (let round = 0; round < 3; round++) {
        const s = await start({
          command: "sh",
          args: ["-c", "while [ ! -e /tmp/go ]; do :; done"],
        });
        ok(
          await t.call("POST", `${BASE}/${s.sandboxId}/files`, {
            filePath: "/tmp/go",
            fileContent,
          }),
        );
        await t.call("DELETE", `${BASE}/${s.sandboxId}`);
      }
    });

    it("answers 404 FILE_NOT_FOUND for a missing file", async () => {
      const res = await t.call("GET", filePath(id, "/tmp/does-not-exist"));
      expectError(res, 404, 5, "FILE_NOT_FOUND");
      expect(res.body.message).toContain("/tmp/does-not-exist");
      expectError(await t.call("GET", filePath(id, "/no/such/dir/file")), 404, 5, "FILE_NOT_FOUND");
    });

    it("refuses a read path with broken percent-encoding, naming the path", async () => {
      const res = await t.call("GET", `${BASE}/${id}/files/tmp/%zz`);
      expectError(res, 400, 3);
      expect(violations(res)).toEqual(["path"]);
    });

    it("refuses over 32 MiB both ways with FILE_TOO_LARGE; exactly 32 MiB passes", async () => {
      const tooBig = Buffer.alloc(MAX_FILE_BYTES + 1, 7).toString("base64");
      expectError(
        await t.call("POST", `${BASE}/${id}/files`, { filePath: "/tmp/big", fileContent: tooBig }),
        400,
        3,
        "FILE_TOO_LARGE",
      );
      expect((await sh(id, "ls /tmp/big")).exitCode).not.toBe(0);

      await sh(id, `head -c ${MAX_FILE_BYTES + 1} /dev/zero > /tmp/big-inside`);
      expectError(await t.call("GET", filePath(id, "/tmp/big-inside")), 400, 3, "FILE_TOO_LARGE");

      const exact = Buffer.alloc(MAX_FILE_BYTES, 1);
      ok(
        await t.call("POST", `${BASE}/${id}/files`, {
          filePath: "/tmp/exact",
          fileContent: exact.toString("base64"),
        }),
      );
      const back = await t.fetch("GET", filePath(id, "/tmp/exact"));
      expect(back.status).toBe(200);
      expect(Buffer.from(await back.arrayBuffer()).equals(exact)).toBe(true);
    });

    it("refuses relative paths and content that is not base64", async () => {
      expect(
        violations(
          await t.call("POST", `${BASE}/${id}/files`, { filePath: "tmp/x", fileContent: "" }),
        ),
      ).toEqual(["filePath"]);
      expect(
        violations(
          await t.call("POST", `${BASE}/${id}/files`, {
            filePath: "/tmp/x",
            fileContent: "not base64!",
          }),
        ),
      ).toEqual(["fileContent"]);
    });
  });

  describe("logs", () => {
    it("answers the main process's output, with tailLines and timestamps", async () => {
      const s = await start({
        command: "sh",
        args: ["-c", "for i in 1 2 3 4 5; do echo line-$i; done; exec sleep 600"],
      });
      // The lines are written before `sleep` starts; wait until all five are in.
      let all = "";
      while (!all.includes("line-5")) all = await logs(s.sandboxId);
      expect(all).toBe("line-1\nline-2\nline-3\nline-4\nline-5\n");
      expect(await logs(s.sandboxId, "?tailLines=2")).toBe("line-4\nline-5\n");
      expect(await logs(s.sandboxId, "?tailLines=0")).toBe("");
      const stamped = (await logs(s.sandboxId, "?timestamps=true&tailLines=3")).split("\n");
      expect(stamped).toHaveLength(4);
      expect(stamped.at(-1)).toBe("");
      stamped.slice(0, 3).forEach((line, i) => {
        const [time, text] = line.split(" ");
        expect(Date.parse(time ?? "")).not.toBeNaN();
        expect(time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$/);
        expect(text).toBe(`line-${i + 3}`);
      });
      expectError(await t.call("GET", `${BASE}/${s.sandboxId}/logs?tailLines=-1`), 400, 3);
      expectError(await t.call("GET", `${BASE}/${s.sandboxId}/logs?follow=maybe`), 400, 3);
      ok(await t.call("DELETE", `${BASE}/${s.sandboxId}`));
    });

    it("with follow=true streams new output until the sandbox ends", async () => {
      const s = await start({
        command: "sh",
        args: [
          "-c",
          "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; echo third",
        ],
      });
      const res = await t.fetch("GET", `${BASE}/${s.sandboxId}/logs?follow=true`);
      expect(res.status).toBe(200);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let seen = "";
      while (!seen.includes("first\n")) {
        const { value, done } = await reader.read();
        expect(done, `the stream ended early after ${JSON.stringify(seen)}`).toBe(false);
        seen += decoder.decode(value, { stream: true });
      }
      // Only now does the sandbox go on: what follows can only come by following.
      expect(seen).toBe("first\n");
      ok(
        await t.call("POST", `${BASE}/${s.sandboxId}/files`, {
          filePath: "/tmp/go",
          fileContent: "",
        }),
      );
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += decoder.decode(value, { stream: true });
      }
      expect(seen).toBe("first\nsecond\nthird\n");
      expect((await ended(s.sandboxId)).sandboxStatus).toBe("SANDBOX_STATUS_COMPLETED");
    });

    it("stay readable after the sandbox ends, until it is deleted", async () => {
      const res = ok(
        await t.call("POST", BASE, {
          command: "sh",
          args: ["-c", "echo why it failed >&2; exit 3"],
        }),
      );
      const done = await ended(res.sandboxId);
      expect(done).toMatchObject({ sandboxStatus: "SANDBOX_STATUS_FAILED", exitCode: 3 });
      expect(await logs(res.sandboxId)).toBe("why it failed\n");
      expect(await logs(res.sandboxId, "?follow=true")).toBe("why it failed\n");
      ok(await t.call("DELETE", `${BASE}/${res.sandboxId}`));
      expectError(
        await t.call("GET", `${BASE}/${res.sandboxId}/logs`),
        404,
        5,
        "SANDBOX_NOT_FOUND",
      );
    });
  });

  describe("lifecycle", () => {
    it("a command given at start ends COMPLETED or FAILED with its exit code", async () => {
      const [good, bad] = await Promise.all(
        [
          {
            command: "sh",
            args: ["-c", "echo $GREETING"],
            environmentVariables: { GREETING: "hi" },
          },
          { command: "sh", args: ["-c", "exit 42"] },
        ].map(async (body) => ended(ok(await t.call("POST", BASE, body)).sandboxId)),
      );
      expect(good).toMatchObject({ sandboxStatus: "SANDBOX_STATUS_COMPLETED", exitCode: 0 });
      expect(await logs(good.sandboxId)).toBe("hi\n");
      expect(bad).toMatchObject({ sandboxStatus: "SANDBOX_STATUS_FAILED", exitCode: 42 });
      expect(bad.statusReason).toContain("42");
    });

    it("exec and files on a sandbox that is not running answer 400 SANDBOX_NOT_RUNNING", async () => {
      const s = await start();
      const stopped = ok(
        await t.call("POST", `${BASE}/${s.sandboxId}/stop`, {
          gracefulShutdownSeconds: 0,
          waitForReady: true,
        }),
      );
      expect(stopped.sandboxStatus).toBe("SANDBOX_STATUS_TERMINATED");
      for (const res of [
        await exec(s.sandboxId, { command: ["true"] }),
        await t.call("POST", `${BASE}/${s.sandboxId}/files`, {
          filePath: "/tmp/x",
          fileContent: "",
        }),
        await t.call("GET", filePath(s.sandboxId, "/tmp/x")),
      ]) {
        expectError(res, 400, 9, "SANDBOX_NOT_RUNNING");
      }
      // Stopping again changes nothing.
      expect(ok(await t.call("POST", `${BASE}/${s.sandboxId}/stop`, {})).sandboxStatus).toBe(
        "SANDBOX_STATUS_TERMINATED",
      );
    });

    it("stop sends SIGTERM, waits gracefulShutdownSeconds, then SIGKILLs what is left", async () => {
      const s = await start({
        command: "sh",
        args: [
          "-c",
          "trap 'echo got-term' TERM; echo ready; while true; do sleep 0.1; echo tick; done",
        ],
      });
      while (!(await logs(s.sandboxId)).includes("ready"))
        await new Promise((r) => setTimeout(r, 20));
      const answer = ok(
        await t.call("POST", `${BASE}/${s.sandboxId}/stop`, { gracefulShutdownSeconds: 2 }),
      );
      expect(answer.sandboxStatus).toBe("SANDBOX_STATUS_TERMINATING");
      const done = await ended(s.sandboxId);
      expect(done.sandboxStatus).toBe("SANDBOX_STATUS_TERMINATED");
      expect(done.statusReason).not.toBe("");
      const out = await logs(s.sandboxId);
      // It got TERM, trapped it and went on running; only KILL ended it.
      expect(out).toContain("got-term\n");
      expect(out.slice(out.indexOf("got-term")).split("\n")).toContain("tick");
      expect(done.exitCode).not.toBe(0);
    });

    it("stop refuses a grace period out of range", async () => {
      const s = await start();
      const res = await t.call("POST", `${BASE}/${s.sandboxId}/stop`, {
        gracefulShutdownSeconds: -1,
      });
      expectError(res, 400, 3);
      expect(violations(res)).toEqual(["gracefulShutdownSeconds"]);
      ok(await t.call("DELETE", `${BASE}/${s.sandboxId}`));
    });

    it("delete stops a running sandbox and removes it", async () => {
      const s = await start();
      await sh(s.sandboxId, "echo alive > /tmp/alive");
      expect(ok(await t.call("DELETE", `${BASE}/${s.sandboxId}`))).toEqual({});
      expectError(await t.call("GET", `${BASE}/${s.sandboxId}`), 404, 5, "SANDBOX_NOT_FOUND");
      expectError(await t.call("DELETE", `${BASE}/${s.sandboxId}`), 404, 5, "SANDBOX_NOT_FOUND");
      expect(
        ok(await t.call("GET", `${BASE}?pageSize=1000`)).sandboxes.map((x: any) => x.sandboxId),
      ).not.toContain(s.sandboxId);
    });

    it("delete ?wait=false answers once the deletion is recorded; the runner still removes it", async () => {
      const s = await start();
      expect(ok(await t.call("DELETE", `${BASE}/${s.sandboxId}?wait=false`))).toEqual({});
      expectError(await t.call("GET", `${BASE}/${s.sandboxId}`), 404, 5, "SANDBOX_NOT_FOUND");
      const row = () =>
        t.store.db
          .selectFrom("sandboxes")
          .select("desired")
          .where("sandbox_id", "=", s.sandboxId)
          .executeTakeFirst();
      // Answered before the runner removed it: the record waits for that.
      expect(await row()).toEqual({ desired: "deleted" });
      // Removed by the runner, which then drops the record.
      await settle(row, (r) => r === undefined, 30_000);
      expect(await row()).toBeUndefined();
    });

    it("ends a sandbox at maxLifetimeSeconds: TERMINATED, saying why", async () => {
      // A pod takes about a second to be ready: its lifetime must outlast that.
      const s = await start({ maxLifetimeSeconds: onKubernetes ? 4 : 1 });
      const done = await ended(s.sandboxId);
      expect(done.sandboxStatus).toBe("SANDBOX_STATUS_TERMINATED");
      expect(done.statusReason).toMatch(/lifetime/);
    });

    it("fails a sandbox whose runtime class the runner lacks, naming the class", async () => {
      const profile = ok(
        await t.call("POST", "/v1beta2/sandbox/profile-templates", {
          profileTemplate: { displayName: "kata", spec: { runtimeClass: "kata-qemu" } },
        }),
      ).profileTemplate;
      const { runner } = ok(await t.call("GET", "/v1beta2/sandbox/runners/local"));
      ok(
        await t.call("PATCH", "/v1beta2/sandbox/runners/local", {
          runner: {
            profileBindings: [
              ...runner.profileBindings,
              { profileTemplateId: profile.id, isDefault: false },
            ],
          },
        }),
      );
      const res = ok(await t.call("POST", `${BASE}?wait=true`, { profileNames: ["kata"] }));
      expect(res.sandboxStatus).toBe("SANDBOX_STATUS_FAILED");
      expect(res.statusReason).toContain("kata-qemu");
      expect(res.profileName).toBe("kata");
    });
  });

  describe("deleting the runner", () => {
    it("is refused with RUNNER_IN_USE while it has live sandboxes; ?force=true stops them", async () => {
      const live = await Promise.all([start(), start()]);
      const refused = await t.call("DELETE", "/v1beta2/sandbox/runners/local");
      expectError(refused, 400, 9, "RUNNER_IN_USE");
      expect(refused.body.message).toContain("local");
      for (const s of live)
        expect(ok(await t.call("GET", `${BASE}/${s.sandboxId}`)).sandboxStatus).toBe(
          "SANDBOX_STATUS_RUNNING",
        );
      ok(await t.call("DELETE", "/v1beta2/sandbox/runners/local?force=true"));
      expectError(await t.call("GET", "/v1beta2/sandbox/runners/local"), 404, 5);
      for (const s of live) expectError(await t.call("GET", `${BASE}/${s.sandboxId}`), 404, 5);
    });
  });
}
