import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { DEFAULT_LOCAL_ROOT, instanceName } from "../backends/local/local-backend.js";
import { PaddockClient } from "../client/client.js";
import { serveConfig } from "../config.js";
import { type RunningServer, startServer } from "../server.js";
import { startPostgres } from "../testing/postgres.js";
import { PACKAGE_ROOT } from "../version.js";
import { concurrentStarts } from "./burst.js";
import { kubernetesFigures } from "./kubernetes.js";
import { fixedRateLatenciesInWorker } from "./load.js";
import { getAndList, idleSandboxes, seedSandboxes } from "./scale.js";
import { type Figure, figure, timed } from "./stats.js";
import { wholeCommandFigures } from "./whole-command.js";

/**
 * `npm run bench`: every figure measured in this run next to its reference,
 * printed as a table and written to bench/results.json.
 */
const RUNS = Number(process.env.PADDOCK_BENCH_RUNS ?? 100);
const IDLE = Number(process.env.PADDOCK_BENCH_IDLE ?? 500);
const TOKEN = "pdk_bench";

async function main(): Promise<void> {
  const figures: Figure[] = [];
  process.env.PADDOCK_BOOTSTRAP_TOKEN = TOKEN;
  const embedded = await launch();
  const { server, client } = embedded;
  let health: Figure;
  let store10k: { get: Figure; list: Figure };
  try {
    // Warm up: first starts pay for code loading and the store's caches.
    for (let i = 0; i < 5; i++) await startExecDelete(client);

    const bare = bareBwrap(RUNS);
    const bareFigure = figure("bare bwrap (same namespaces) running true", bare);
    figures.push(bareFigure);

    const startToExec: number[] = [];
    for (let i = 0; i < RUNS; i++) startToExec.push(await startExecDelete(client));
    figures.push(
      figure("local start → first exec, through the API (cold)", startToExec, bareFigure),
    );
    await setWarmPool(embedded, 4);
    const warmStartToExec: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      // Sequential starts faster than the pool refills would measure the refill instead.
      await waitForPool(embedded, 4);
      warmStartToExec.push(await startExecDelete(client));
    }
    figures.push(
      figure("local start → first exec, through the API (warm pool)", warmStartToExec, bareFigure),
    );
    await setWarmPool(embedded, 0);

    const sandbox = await client.post<{ sandboxId: string }>("/v1beta2/sandboxes?wait=true", {});
    const execs = await timed(RUNS * 2, () =>
      client.post(`/v1beta2/sandboxes/${sandbox.sandboxId}/exec`, { command: ["true"] }),
    );
    figures.push(figure("exec round trip (true) on a running sandbox", execs, bareFigure));

    try {
      await setWarmPool(embedded, 4);
      await waitForPool(embedded, 4);
      figures.push(...(await wholeCommandFigures(server.url, TOKEN, Math.ceil(RUNS / 5))));
    } catch (error) {
      process.stderr.write(`srt comparison skipped: ${(error as Error).message}\n`);
    } finally {
      await setWarmPool(embedded, 0);
    }

    health = figure(
      "GET /healthz, 1,000/s over 64 connections",
      await at1000(server, ["/healthz"]),
    );
    figures.push(health, ...(await apiGets(embedded, sandbox.sandboxId, "embedded store", health)));
    await client.delete(`/v1beta2/sandboxes/${sandbox.sandboxId}`);

    const bareBurst = figure("100 concurrent bare bwrap running true, all exited", [
      bareBwrapBurst(100),
    ]);
    figures.push(bareBurst);
    for (const pool of [0, 100]) {
      await setWarmPool(embedded, pool);
      await waitForPool(embedded, pool);
      const { ms, ids } = await concurrentStarts(server.url, TOKEN, 100);
      figures.push(
        figure(
          `100 concurrent local starts, all RUNNING (${pool ? "warm pool of 100" : "cold"})`,
          [ms],
          bareBurst,
        ),
      );
      await setWarmPool(embedded, 0);
      await deleteAll(client, ids);
    }

    store10k = await tenThousand(embedded, "embedded store");
    figures.push(store10k.get, store10k.list);

    const idle = await idleSandboxes(client, IDLE);
    figures.push(
      figure(
        `${IDLE} idle local sandboxes: host memory each, beyond its own processes`,
        [idle.beyondMiB],
        undefined,
        "MiB",
      ),
      figure(
        `${IDLE} idle local sandboxes: their own processes' PSS each`,
        [idle.ownMiB],
        undefined,
        "MiB",
      ),
    );
    await deleteAll(client, idle.ids);
  } finally {
    await embedded.close();
  }

  try {
    const postgres = await startPostgres();
    try {
      const onPostgres = await launch(await postgres.newDatabase());
      try {
        const sandbox = await onPostgres.client.post<{ sandboxId: string }>(
          "/v1beta2/sandboxes?wait=true",
          {},
        );
        figures.push(...(await apiGets(onPostgres, sandbox.sandboxId, "PostgreSQL", health)));
        const pg10k = await tenThousand(onPostgres, "PostgreSQL");
        figures.push(pg10k.get, pg10k.list);
      } finally {
        await onPostgres.close();
      }
    } finally {
      await postgres.stop();
    }
  } catch (error) {
    process.stderr.write(`PostgreSQL figures skipped: ${(error as Error).message}\n`);
  }

  try {
    figures.push(...(await kubernetesFigures(RUNS)));
  } catch (error) {
    // A fresh machine may not have the test cluster built; say how to get it.
    process.stderr.write(`kubernetes figures skipped: ${(error as Error).message}\n`);
  }
  print(figures);
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "",
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
  writeFileSync(
    join(PACKAGE_ROOT, "bench", "results.json"),
    `${JSON.stringify({ machine, figures }, null, 2)}\n`,
  );
}

