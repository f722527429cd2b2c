import { join, resolve } from "node:path";
import { type Command, Option } from "commander";
import { pino } from "pino";
import { CliError, globals } from "./context.js";

export function registerRunnerStartCommand(program: Command): void {
  const runner = program.command("runner").description("Run a runner agent");
  runner
    .command("start")
    .description(
      "Run a runner agent in this process: it connects out to the control plane and runs the sandboxes placed on it",
    )
    .requiredOption(
      "--runner-id <id>",
      "the runner this agent serves (its token must be that runner's)",
    )
    .addOption(
      new Option("--backend <backend>", "where sandboxes run")
        .choices(["local", "kubernetes"])
        .default("local"),
    )
    .option("--kubeconfig <path>", "kubeconfig for the kubernetes backend")
    .option(
      "--data-dir <dir>",
      "the agent's own state (the local backend's instance)",
      ".paddock-runner",
    )
    .action(async (opts: { runnerId: string; backend: string; dataDir: string }, cmd: Command) => {
      const { server, token } = globals(cmd);
      if (!server || !token)
        throw new CliError("runner start needs --server URL and --token T (a runner token)", 2);
      if (opts.backend !== "local") {
        throw new CliError(
          `backend '${opts.backend}' is not implemented yet; this build runs sandboxes with --backend local`,
          2,
        );
      }
      const [{ instanceName, LocalBackend }, { runAgent }, { PACKAGE_ROOT }] = await Promise.all([
        import("../backends/local/local-backend.js"),
        import("../runners/connect.js"),
        import("../version.js"),
      ]);
      const logger = pino({ level: process.env.PADDOCK_LOG_LEVEL ?? "info" });
      const backend = new LocalBackend({
        instance: instanceName(resolve(opts.dataDir)),
        helperDir: join(PACKAGE_ROOT, "dist", "native"),
        ...(process.env.PADDOCK_LOCAL_ROOT ? { root: process.env.PADDOCK_LOCAL_ROOT } : {}),
        ...(process.env.PADDOCK_IMAGE_ROOT ? { imageRoot: process.env.PADDOCK_IMAGE_ROOT } : {}),
      });
      const reason = backend.unavailableReason();
      if (reason) logger.warn(`this runner cannot run sandboxes: ${reason}`);
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      process.stdout.write(`runner ${opts.runnerId} (local backend) connecting to ${server}\n`);
      await runAgent({
        server,
        token,
        runnerId: opts.runnerId,
        backend,
        logger,
        signal: abort.signal,
      });
      await backend.close();
    });
}
