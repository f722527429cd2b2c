import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startPostgres, type TestPostgres } from "../src/testing/postgres.js";

/**
 * Acknowledged means durable: every write the real `paddock serve` answered
 * 200 is still there after the process is killed with SIGKILL (no chance to
 * flush or close anything) and started again on the same store. Run against
 * the embedded store (PGlite on disk) and PostgreSQL.
 */

const BIN = fileURLToPath(new URL("../bin/paddock", import.meta.url));
const TOKEN = "pdk_durability-test-token";
const WRITES = 200;
const CONCURRENCY = 8;
const PROFILES = "/v1beta2/sandbox/profile-templates";

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Server {
  child: ChildProcess;
  pid: number;
  url: string;
  exited: Promise<Exit>;
  output(): string;
}

const children = new Set<ChildProcess>();
const dirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "paddock-durability-"));
  dirs.push(dir);
  return dir;
}

/** Spawns `./bin/paddock serve` and waits for its "listening on" line. */
async function serve(dataDir: string, extraArgs: string[] = []): Promise<Server> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PADDOCK_")) env[k] = v;
  env.PADDOCK_BOOTSTRAP_TOKEN = TOKEN;
  env.PADDOCK_LOG_LEVEL = "warn";
  const child = spawn(
    BIN,
    ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, ...extraArgs],
    { env, stdio: ["ignore", "pipe", "pipe"] },
  );
  children.add(child);
  let output = "";
  const exited = new Promise<Exit>((resolve) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`paddock serve did not listen within 60 s:\n${output}`)),
      60_000,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("error", reject);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`paddock serve exited (${signal ?? code}) before listening:\n${output}`));
    });
  });
  return { child, pid: child.pid as number, url, exited, output: () => output };
}

async function api(url: string, method: string, path: string, body?: unknown) {
  const response = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as any };
}

/**
 * Creates profiles p-0, p-1, … from CONCURRENCY clients at once, and calls
 * `onTarget` the moment the WRITES-th acknowledgement arrives, while other
 * writes are still in flight. Answers every acknowledged one (name → id),
 * including answers that were already on their way when the kill came.
 */
async function writeUntilKilled(url: string, onTarget: () => void) {
  const acked = new Map<string, string>();
  const refused: string[] = [];
  let next = 0;
  let done = false;
  const worker = async () => {
    while (!done) {
      const name = `p-${next++}`;
      let result: Awaited<ReturnType<typeof api>>;
      try {
        result = await api(url, "POST", PROFILES, {
          profileTemplate: { displayName: name, spec: {} },
        });
      } catch {
        // The server died under this request: it was never acknowledged.
        if (done) return;
        throw new Error(`write ${name} failed before the server was killed`);
      }
      // An answer read after the kill was still sent by the server before it died: it counts.
      if (result.status !== 200) {
        refused.push(`${name}: ${result.status} ${JSON.stringify(result.body)}`);
        continue;
      }
      acked.set(name, result.body.profileTemplate.id);
      if (acked.size === WRITES && !done) {
        done = true;
        onTarget();
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { acked, refused, attempted: next };
}

async function listProfiles(url: string): Promise<Map<string, string>> {
  const { status, body } = await api(url, "GET", `${PROFILES}?pageSize=1000`);
  expect(status).toBe(200);
  expect(body.nextPageToken).toBe("");
  return new Map(
    (body.profileTemplates as { displayName: string; id: string }[]).map((p) => [
      p.displayName,
      p.id,
    ]),
  );
}

async function refusesConnections(url: string): Promise<boolean> {
  try {
    await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) });
    return false;
  } catch {
    return true;
  }
}

/** The scenario, for one kind of store. */
async function killAndRestart(dataDir: string, storeArgs: string[]) {
  const first = await serve(dataDir, storeArgs);
  const started = Date.now();
  const { acked, refused, attempted } = await writeUntilKilled(first.url, () => {
    process.kill(first.pid, "SIGKILL");
  });
  const writeMs = Date.now() - started;
  expect(refused).toEqual([]);
  expect(acked.size).toBeGreaterThanOrEqual(WRITES);
  // The spawned pid was the server itself: killing it took the listener down.
  expect(await first.exited).toEqual({ code: null, signal: "SIGKILL" });
  expect(await refusesConnections(first.url)).toBe(true);

  const second = await serve(dataDir, storeArgs);
  expect(readFileSync(join(dataDir, "admin.token"), "utf8").trim()).toBe(TOKEN);
  const stored = await listProfiles(second.url);
  const lost = [...acked].filter(([name, id]) => stored.get(name) !== id).map(([name]) => name);
  expect(lost, `acknowledged writes lost after kill -9 (${lost.length} of ${acked.size})`).toEqual(
    [],
  );
  // Nothing but the starter profile and what we wrote (acknowledged or in flight).
  const strays = [...stored.keys()].filter(
    (name) => name !== "default" && !(/^p-\d+$/.test(name) && Number(name.slice(2)) < attempted),
  );
  expect(strays).toEqual([]);
  expect(stored.has("default")).toBe(true);

  // A SIGTERM to the spawned pid is a clean shutdown of the server: exit code 0.
  process.kill(second.pid, "SIGTERM");
  expect(await second.exited).toEqual({ code: 0, signal: null });
  expect(await refusesConnections(second.url)).toBe(true);
  const summary = { writeMs, acked: acked.size, attempted, stored: stored.size };
  console.log(
    `durability ${storeArgs.length ? "postgres" : "embedded"}: ${JSON.stringify(summary)}`,
  );
  return summary;
}

afterEach(() => {
  for (const child of children) child.kill("SIGKILL");
});

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("acknowledged writes survive kill -9 of paddock serve", () => {
  it("on the embedded store (PGlite in the data dir)", { timeout: 180_000 }, async () => {
    const result = await killAndRestart(tempDir(), []);
    expect(result.stored).toBeGreaterThanOrEqual(WRITES + 1);
  });

  describe("on PostgreSQL", () => {
    let postgres: TestPostgres | undefined;
    beforeAll(async () => {
      postgres = await startPostgres();
    });
    afterAll(async () => {
      await postgres?.stop();
    });

    it("(--database-url)", { timeout: 180_000 }, async () => {
      const url = await (postgres as TestPostgres).newDatabase();
      const result = await killAndRestart(tempDir(), ["--database-url", url]);
      expect(result.stored).toBeGreaterThanOrEqual(WRITES + 1);
    });
  });
});
