import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Command } from "commander";
import { PaddockClient } from "../client/client.js";
import { CliError, configPath, globals } from "./context.js";

export function registerLoginCommand(program: Command): void {
  program
    .command("login")
    .description("Check --server and --token with one call, then save them for later commands")
    .action(async (_opts: unknown, cmd: Command) => {
      const { server, token } = globals(cmd);
      if (!server || !token) throw new CliError("login needs --server URL and --token T", 2);
      // A cheap authenticated call proves both the address and the token.
      await new PaddockClient(server, token).get("/v1beta2/sandbox/profile-templates?pageSize=1");
      const path = configPath();
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      writeFileSync(path, `${JSON.stringify({ server, token }, null, 2)}\n`, { mode: 0o600 });
      chmodSync(path, 0o600);
      process.stdout.write(`logged in to ${server}; saved to ${path}\n`);
    });
}
