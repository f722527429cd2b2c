import { resolve } from "node:path";
import { type Command, Option } from "commander";
import { pino } from "pino";
import type { Backend } from "../backends/backend.js";
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
    .action(
      async (
        opts: { runnerId: string; backend: string; dataDir: string; kubeconfig?: string },
        cmd: Command,
      ) => {
        const { server, token } = globals(cmd);
        if (!server || !token)
          throw new CliError("runner start needs --server URL and --token T (a runner token)", 2);
        const logger = pino({ level: process.env.PADDOCK_LOG_LEVEL ?? "info" });
        const { runAgent } = await import("../runners/connect.js");
        let backend: Backend;
        if (opts.backend === "kubernetes") {
          const { KubernetesBackend } = await import(
            "../backends/kubernetes/kubernetes-backend.js"
          );
          backend = new KubernetesBackend({ kubeconfig: opts.kubeconfig }, logger);
        } else {
          const { LocalBackend, localBackendOptions } = await import(
            "../backends/local/local-backend.js"
          );
          backend = new LocalBackend(localBackendOptions(resolve(opts.dataDir), process.env));
        }
        const reason = backend.unavailableReason();
        if (reason) logger.warn(`this runner cannot run sandboxes: ${reason}`);
        const abort = new AbortController();
        const stop = () => abort.abort();
        process.once("SIGTERM", stop);
        process.once("SIGINT", stop);
        process.stdout.write(
          `runner ${opts.runnerId} (${opts.backend} backend) connecting to ${server}\n`,
        );
        await runAgent({
          server,
          token,
          runnerId: opts.runnerId,
          backend,
          logger,
          signal: abort.signal,
        });
        await backend.close();
      },
    );
}
