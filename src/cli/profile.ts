import type { Command } from "commander";
import { listAll } from "../client/client.js";
import type { ProfileTemplateWire } from "../profiles/profile.js";
import { clientFor, globals } from "./context.js";
import { runEdit } from "./edit-flow.js";
import { readDocument, unwrapDocument } from "./input.js";
import { age, printData, printRows } from "./output.js";

const BASE = "/v1beta2/sandbox/profile-templates";

/** The structured form `edit` opens: sub-blocks as YAML, not escaped JSON strings. */
export async function structuredProfile(p: ProfileTemplateWire): Promise<Record<string, unknown>> {
  // Loaded here, not at start: the profile schema (zod) costs every other command ~100 ms.
  const { parseProfileSpec } = await import("../profiles/spec-wire.js");
  return {
    id: p.id,
    displayName: p.displayName,
    description: p.description,
    labels: p.labels,
    spec: parseProfileSpec(p.spec),
  };
}

function egressSummary(p: ProfileTemplateWire): string {
  if (!p.spec.networkConfigJson) return "none";
  const network = JSON.parse(p.spec.networkConfigJson) as {
    egress?: { default?: string; modes?: Record<string, unknown> };
  };
  const modes = Object.keys(network.egress?.modes ?? {});
  if (modes.length === 0) return "none";
  const def = network.egress?.default || modes[0];
  return modes.map((m) => (m === def ? `${m}*` : m)).join(",");
}

export function registerProfileCommands(sandbox: Command): void {
  const profile = sandbox
    .command("profile")
    .description("Profile templates: image, runtime, resources, namespace and network policy");

  profile
    .command("create")
    .description(
      "Create a profile template from YAML or JSON (structured or proto-facing, bare or wrapped); prints its id",
    )
    .requiredOption("-f, --file <file>", "file to read, or - for stdin")
    .action(async (opts: { file: string }, cmd: Command) => {
      const body = unwrapDocument(readDocument(opts.file), "profileTemplate");
      const { profileTemplate } = await clientFor(cmd).post<{
        profileTemplate: ProfileTemplateWire;
      }>(BASE, { profileTemplate: body });
      process.stdout.write(`${profileTemplate.id}\n`);
    });

  profile
    .command("get")
    .description("List profile templates, or show one by id or display name")
    .argument("[idOrName]")
    .action(async (idOrName: string | undefined, _opts: unknown, cmd: Command) => {
      const client = clientFor(cmd);
      const format = globals(cmd).output;
      let items: ProfileTemplateWire[];
      if (idOrName) {
        const { profileTemplate } = await client.get<{ profileTemplate: ProfileTemplateWire }>(
          `${BASE}/${encodeURIComponent(idOrName)}`,
        );
        if (format !== "table") return printData(profileTemplate, format);
        items = [profileTemplate];
      } else {
        items = await listAll<ProfileTemplateWire>(client, BASE, "profileTemplates");
      }
      printRows(
        format,
        items,
        ["ID", "NAME", "RUNTIME", "IMAGE", "EGRESS", "AGE"],
        items.map((p) => [
          p.id,
          p.displayName,
          p.spec.runtimeClass || "-",
          p.spec.containerImage || "-",
          egressSummary(p),
          age(p.createdAt),
        ]),
      );
    });

  profile
    .command("edit")
    .description("Edit a profile template: -f FILE, or $EDITOR on its structured YAML")
    .argument("<id>")
    .option("-f, --file <file>", "file to read, or - for stdin")
    .action(async (id: string, opts: { file?: string }, cmd: Command) => {
      const client = clientFor(cmd);
      const path = `${BASE}/${encodeURIComponent(id)}`;
      const outcome = await runEdit({
        file: opts.file,
        fileName: `profile-${id}.yaml`,
        current: async () =>
          structuredProfile(
            (await client.get<{ profileTemplate: ProfileTemplateWire }>(path)).profileTemplate,
          ),
        send: async (doc) => {
          await client.patch(path, { profileTemplate: unwrapDocument(doc, "profileTemplate") });
        },
      });
      process.stdout.write(outcome === "sent" ? `profile template ${id} edited\n` : "no changes\n");
    });

  profile
    .command("delete")
    .description("Delete a profile template (refused while a runner binds it)")
    .argument("<id>")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await clientFor(cmd).delete(`${BASE}/${encodeURIComponent(id)}`);
      process.stdout.write(`profile template ${id} deleted\n`);
    });
}
