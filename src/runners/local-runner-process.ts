import { pino } from "pino";
import type { Backend } from "../backends/backend.js";
import { LocalBackend, type LocalBackendOptions } from "../backends/local/local-backend.js";
import { RunnerAgent } from "./agent.js";
import type { AgentMessage, ControlMessage, Link } from "./protocol.js";

/**
 * The embedded local runner, as a child of `paddock serve`. A separate
 * process because the control plane's heap (the embedded PostgreSQL is
 * hundreds of MiB) makes every fork slow, and a sandbox start or exec is
 * a fork: a fork costs about 2.5 ms per 100 MiB of the forking process. Parent and child speak the runner protocol over the IPC channel.
 */
export type ParentMessage =
  | { kind: "message"; message: ControlMessage }
  | { kind: "shutdown"; removeAll: boolean };
export type ChildMessage = { kind: "message"; message: AgentMessage } | { kind: "closed" };

function send(message: ChildMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const options = JSON.parse(process.env.PADDOCK_LOCAL_RUNNER ?? "{}") as LocalBackendOptions;
  const logger = pino({ level: process.env.PADDOCK_LOG_LEVEL ?? "info" });
  // The embedded runner places sandboxes on a cluster instead when given a kubeconfig.
  const kubeconfig = process.env.PADDOCK_EMBEDDED_KUBECONFIG;
  // The Kubernetes client is loaded only when used: it doubles this process's
  // memory, and every fork (each sandbox start and exec) pays for memory.
  const backend: Backend & { shutdownAll?: () => Promise<void> } = kubeconfig
    ? new (await import("../backends/kubernetes/kubernetes-backend.js")).KubernetesBackend(
        { kubeconfig },
        logger,
      )
    : new LocalBackend(options);
  const listeners: ((m: ControlMessage) => void)[] = [];
  const closeListeners: (() => void)[] = [];
  const link: Link<AgentMessage, ControlMessage> = {
    send: (message) => send({ kind: "message", message }),
    onMessage: (l) => listeners.push(l),
    onClose: (l) => closeListeners.push(l),
    close: () => process.disconnect?.(),
  };
  let closing = false;
  const shutdown = async (removeAll: boolean) => {
    if (closing) return;
    closing = true;
    if (removeAll && backend.shutdownAll) await backend.shutdownAll();
    else await backend.close();
    send({ kind: "closed" });
    process.exit(0);
  };
  process.on("message", (m: ParentMessage) => {
    if (m.kind === "message") for (const l of listeners) l(m.message);
    else void shutdown(m.removeAll);
  });
  // The control plane is gone (even by SIGKILL): the sandboxes go with it.
  process.on("disconnect", () => {
    for (const l of closeListeners) l();
    void shutdown(false);
  });
  process.on("SIGTERM", () => void shutdown(false));
  process.on("SIGINT", () => undefined);
  await new RunnerAgent(backend, logger).attach(link);
}

await main();
