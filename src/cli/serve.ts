import type { Command } from "commander";

export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .description("Run the control plane (and the embedded local runner) in this process")
    .option(
      "--listen <host:port>",
      "address to listen on; port 0 picks a free one (env PADDOCK_LISTEN)",
    )
    .option("--data-dir <dir>", "embedded store and admin token location (env PADDOCK_DATA_DIR)")
    .option(
      "--database-url <url>",
      "use this PostgreSQL server instead of the embedded store (env PADDOCK_DATABASE_URL)",
    )
    .option("--no-local-runner", "do not run the embedded local runner")
    .option(
      "--kubeconfig <file>",
      "the embedded runner places sandboxes on this Kubernetes cluster instead of this host (env PADDOCK_KUBECONFIG)",
    )
    .action(
      async (opts: {
        listen?: string;
        dataDir?: string;
        databaseUrl?: string;
        localRunner: boolean;
        kubeconfig?: string;
      }) => {
        const { serveConfig } = await import("../config.js");
        const config = serveConfig(opts, process.env);
        // Loaded here so that client commands do not pay for the server's modules.
        const { startServer } = await import("../server.js");
        const server = await startServer(config);
        process.stdout.write(
          `paddock ${config.databaseUrl ? "(postgres store)" : `(data dir ${config.dataDir})`} listening on ${server.url}\n`,
        );
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) return;
          stopping = true;
          process.stdout.write(`${signal}: shutting down\n`);
          server.close().then(
            () => process.exit(0),
            (error: unknown) => {
              process.stderr.write(`error during shutdown: ${(error as Error).message}\n`);
              process.exit(1);
            },
          );
        };
        process.on("SIGTERM", () => stop("SIGTERM"));
        process.on("SIGINT", () => stop("SIGINT"));
      },
    );
}
