import { resolve } from "node:path";
import type { Backend } from "../backends/backend.js";
import { type Command, Option } from "./commander.js";
import { CliError, globals } from "./context.js";

interface StartOptions {
  runnerId?: string;
  backend: string;
  dataDir: string;
  kubeconfig?: string;
}

export function registerRunnerStartCommand(program: Command): void {
  const runner = program.command("runner").description("Run a runner agent");
  runner
    .command("start")
    .description(
      "Run a runner agent in this process: it connects out to the control plane and runs the sandboxes placed on it",
    )
    .option(
      "--runner-id <id>",
      "the runner this agent serves; its token must be that runner's (env PADDOCK_RUNNER_ID)",
    )
    .addOption(
      new Option("--backend <backend>", "where sandboxes run")
        .choices(["local", "kubernetes"])
        .default("local"),
    )
    .option(
      "--kubeconfig <path>",
      "kubeconfig for the kubernetes backend (else KUBECONFIG, ~/.kube/config or in-cluster)",
    )
    .option(
      "--data-dir <dir>",
      "the agent's own state (the local backend's instance)",
      ".paddock-runner",
    )
    .action(async (opts: StartOptions, cmd: Command) => {
      const flags = globals(cmd);
      const server = flags.server || process.env.PADDOCK_SERVER;
      const token = flags.token || process.env.PADDOCK_TOKEN;
      const runnerId = opts.runnerId || process.env.PADDOCK_RUNNER_ID;
      if (!server || !token || !runnerId) {
        throw new CliError(
          "runner start needs --server URL, --token T (a runner token) and --runner-id ID (or PADDOCK_SERVER, PADDOCK_TOKEN, PADDOCK_RUNNER_ID)",
          2,
        );
      }
      const { pino } = await import("pino");
      const logger = pino({ level: process.env.PADDOCK_LOG_LEVEL ?? "info" });
      const { runAgent } = await import("../runners/connect.js");
      let backend: Backend;
      if (opts.backend === "kubernetes") {
        const { KubernetesBackend } = await import("../backends/kubernetes/kubernetes-backend.js");
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
        `runner ${runnerId} (${opts.backend} backend) connecting to ${server}\n`,
      );
      await runAgent({ server, token, runnerId, backend, logger, signal: abort.signal });
      await backend.close();
    });
}