interface Launched {
  server: RunningServer;
  client: PaddockClient;
  /** Where the embedded runner keeps its ready warm shells. */
  poolDir: string;
  close(): Promise<void>;
}

/** Sets the warm pool of runner `local`'s default binding. */
async function setWarmPool({ client }: Launched, size: number): Promise<void> {
  const { runner } = await client.get<{
    runner: { profileBindings: { profileTemplateId: string }[] };
  }>("/v1beta2/sandbox/runners/local");
  const binding = runner.profileBindings[0];
  if (!binding) throw new Error("runner local has no binding");
  await client.patch("/v1beta2/sandbox/runners/local", {
    runner: {
      profileBindings: [
        { profileTemplateId: binding.profileTemplateId, isDefault: true, warmPoolSize: size },
      ],
    },
  });
}

/** Until the pool holds `size` ready shells (read on the host: a directory each). */
async function waitForPool({ poolDir }: Launched, size: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  const ready = () => (existsSync(poolDir) ? readdirSync(poolDir).length : 0);
  while (ready() !== size) {
    if (Date.now() > deadline) throw new Error(`the warm pool did not reach ${size} (${ready()})`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A control plane with its embedded local runner, on PGlite or on `databaseUrl`. */
async function launch(databaseUrl?: string): Promise<Launched> {
  const dataDir = mkdtempSync(join(tmpdir(), "paddock-bench-"));
  const server = await startServer(
    serveConfig(
      { listen: "127.0.0.1:0", dataDir, ...(databaseUrl ? { databaseUrl } : {}) },
      { ...process.env, PADDOCK_LOG_LEVEL: "warn" },
    ),
  );
  return {
    server,
    client: new PaddockClient(server.url, TOKEN),
    poolDir: join(
      process.env.PADDOCK_LOCAL_ROOT ?? DEFAULT_LOCAL_ROOT,
      instanceName(dataDir),
      "pool",
    ),
    async close() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function at1000(server: RunningServer, paths: string[]): Promise<number[]> {
  return fixedRateLatenciesInWorker({
    url: server.url,
    token: TOKEN,
    paths,
    ratePerSecond: 1000,
    requests: 5000,
    clients: 64,
  });
}

/** The control plane's read path at a fixed rate, next to its floor (/healthz). */
async function apiGets(
  { server, client }: Launched,
  sandboxId: string,
  store: string,
  health: Figure,
): Promise<Figure[]> {
  const profiles = await client.get<{ profileTemplates: { id: string }[] }>(
    "/v1beta2/sandbox/profile-templates",
  );
  return [
    figure(
      `sandbox get, 1,000/s over 64 connections (${store})`,
      await at1000(server, [`/v1beta2/sandboxes/${sandboxId}`]),
      health,
    ),
    figure(
      `profile get, 1,000/s over 64 connections (${store})`,
      await at1000(server, [
        `/v1beta2/sandbox/profile-templates/${profiles.profileTemplates[0]?.id}`,
      ]),
      health,
    ),
  ];
}

/** Get and list with 10,000 sandboxes in the store, next to the same with one. */
async function tenThousand(
  { server, client }: Launched,
  store: string,
): Promise<{ get: Figure; list: Figure }> {
  const one = await client.post<{ sandboxId: string }>("/v1beta2/sandboxes?wait=true", {});
  const small = await getAndList(
    client,
    [one.sandboxId],
    `1 sandbox in the store (${store})`,
    RUNS,
  );
  const ids = await seedSandboxes(server.db, one.sandboxId, 10_000);
  const large = await getAndList(client, ids, `10,000 in the store (${store})`, RUNS, small);
  await client.delete(`/v1beta2/sandboxes/${one.sandboxId}`);
  return large;
}

async function deleteAll(client: PaddockClient, ids: string[]): Promise<void> {
  for (let at = 0; at < ids.length; at += 25)
    await Promise.all(
      ids.slice(at, at + 25).map((id) => client.delete(`/v1beta2/sandboxes/${id}`)),
    );
}

async function startExecDelete(client: PaddockClient): Promise<number> {
  const t0 = performance.now();
  const s = await client.post<{ sandboxId: string; sandboxStatus: string; statusReason: string }>(
    "/v1beta2/sandboxes?wait=true",
    {},
  );
  if (s.sandboxStatus !== "SANDBOX_STATUS_RUNNING")
    throw new Error(`sandbox did not start: ${s.statusReason}`);
  await client.post(`/v1beta2/sandboxes/${s.sandboxId}/exec`, { command: ["true"] });
  const elapsed = performance.now() - t0;
  await client.delete(`/v1beta2/sandboxes/${s.sandboxId}`);
  return elapsed;
}

/** bubblewrap with the namespaces a sandbox gets, the host's /usr, running `true`. */
const BARE_BWRAP_ARGS = [
  "--unshare-user",
  "--uid",
  "0",
  "--gid",
  "0",
  "--unshare-pid",
  "--unshare-ipc",
  "--unshare-uts",
  "--unshare-net",
  "--unshare-cgroup-try",
  "--die-with-parent",
  "--new-session",
  "--cap-drop",
  "ALL",
  "--ro-bind",
  "/usr",
  "/usr",
  "--symlink",
  "usr/bin",
  "/bin",
  "--symlink",
  "usr/lib",
  "/lib",
  "--symlink",
  "usr/lib64",
  "/lib64",
  "--proc",
  "/proc",
  "--dev",
  "/dev",
  "--",
  "/usr/bin/true",
];

/**
 * The floor: bubblewrap itself, with the namespaces a sandbox gets, running
 * `true`. Timed from a small child process: forking from this one (which
 * holds the embedded PostgreSQL) would charge the reference for our heap.
 */
function bareBwrap(runs: number): number[] {
  const args = BARE_BWRAP_ARGS;
  const script = `
    const { spawnSync } = require("node:child_process");
    const args = JSON.parse(process.argv[1]);
    const samples = [];
    for (let i = 0; i < Number(process.argv[2]); i++) {
      const t0 = performance.now();
      const r = spawnSync("setpriv", ["--reuid", "300999", "--regid", "300999", "--clear-groups", "bwrap", ...args]);
      if (r.status !== 0) { console.error(String(r.stderr)); process.exit(1); }
      samples.push(performance.now() - t0);
    }
    console.log(JSON.stringify(samples));`;
  const r = spawnSync(process.execPath, ["-e", script, JSON.stringify(args), String(runs)], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`bare bwrap failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as number[];
}

/** 100 bubblewraps started at once, until each has run its first command. */
function bareBwrapBurst(count: number): number {
  const script = `
    const { spawn } = require("node:child_process");
    const t0 = performance.now();
    let left = Number(process.argv[1]);
    const args = JSON.parse(process.argv[2]);
    for (let i = 0; i < Number(process.argv[1]); i++) {
      const id = String(301000 + i);
      const child = spawn("setpriv", ["--reuid", id, "--regid", id, "--clear-groups", "bwrap", ...args]);
      child.on("exit", (code) => {
        if (code !== 0) { console.error("bwrap exited " + code); process.exit(1); }
        if (--left === 0) { console.log(performance.now() - t0); }
      });
    }`;
  const r = spawnSync(
    process.execPath,
    ["-e", script, String(count), JSON.stringify(BARE_BWRAP_ARGS)],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`bare bwrap burst failed: ${r.stderr}`);
  return Number(r.stdout.trim());
}

function print(figures: Figure[]): void {
  const rows = figures.map((f) => [
    f.name,
    f.median.toFixed(2),
    f.runs > 1 ? f.p99.toFixed(2) : "",
    f.unit,
    String(f.runs),
    f.ratio === undefined ? "" : `${f.ratio.toFixed(2)}× ${f.reference}`,
  ]);
  const headers = ["figure", "median", "p99", "unit", "runs", "vs reference"];
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  for (const row of [headers, ...rows])
    process.stdout.write(`${row.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ")}\n`);
}

await main();
process.exit(0);
