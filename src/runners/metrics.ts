import * as z from "zod";
import type { WarmPoolStats } from "../backends/backend.js";
import type { Route } from "../http/route.js";
import { requireSandboxAdmin } from "../identity/identity.js";
import type { RunnerHub } from "./hub.js";

const METRICS: {
  name: string;
  help: string;
  type: "gauge" | "counter";
  value(p: WarmPoolStats): number;
}[] = [
  {
    name: "paddock_warm_pool_size",
    help: "Shells the binding asks to keep ready",
    type: "gauge",
    value: (p) => p.size,
  },
  {
    name: "paddock_warm_pool_ready",
    help: "Shells ready now",
    type: "gauge",
    value: (p) => p.ready,
  },
  {
    name: "paddock_warm_pool_hits_total",
    help: "Starts that took a ready shell",
    type: "counter",
    value: (p) => p.hits,
  },
  {
    name: "paddock_warm_pool_misses_total",
    help: "Starts that found no ready shell and built one",
    type: "counter",
    value: (p) => p.misses,
  },
];

const label = (value: string) =>
  value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

/** Prometheus text exposition of runners' warm pools, as their agents last reported them. Pure. */
export function renderMetrics(runners: { runnerId: string; pools: WarmPoolStats[] }[]): string {
  const lines: string[] = [];
  for (const metric of METRICS) {
    lines.push(`# HELP ${metric.name} ${metric.help}`, `# TYPE ${metric.name} ${metric.type}`);
    for (const runner of runners) {
      for (const pool of runner.pools) {
        lines.push(
          `${metric.name}{runner="${label(runner.runnerId)}",profile_id="${label(pool.profileId)}"} ${metric.value(pool)}`,
        );
      }
    }
  }
  return `${lines.join("\n")}\n`;
}

export function metricsRoute(hub: RunnerHub): Route {
  return {
    method: "get",
    path: "/metrics",
    tag: "health",
    summary:
      "Prometheus metrics of the caller's organization: warm pools per runner and profile (SANDBOX_ADMIN)",
    response: z.string(),
    async handle(ctx) {
      const admin = requireSandboxAdmin(ctx.principal);
      const runners = hub.warmPoolStats().filter((r) => r.organizationId === admin.organizationId);
      return new Response(renderMetrics(runners), {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    },
  };
}
