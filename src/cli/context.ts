import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { ApiError, PaddockClient } from "../client/client.js";
import { DEFAULT_DATA_DIR, DEFAULT_LISTEN } from "../defaults.js";

export const DEFAULT_SERVER = `http://${DEFAULT_LISTEN}`;
export type OutputFormat = "table" | "json" | "yaml";

export interface GlobalOptions {
  server?: string;
  token?: string;
  output: OutputFormat;
}

/** A failure the CLI reports on stderr; `exitCode` 1 for a failed call, 2 for a usage error. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PADDOCK_CONFIG) return env.PADDOCK_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "paddock", "config.json");
}

interface SavedConfig {
  server?: string;
  token?: string;
}

function readSavedConfig(): SavedConfig {
  const path = configPath();
  if (!existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, "utf8")) as SavedConfig;
  } catch (error) {
    throw new CliError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/** Token files a newcomer's `npm start` writes: ./.paddock, then the checkout's own .paddock. */
function defaultTokenFiles(): string[] {
  const checkout = fileURLToPath(new URL("../../", import.meta.url));
  return [
    resolve(DEFAULT_DATA_DIR, "admin.token"),
    join(checkout, DEFAULT_DATA_DIR, "admin.token"),
  ];
}

/**
 * Server and token, in this order: flags, PADDOCK_SERVER/PADDOCK_TOKEN, the
 * config `paddock login` wrote, then the default server with the token file
 * of the default data dir.
 */
export function resolveConnection(
  options: GlobalOptions,
  env: NodeJS.ProcessEnv = process.env,
): { server: string; token: string | undefined } {
  const saved = readSavedConfig();
  const server = options.server || env.PADDOCK_SERVER || saved.server || DEFAULT_SERVER;
  let token = options.token || env.PADDOCK_TOKEN || saved.token;
  if (!token && server.replace(/\/+$/, "") === DEFAULT_SERVER) {
    const file = defaultTokenFiles().find((f) => existsSync(f));
    if (file) token = readFileSync(file, "utf8").trim();
  }
  return { server, token };
}

export const OUTPUT_FORMATS: readonly OutputFormat[] = ["table", "json", "yaml"];

export function globals(command: Command): GlobalOptions {
  const options = command.optsWithGlobals() as GlobalOptions;
  if (!OUTPUT_FORMATS.includes(options.output)) {
    throw new CliError(
      `-o/--output must be one of ${OUTPUT_FORMATS.join(", ")}, found ${JSON.stringify(options.output)}`,
      2,
    );
  }
  return options;
}

export function clientFor(command: Command): PaddockClient {
  // Not globals(): `files read … -o LOCAL` uses -o for a file, and a client needs no format.
  const { server, token } = resolveConnection(command.optsWithGlobals() as GlobalOptions);
  if (!token) {
    throw new CliError(
      `no API token for ${server}: pass --token, set PADDOCK_TOKEN, or run 'paddock login --server URL --token T'`,
    );
  }
  return new PaddockClient(server, token);
}

/** Renders an API failure as one line: the server's message, plus field paths when it names several. */
export function describeFailure(error: unknown): string {
  if (error instanceof ApiError) {
    const reason = error.reason ? ` [${error.reason}]` : "";
    const fields = error.fieldViolations;
    const extra =
      fields.length > 1
        ? `\n${fields.map((v) => `  ${v.field}: ${v.description}`).join("\n")}`
        : "";
    return `error: ${error.message}${reason}${extra}`;
  }
  if (error instanceof CliError) return `error: ${error.message}`;
  return `error: ${(error as Error).message ?? String(error)}`;
}
