import type { Command } from "commander";
import { listAll } from "../client/client.js";
import type { RunnerWire } from "../runners/runner.js";
import { clientFor, globals } from "./context.js";
import { runEdit } from "./edit-flow.js";
import { readDocument } from "./input.js";
import { age, printData, printRows } from "./output.js";

const BASE = "/v1beta2/sandbox/runners";

/** The editable form: zoneDefaults structured, output-only fields left out. */
export async function structuredRunner(r: RunnerWire): Promise<Record<string, unknown>> {
  const { parseProfileSpec } = await import("../profiles/spec-wire.js");
  return {
    runnerId: r.runnerId,
    displayName: r.displayName,
    identity: r.identity,
    managedSpec: r.managedSpec,
    profileBindings: r.profileBindings,
    zoneDefaults: parseProfileSpec(r.zoneDefaults, "zoneDefaults"),
  };
}

/** A create document is `{"runnerId", "runner"}` or a bare runner that carries its runnerId. */
function createBody(doc: unknown): unknown {
  if (typeof doc === "object" && doc !== null && !Array.isArray(doc) && "runner" in doc) return doc;
  const runnerId =
    (doc as { runnerId?: unknown; runner_id?: unknown } | null)?.runnerId ??
    (doc as { runner_id?: unknown } | null)?.runner_id;
  return { runnerId, runner: doc };
}

export function registerRunnerCommands(sandbox: Command): void {
  const runner = sandbox
    .command("runner")
    .description("Runners (one per cluster, or the local runner) and their profile bindings");

  runner
    .command("create")
    .description(
      "Create a runner from YAML or JSON ({runnerId, runner} or a bare runner); prints its id",
    )
    .requiredOption("-f, --file <file>", "file to read, or - for stdin")
    .action(async (opts: { file: string }, cmd: Command) => {
      const created = await clientFor(cmd).post<{ runner: RunnerWire }>(
        BASE,
        createBody(readDocument(opts.file)),
      );
      process.stdout.write(`${created.runner.runnerId}\n`);
    });

  runner
    .command("get")
    .description("List runners, or show one")
    .argument("[runnerId]")
    .action(async (runnerId: string | undefined, _opts: unknown, cmd: Command) => {
      const client = clientFor(cmd);
      const format = globals(cmd).output;
      let items: RunnerWire[];
      if (runnerId) {
        const { runner: one } = await client.get<{ runner: RunnerWire }>(
          `${BASE}/${encodeURIComponent(runnerId)}`,
        );
        if (format !== "table") return printData(one, format);
        items = [one];
      } else {
        items = await listAll<RunnerWire>(client, BASE, "runners");
      }
      printRows(
        format,
        items,
        ["RUNNER", "ZONE", "CONNECTION", "BACKEND", "PROFILES", "HEARTBEAT", "AGE"],
        items.map((r) => [
          r.runnerId,
          r.identity.zone,
          r.connectionStatus,
          r.backend || "-",
          r.profileBindings
            .map((b) => (b.isDefault ? `${b.profileName}*` : b.profileName))
            .join(",") || "-",
          age(r.lastHeartbeatAt),
          age(r.createdAt),
        ]),
      );
    });

  runner
    .command("edit")
    .description(
      "Edit a runner: -f FILE, or $EDITOR on its YAML (profileBindings replaces the whole list)",
    )
    .argument("<runnerId>")
    .option("-f, --file <file>", "file to read, or - for stdin")
    .action(async (runnerId: string, opts: { file?: string }, cmd: Command) => {
      const client = clientFor(cmd);
      const path = `${BASE}/${encodeURIComponent(runnerId)}`;
      const outcome = await runEdit({
        file: opts.file,
        fileName: `runner-${runnerId}.yaml`,
        current: async () =>
          structuredRunner((await client.get<{ runner: RunnerWire }>(path)).runner),
        send: async (doc) => {
          const body =
            typeof doc === "object" && doc !== null && "runner" in doc ? doc : { runner: doc };
          await client.patch(path, body);
        },
      });
      process.stdout.write(outcome === "sent" ? `runner ${runnerId} edited\n` : "no changes\n");
    });

  runner
    .command("delete")
    .description("Delete a runner")
    .argument("<runnerId>")
    .option("--force", "stop the runner's sandboxes first")
    .action(async (runnerId: string, opts: { force?: boolean }, cmd: Command) => {
      const query = opts.force ? "?force=true" : "";
      await clientFor(cmd).delete(`${BASE}/${encodeURIComponent(runnerId)}${query}`);
      process.stdout.write(`runner ${runnerId} deleted\n`);
    });
}
