import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type ServerProcess, startServerProcess } from "./support/process.js";

/**
 * CONTRACT §2 and §6: a SANDBOX_USER sees only their own sandboxes, on every
 * route (the interactive WebSocket included); a SANDBOX_ADMIN sees all of
 * their organization's; another organization sees none. Against a real
 * `paddock serve`, so that the WebSocket upgrade is the real one.
 */

const BASE = "/v1beta2/sandboxes";
const ORGS = "/v1beta2/admin/organizations";

interface Answer {
  status: number;
  body: any;
  bytes: Buffer;
}

let server: ServerProcess;
const tokens: Record<"admin" | "alice" | "bob" | "dana" | "ada", string> = {
  admin: "",
  alice: "",
  bob: "",
  dana: "",
  ada: "",
};

async function call(
  who: keyof typeof tokens,
  method: string,
  path: string,
  body?: unknown,
): Promise<Answer> {
  const response = await fetch(new URL(path, server.url), {
    method,
    headers: {
      authorization: `Bearer ${tokens[who]}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  let parsed: unknown = bytes.toString();
  try {
    parsed = JSON.parse(bytes.toString());
  } catch {}
  return { status: response.status, body: parsed, bytes };
}

function ok(res: Answer): any {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

function expectNotFound(res: Answer, what: string): void {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(404);
  expect(res.body.code, what).toBe(5);
  // Nothing of the sandbox leaks into the refusal.
  expect(JSON.stringify(res.body)).not.toContain("alice");
}

async function start(who: keyof typeof tokens, body: Record<string, unknown> = {}) {
  const s = ok(await call(who, "POST", `${BASE}?wait=true`, body));
  expect(s.sandboxStatus, JSON.stringify(s)).toBe("SANDBOX_STATUS_RUNNING");
  return s.sandboxId as string;
}

type StreamResult =
  | { kind: "refused"; status: number; body: any }
  | { kind: "done"; output: string; exitCode: number | undefined };

/**
 * Opens the interactive exec WebSocket running `command` and collects
 * everything until it closes. Sends no input: what happens to stdin is the
 * CLI test's business; here only who may open the stream matters.
 */
function execStream(
  who: keyof typeof tokens,
  id: string,
  command: string[],
): Promise<StreamResult> {
  const url = new URL(`${BASE}/${id}/exec/stream`, server.url);
  url.protocol = "ws:";
  for (const part of command) url.searchParams.append("command", part);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${tokens[who]}` } });
    let output = "";
    let exitCode: number | undefined;
    ws.on("unexpected-response", (_req, res) => {
      let text = "";
      res.on("data", (c: Buffer) => {
        text += c.toString();
      });
      res.on("end", () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {}
        resolve({ kind: "refused", status: res.statusCode ?? 0, body });
      });
    });
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) output += data.toString();
      else {
        const control = JSON.parse(data.toString());
        if (control.type === "exit") exitCode = control.exitCode;
        if (control.type === "error") reject(new Error(JSON.stringify(control)));
      }
    });
    ws.on("close", () => resolve({ kind: "done", output, exitCode }));
    ws.on("error", (error) => {
      if (!/Unexpected server response/.test(error.message)) reject(error);
    });
  });
}

/** Every sandbox route, as one caller would use it on sandbox `id`. */
const routes: [string, (who: keyof typeof tokens, id: string) => Promise<Answer>][] = [
  ["get", (who, id) => call(who, "GET", `${BASE}/${id}`)],
  ["exec", (who, id) => call(who, "POST", `${BASE}/${id}/exec`, { command: ["echo", "in"] })],
  [
    "files write",
    (who, id) =>
      call(who, "POST", `${BASE}/${id}/files`, {
        filePath: `/tmp/by-${who}`,
        fileContent: Buffer.from(`written by ${who}`).toString("base64"),
      }),
  ],
  ["files read", (who, id) => call(who, "GET", `${BASE}/${id}/files/etc/hostname`)],
  ["logs", (who, id) => call(who, "GET", `${BASE}/${id}/logs`)],
  ["stop", (who, id) => call(who, "POST", `${BASE}/${id}/stop`, { gracefulShutdownSeconds: 0 })],
  ["delete", (who, id) => call(who, "DELETE", `${BASE}/${id}`)],
];

beforeAll(async () => {
  server = await startServerProcess();
  tokens.admin = server.token();
  const user = async (org: string, userId: string, role: string) =>
    ok(await call("admin", "POST", `${ORGS}/${org}/users`, { userId, role })).token as string;
  ok(await call("admin", "POST", ORGS, { organizationId: "acme", displayName: "Acme" }));
  [tokens.alice, tokens.bob, tokens.dana, tokens.ada] = await Promise.all([
    user("default", "alice", "SANDBOX_USER"),
    user("default", "bob", "SANDBOX_USER"),
    user("default", "dana", "SANDBOX_ADMIN"),
    user("acme", "ada", "SANDBOX_ADMIN"),
  ]);
});
afterAll(async () => {
  expect(await server?.stop()).toBe(0);
});

