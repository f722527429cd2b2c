import { existsSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../../test/support/app.js";
import {
  FIRST_SANDBOX_UID,
  findSandboxInstance,
  localRoot,
  processInfo,
  sandboxProcesses,
  settle,
} from "../../../test/support/host-state.js";
import { encodeRequest, FrameReader } from "./exec-service.js";

describe("exec service protocol", () => {
  it("encodes lengths, NUL-terminated items and stdin", () => {
    const request = encodeRequest({
      command: ["sh", "-c", "cat"],
      env: { A: "1" },
      workingDir: "/w",
      stdin: Buffer.from("in"),
    });
    const spec = "w/w\0eA=1\0ash\0a-c\0acat\0";
    expect(request.readUInt32LE(0)).toBe(spec.length);
    expect(request.readUInt32LE(4)).toBe(2);
    expect(request.subarray(8).toString()).toBe(`${spec}in`);
  });

  it("reads frames split anywhere, in order, up to the exit status", () => {
    const frame = (kind: number, data: Buffer) => {
      const head = Buffer.alloc(5);
      head[0] = kind;
      head.writeUInt32LE(data.length, 1);
      return Buffer.concat([head, data]);
    };
    const code = Buffer.alloc(4);
    code.writeInt32LE(137, 0);
    const stream = Buffer.concat([
      frame(1, Buffer.from("out")),
      frame(2, Buffer.from("err")),
      frame(1, Buffer.alloc(0)),
      frame(3, code),
    ]);
    const seen: string[] = [];
    const reader = new FrameReader({
      output: (stream, data) => seen.push(`${stream}:${data}`),
      exit: (c) => seen.push(`exit:${c}`),
    });
    for (let i = 0; i < stream.length; i++) reader.push(stream.subarray(i, i + 1));
    expect(seen).toEqual(["1:out", "2:err", "1:", "exit:137"]);
  });
});

/**
 * Through the API, checked on the host: commands run by the sandbox's exec
 * service (a process inside its cgroups, outside its pid namespace, holding
 * nothing), and when the service cannot be reached they still run.
 */
describe("exec service (local backend)", () => {
  const BASE = "/v1beta2/sandboxes";
  let t: TestApp;
  let id: string;
  let instance: string;

  const exec = async (command: string[], stdin = "") => {
    const res = await t.call("POST", `${BASE}/${id}/exec`, {
      command,
      stdin: Buffer.from(stdin).toString("base64"),
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return {
      exitCode: res.body.exitCode as number,
      stdout: Buffer.from(res.body.stdout, "base64").toString(),
      stderr: Buffer.from(res.body.stderr, "base64").toString(),
    };
  };
  const socketPath = () => join(localRoot(), instance, "sandboxes", id, "exec.sock");
  /** Host pid of the parent of the sandbox's `sleep` with this argument. */
  const parentOfSleep = async (seconds: string) =>
    settle(
      () => sandboxProcesses(instance, id).find((p) => p.cmdline === `sleep ${seconds}`)?.ppid ?? 0,
      (ppid) => ppid !== 0,
    );

  beforeAll(async () => {
    t = await startTestApp({ kind: "memory" }, { localRunner: true });
    const res = await t.call("POST", `${BASE}?wait=true`, {});
    id = res.body.sandboxId;
    instance = findSandboxInstance(id) ?? "";
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it("has a root-only socket in the sandbox's directory on the host, not inside the sandbox", async () => {
    expect(statSync(socketPath()).mode & 0o777).toBe(0o600);
    expect(statSync(socketPath()).uid).toBe(0);
    const inside = await exec(["sh", "-c", "find / -xdev -name exec.sock 2>/dev/null | wc -l"]);
    expect(inside.stdout.trim()).toBe("0");
  });

  it("runs each command as a child of one service process: in the sandbox, unprivileged, outside its pid namespace", async () => {
    const first = exec(["sleep", "0.51"]);
    const second = exec(["sleep", "0.52"]);
    const parents = [await parentOfSleep("0.51"), await parentOfSleep("0.52")];
    await Promise.all([first, second]);
    expect(parents[0]).toBe(parents[1]);
    const service = processInfo(parents[0] as number);
    expect(service?.cmdline).toContain(" -Z ");
    expect(service?.uid).toBeGreaterThanOrEqual(FIRST_SANDBOX_UID);
    // The service is among the sandbox's processes (its cgroups) ...
    expect(sandboxProcesses(instance, id).map((p) => p.pid)).toContain(parents[0]);
    // ... but the sandbox cannot see it: its parent is outside the sandbox's pid namespace.
    const ppidInside = await exec(["grep", "PPid", "/proc/self/status"]);
    expect(ppidInside.stdout).toMatch(/PPid:\s+0/);
  });

  it("passes stdin, stdout, stderr and the exit status; a timeout kills the command", async () => {
    const r = await exec(["sh", "-c", "cat; echo err >&2; exit 7"], "x".repeat(300_000));
    expect(r).toEqual({ exitCode: 7, stdout: "x".repeat(300_000), stderr: "err\n" });
    const timedOut = await t.call("POST", `${BASE}/${id}/exec`, {
      command: ["sleep", "30.5"],
      maxTimeoutSeconds: 1,
    });
    expect(timedOut.status).toBe(504);
    await settle(
      () => sandboxProcesses(instance, id).some((p) => p.cmdline === "sleep 30.5"),
      (running) => !running,
    );
  });

  it("a command the sandbox's end kills still gets its answer: its status, not an error", async () => {
    const res = await t.call("POST", `${BASE}?wait=true`, {
      command: "sh",
      args: ["-c", "while [ ! -e /tmp/go ]; do sleep 0.01; done"],
    });
    const ending = res.body.sandboxId as string;
    // The main process exits once /tmp/go exists, and the sandbox with it, during the sleep.
    const r = await t.call("POST", `${BASE}/${ending}/exec`, {
      command: ["sh", "-c", "touch /tmp/go; exec sleep 5"],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.exitCode).toBe(137);
    await t.call("DELETE", `${BASE}/${ending}`);
  });

  it("still runs commands the slow way when the service cannot be reached", async () => {
    unlinkSync(socketPath());
    expect(existsSync(socketPath())).toBe(false);
    const r = await exec(["sh", "-c", "echo still; exit 3"]);
    expect(r).toEqual({ exitCode: 3, stdout: "still\n", stderr: "" });
  });
});
