import { resolve } from "node:path";
import * as z from "zod";
import { DEFAULT_DATA_DIR, DEFAULT_LISTEN } from "./defaults.js";
import { invalidField } from "./errors.js";

export { DEFAULT_DATA_DIR, DEFAULT_LISTEN };

/** `paddock serve` settings: flags win over environment variables, which win over defaults. */
export const ServeConfigSchema = z.strictObject({
  listen: z.string().default(DEFAULT_LISTEN),
  dataDir: z.string().default(DEFAULT_DATA_DIR),
  databaseUrl: z.string().optional(),
  localRunner: z.boolean().default(true),
  /** The embedded runner places sandboxes on this cluster instead of this host. */
  kubeconfig: z.string().optional(),
  bootstrapToken: z.string().optional(),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type ServeConfig = z.output<typeof ServeConfigSchema>;

export interface ServeFlags {
  listen?: string | undefined;
  dataDir?: string | undefined;
  databaseUrl?: string | undefined;
  localRunner?: boolean | undefined;
  kubeconfig?: string | undefined;
}

export function serveConfig(flags: ServeFlags, env: NodeJS.ProcessEnv): ServeConfig {
  const pick = (flag: string | undefined, name: string) => flag ?? (env[name] || undefined);
  const config = ServeConfigSchema.parse({
    listen: pick(flags.listen, "PADDOCK_LISTEN"),
    dataDir: pick(flags.dataDir, "PADDOCK_DATA_DIR"),
    databaseUrl: pick(flags.databaseUrl, "PADDOCK_DATABASE_URL"),
    localRunner: flags.localRunner,
    kubeconfig: pick(flags.kubeconfig, "PADDOCK_KUBECONFIG"),
    bootstrapToken: env.PADDOCK_BOOTSTRAP_TOKEN || undefined,
    logLevel: env.PADDOCK_LOG_LEVEL || undefined,
  });
  if (config.databaseUrl && !/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    throw invalidField(
      "--database-url",
      `must be a postgres:// URL, found ${JSON.stringify(config.databaseUrl)}`,
    );
  }
  parseListen(config.listen);
  return {
    ...config,
    dataDir: resolve(config.dataDir),
    ...(config.kubeconfig ? { kubeconfig: resolve(config.kubeconfig) } : {}),
  };
}

/** `HOST:PORT`, `[v6]:PORT` or `:PORT`. */
export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw invalidField(
      "--listen",
      `must be HOST:PORT (for example 127.0.0.1:7420, or port 0 for a free one), found ${JSON.stringify(listen)}`,
    );
  }
  return { host: match[1] ?? (match[2] || "127.0.0.1"), port };
}