describe("another user's sandbox", () => {
  let aliceSandbox: string;
  beforeAll(async () => {
    aliceSandbox = await start("alice", {
      command: "sh",
      args: ["-c", "echo alice-log; exec sleep 600"],
    });
  });

  it.each(routes)("%s by another SANDBOX_USER answers 404", async (what, route) => {
    expectNotFound(await route("bob", aliceSandbox), what);
  });

  it.each(routes)("%s by another organization's admin answers 404", async (what, route) => {
    expectNotFound(await route("ada", aliceSandbox), what);
  });

  it("the interactive exec WebSocket is refused before the upgrade with 404", async () => {
    for (const who of ["bob", "ada"] as const) {
      const res = await execStream(who, aliceSandbox, ["sh", "-c", "echo leaked > /tmp/leaked"]);
      expect(res.kind, who).toBe("refused");
      if (res.kind === "refused") {
        expect(res.status, who).toBe(404);
        expect(res.body.code, who).toBe(5);
      }
    }
  });

  it("those refusals changed nothing: the sandbox runs, untouched", async () => {
    const s = ok(await call("alice", "GET", `${BASE}/${aliceSandbox}`));
    expect(s.sandboxStatus).toBe("SANDBOX_STATUS_RUNNING");
    const files = ok(
      await call("alice", "POST", `${BASE}/${aliceSandbox}/exec`, {
        command: ["sh", "-c", "ls /tmp"],
      }),
    );
    expect(Buffer.from(files.stdout, "base64").toString()).not.toMatch(/by-(bob|ada)|leaked/);
  });
});

describe("the owner and an admin of the same organization", () => {
  for (const who of ["alice", "dana"] as const) {
    it(`${who} may use every route on alice's sandbox`, async () => {
      const id = await start("alice", {
        command: "sh",
        args: ["-c", "echo hello-log; exec sleep 600"],
      });
      // The log line is written once the command runs; let it land before reading.
      while (
        !(await call("alice", "GET", `${BASE}/${id}/logs`)).bytes.toString().includes("hello-log")
      )
        await new Promise((r) => setTimeout(r, 20));
      const results = new Map<string, Answer>();
      for (const [what, route] of routes) results.set(what, await route(who, id));
      for (const [what, res] of results)
        expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(200);
      expect(results.get("get")?.body.sandboxId).toBe(id);
      expect(Buffer.from(results.get("exec")?.body.stdout, "base64").toString()).toBe("in\n");
      expect(results.get("files read")?.bytes.toString()).toMatch(/^sandbox-/);
      expect(results.get("logs")?.bytes.toString()).toBe("hello-log\n");
      expect(results.get("stop")?.body.sandboxStatus).toMatch(/TERMINAT/);
      expect((await call(who, "GET", `${BASE}/${id}`)).status).toBe(404);
    });

    it(`${who} may open the interactive exec WebSocket`, async () => {
      const id = await start("alice");
      const res = await execStream(who, id, ["sh", "-c", "echo via-websocket; exit 3"]);
      expect(res).toEqual({ kind: "done", output: "via-websocket\n", exitCode: 3 });
      ok(await call(who, "DELETE", `${BASE}/${id}`));
    });
  }
});

describe("lists", () => {
  it("show a user only their own, an admin the organization's, another organization none", async () => {
    const [a1, a2, b1] = await Promise.all([start("alice"), start("alice"), start("bob")]);
    const ids = async (who: keyof typeof tokens, query = "") =>
      new Set(
        ok(await call(who, "GET", `${BASE}?pageSize=1000${query}`)).sandboxes.map(
          (s: any) => s.sandboxId,
        ),
      );
    const alice = await ids("alice");
    expect(alice.has(a1) && alice.has(a2)).toBe(true);
    expect(alice.has(b1)).toBe(false);
    for (const s of ok(await call("alice", "GET", `${BASE}?pageSize=1000`)).sandboxes)
      expect(s.userId).toBe("alice");
    const bob = await ids("bob");
    expect([...bob]).toEqual([b1]);
    const dana = await ids("dana");
    for (const id of [a1, a2, b1]) expect(dana.has(id)).toBe(true);
    expect((await ids("ada")).size).toBe(0);
    // Filters do not widen what a user sees.
    expect([...(await ids("bob", "&runnerId=local&status=RUNNING"))]).toEqual([b1]);
  });
});
