import { ROLES } from "../identity/roles.js";
import { type Command, Option } from "./commander.js";
import { clientFor } from "./context.js";

export function registerAdminCommands(program: Command): void {
  const admin = program.command("admin").description("Organizations and users");
  const org = admin.command("org").description("Organizations (platform admin)");
  org
    .command("create")
    .description("Create an organization; prints its id")
    .argument("<organizationId>")
    .option("--display-name <name>", "human-readable name (default: the id)")
    .action(async (organizationId: string, opts: { displayName?: string }, cmd: Command) => {
      const body = {
        organizationId,
        ...(opts.displayName ? { displayName: opts.displayName } : {}),
      };
      await clientFor(cmd).post("/v1beta2/admin/organizations", body);
      process.stdout.write(`${organizationId}\n`);
    });

  const user = admin.command("user").description("Users and their API tokens");
  user
    .command("create")
    .description("Create a user; prints their API token (shown once)")
    .argument("<userId>")
    .requiredOption("--org <organizationId>", "organization of the user")
    .addOption(new Option("--role <role>", "role").choices([...ROLES]).makeOptionMandatory())
    .action(async (userId: string, opts: { org: string; role: string }, cmd: Command) => {
      const created = await clientFor(cmd).post<{ token: string }>(
        `/v1beta2/admin/organizations/${encodeURIComponent(opts.org)}/users`,
        { userId, role: opts.role },
      );
      process.stdout.write(`${created.token}\n`);
    });
}
