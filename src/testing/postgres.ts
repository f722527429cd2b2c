import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

/** A PostgreSQL server for tests. */
export interface TestPostgres {
  /** URL of the server's `postgres` database (superuser `postgres`, no password). */
  url: string;
  /** Creates a fresh, empty database and answers its URL. */
  newDatabase(): Promise<string>;
  /** Stops the server this helper started (and removes its files), or drops the databases it made. */
  stop(): Promise<void>;
}

/** Set to a `postgres://` URL to use that server instead of starting one. */
export const EXTERNAL_URL_ENV = "PADDOCK_TEST_DATABASE_URL";
const PREFERRED_MAJOR = "15";

/**
 * Starts a real PostgreSQL server (the Debian package `postgresql`) on
 * 127.0.0.1 and a free port, with trust authentication, in a temporary
 * directory; or, when PADDOCK_TEST_DATABASE_URL is set, uses that server.
 * Never skips: if PostgreSQL is missing this throws, so the tests that need
 * it fail and say why.
 */
export async function startPostgres(): Promise<TestPostgres> {
  const external = process.env[EXTERNAL_URL_ENV];
  if (external) return useExternal(external);
  return startLocal();
}

function useExternal(url: string): TestPostgres {
  const created: string[] = [];
  return {
    url,
    newDatabase: async () => {
      const name = databaseName();
      await adminQuery(url, `create database "${name}"`);
      created.push(name);
      return withDatabase(url, name);
    },
    stop: async () => {
      for (const name of created.splice(0)) {
        await adminQuery(url, `drop database if exists "${name}" with (force)`);
      }
    },
  };
}

async function startLocal(): Promise<TestPostgres> {
  const bin = findBinDir();
  const asUser = runAsUser();
  const root = mkdtempSync(join(tmpdir(), "paddock-pg-"));
  if (asUser) chownSync(root, asUser.uid, asUser.gid);
  const dataDir = join(root, "data");
  const logFile = join(root, "server.log");
  const run = (program: string, args: string[]) =>
    runAs(asUser, join(bin, program), args).catch((error: Error) => {
      throw new Error(`${error.message}${readLog(logFile)}`);
    });

  let started = false;
  const stopSync = () => {
    if (!started) return;
    started = false;
    try {
      execFileSync(join(bin, "pg_ctl"), ["-D", dataDir, "-m", "immediate", "-w", "stop"], {
        stdio: "ignore",
        ...(asUser ?? {}),
      });
    } catch {}
    rmSync(root, { recursive: true, force: true });
  };
  // If the test process ends without calling stop(), do not leave a server behind.
  process.once("exit", stopSync);

  try {
    await run("initdb", [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "--auth=trust",
      "--encoding=UTF8",
      "--locale=C",
      "--no-sync",
      "--no-instructions",
    ]);
    // Loopback only; the socket lives in our temp dir, not /var/run/postgresql.
    // fsync is off: the tests crash Paddock, never this server, so durability
    // of the server's own files does not matter and it is much faster.
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      const options = [
        "-c listen_addresses=127.0.0.1",
        `-p ${port}`,
        `-k ${root}`,
        "-c fsync=off",
        "-c synchronous_commit=off",
        "-c full_page_writes=off",
        "-c max_connections=200",
      ].join(" ");
      try {
        writeFileSync(logFile, "");
        if (asUser) chownSync(logFile, asUser.uid, asUser.gid);
        await run("pg_ctl", [
          "-D",
          dataDir,
          "-l",
          logFile,
          "-o",
          options,
          "-w",
          "-t",
          "60",
          "start",
        ]);
        started = true;
        const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
        await adminQuery(url, "select 1");
        return {
          url,
          newDatabase: async () => {
            const name = databaseName();
            await adminQuery(url, `create database "${name}"`);
            return withDatabase(url, name);
          },
          stop: async () => {
            if (!started) return;
            started = false;
            process.removeListener("exit", stopSync);
            await run("pg_ctl", ["-D", dataDir, "-m", "fast", "-w", "stop"]).catch(() => {});
            rmSync(root, { recursive: true, force: true });
          },
        };
      } catch (error) {
        lastError = error;
        // A port taken between our probe and the server's bind: try another.
        if (!/already in use|could not create any TCP\/IP sockets/i.test(String(error))) break;
      }
    }
    throw lastError;
  } catch (error) {
    stopSync();
    process.removeListener("exit", stopSync);
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
}

/** /usr/lib/postgresql/15/bin, else the newest installed major version. */
function findBinDir(): string {
  const base = "/usr/lib/postgresql";
  const majors = existsSync(base)
    ? readdirSync(base)
        .filter((d) => existsSync(join(base, d, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const major = majors.includes(PREFERRED_MAJOR) ? PREFERRED_MAJOR : majors[0];
  if (!major) {
    throw new Error(
      `PostgreSQL is not installed: no ${base}/${PREFERRED_MAJOR}/bin/initdb. ` +
        "Install the Debian package `postgresql` (.ci/run does: apt-get install -y postgresql), " +
        `or set ${EXTERNAL_URL_ENV}=postgres://USER@HOST:PORT/DB to use a running server.`,
    );
  }
  return join(base, major, "bin");
}

/** initdb and postgres refuse to run as root: as root, run them as the `postgres` OS user. */
function runAsUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (uid === undefined || gid === undefined) {
    throw new Error(
      "running as root but there is no `postgres` OS user to run PostgreSQL as " +
        "(the Debian package `postgresql` creates it)",
    );
  }
  return { uid: Number(uid), gid: Number(gid) };
}

function runAs(
  user: { uid: number; gid: number } | undefined,
  program: string,
  args: string[],
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, {
      ...(user ?? {}),
      cwd: "/",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C", LANG: "C" },
      // pg_ctl's server inherits its stdio; keep it from holding our pipes open.
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      output += c.toString();
    });
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `${program} ${args.join(" ")} failed (${signal ?? `exit ${code}`}):\n${output}`,
          ),
        );
    });
  });
}

function readLog(file: string): string {
  try {
    const text = readFileSync(file, "utf8").trim();
    return text ? `\nserver log:\n${text}` : "";
  } catch {
    return "";
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function databaseName(): string {
  return `paddock_test_${randomBytes(6).toString("hex")}`;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function adminQuery(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
