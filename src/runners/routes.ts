import * as z from "zod";
import { PAGE_PARAMS, pageQuery, type Route } from "../http/route.js";
import { requireSandboxAdmin } from "../identity/identity.js";
import type { SandboxService } from "../sandboxes/sandbox-service.js";
import { CreateRunnerRequestSchema, RunnerInputSchema, RunnerWireSchema } from "./runner.js";
import type { RunnerService } from "./runner-service.js";

const BASE = "/v1beta2/sandbox/runners";
const Wrapped = z.strictObject({ runner: RunnerWireSchema });

export function runnerRoutes(runners: RunnerService, sandboxes: SandboxService): Route[] {
  const one = async (r: Parameters<RunnerService["toWire"]>[0][number]) => {
    const [wire] = await runners.toWire([r]);
    return { runner: wire };
  };
  return [
    {
      method: "post",
      path: BASE,
      tag: "runners",
      summary: "Create a runner with its profile bindings (SANDBOX_ADMIN)",
      request: CreateRunnerRequestSchema,
      response: Wrapped,
      async handle(ctx) {
        return one(await runners.create(ctx.principal, await ctx.body()));
      },
    },
    {
      method: "get",
      path: BASE,
      tag: "runners",
      summary: "List runners",
      queryParams: PAGE_PARAMS,
      response: z.strictObject({ runners: z.array(RunnerWireSchema), nextPageToken: z.string() }),
      async handle(ctx) {
        const page = await runners.list(ctx.principal, pageQuery(ctx.query));
        return { runners: await runners.toWire(page.items), nextPageToken: page.nextPageToken };
      },
    },
    {
      method: "get",
      path: `${BASE}/{runnerId}`,
      tag: "runners",
      summary: "Get a runner",
      response: Wrapped,
      async handle(ctx) {
        return one(await runners.get(ctx.principal, ctx.params.runnerId ?? ""));
      },
    },
    {
      method: "patch",
      path: `${BASE}/{runnerId}`,
      tag: "runners",
      summary:
        "Edit a runner: fields present replace the stored ones; profileBindings replaces the whole list (SANDBOX_ADMIN)",
      request: z.strictObject({ runner: RunnerInputSchema }),
      response: Wrapped,
      async handle(ctx) {
        return one(await runners.edit(ctx.principal, ctx.params.runnerId ?? "", await ctx.body()));
      },
    },
    {
      method: "delete",
      path: `${BASE}/{runnerId}`,
      tag: "runners",
      summary: "Delete a runner (SANDBOX_ADMIN)",
      queryParams: { force: "Stop the runner's sandboxes first instead of refusing." },
      response: z.strictObject({}),
      async handle(ctx) {
        const runnerId = ctx.params.runnerId ?? "";
        requireSandboxAdmin(ctx.principal);
        await runners.get(ctx.principal, runnerId);
        await sandboxes.drainRunner(ctx.principal, runnerId, ctx.query.get("force") === "true");
        await runners.delete(ctx.principal, runnerId);
        return {};
      },
    },
    {
      method: "post",
      path: `${BASE}/{runnerId}/tokens`,
      tag: "runners",
      summary: "Issue a credential for this runner's agent (SANDBOX_ADMIN)",
      request: z.strictObject({}),
      response: z.strictObject({ token: z.string() }),
      async handle(ctx) {
        return runners.createToken(ctx.principal, ctx.params.runnerId ?? "");
      },
    },
  ];
}
