import { spawn } from "node:child_process";
import { copyFileSync, existsSync, statSync, symlinkSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, runCli, tempDir } from "./support/process.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * The README's promise: after `npm install`, `npm start` serves on
 * 127.0.0.1:7420 and the CLI works with no flags. Run in a checkout-like
 * directory (package.json copied, dist/bin/node_modules linked) so the
 * test's data dir is its own.
 */
describe("a newcomer's first two commands", () => {
  let checkout: string;
  let home: string;
  let stop: () => Promise<number | null>;

  beforeAll(async () => {
    expect(
      await portInUse(7420),
      "port 7420 is busy: stop the other paddock before running this test",
    ).toBe(false);
    checkout = tempDir("paddock-checkout-");
    home = tempDir("paddock-home-");
    copyFileSync(join(ROOT, "package.json"), join(checkout, "package.json"));
    for (const dir of ["dist", "bin", "node_modules"])
      symlinkSync(join(ROOT, dir), join(checkout, dir));
    const env = cleanEnv({ HOME: home, XDG_CONFIG_HOME: join(home, ".config") });
    const child = spawn("npm", ["start"], {
      cwd: checkout,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let output = "";
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes("listening on http://127.0.0.1:7420")) resolve();
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      child.once("exit", (code) => reject(new Error(`npm start exited with ${code}:\n${output}`)));
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    // npm runs the server as a child: signal the whole group.
    stop = async () => {
      process.kill(-(child.pid as number), "SIGTERM");
      return exited;
    };
  });
  afterAll(async () => {
    await stop?.();
  });

  it("npm start bootstraps the default data dir with a private admin token", () => {
    const tokenFile = join(checkout, ".paddock", "admin.token");
    expect(existsSync(tokenFile)).toBe(true);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
  });

  it("the CLI with no flags lists the bootstrap profile and runner", async () => {
    const env = { HOME: home, XDG_CONFIG_HOME: join(home, ".config") };
    const profiles = await runCli(["sandbox", "profile", "get"], { cwd: checkout, env });
    expect(profiles.code, profiles.stderr).toBe(0);
    expect(profiles.stdout).toMatch(/^ID\s+NAME/);
    expect(profiles.stdout).toMatch(/\sdefault\s/);
    const runners = await runCli(["sandbox", "runner", "get", "-o", "json"], {
      cwd: checkout,
      env,
    });
    expect(runners.code, runners.stderr).toBe(0);
    const [local] = JSON.parse(runners.stdout);
    expect(local.runnerId).toBe("local");
    expect(local.profileBindings).toEqual([
      expect.objectContaining({ profileName: "default", isDefault: true }),
    ]);
  });

  it("the CLI with no flags runs a first sandbox", async () => {
    const env = { HOME: home, XDG_CONFIG_HOME: join(home, ".config") };
    const run = await runCli(["sandbox", "run", "--", "echo", "hi"], { cwd: checkout, env });
    expect(run).toEqual({ code: 0, stdout: "hi\n", stderr: "" });
  });
});
