import { registerAdminCommands } from "./cli/admin.js";
import { Command, CommanderError, Option } from "./cli/commander.js";
import { CliError, describeFailure } from "./cli/context.js";
import { registerImageCommands } from "./cli/image.js";
import { registerLoginCommand } from "./cli/login.js";
import { registerProfileCommands } from "./cli/profile.js";
import { registerRunnerCommands } from "./cli/runner.js";
import { registerRunnerStartCommand } from "./cli/runner-start.js";
import { registerSandboxCommands } from "./cli/sandbox.js";
import { registerServeCommand } from "./cli/serve.js";
import { AppError } from "./errors.js";
import { VERSION } from "./version.js";

/** Exit status: 0 success, 1 a failed call, 2 a usage error; exec and run exit with the command's code. */
export function buildProgram(setExitCode: (code: number) => void): Command {
  const program = new Command("paddock")
    .description("Paddock: a self-hostable sandbox control plane")
    .version(VERSION)
    .option("--server <url>", "Paddock server (env PADDOCK_SERVER)")
    .option("--token <token>", "API token (env PADDOCK_TOKEN)")
    .addOption(
      // Not `.choices()`: `files read ID REMOTE -o LOCAL` gives -o a file name; globals() checks formats.
      new Option("-o, --output <format>", "output format: table, json or yaml").default("table"),
    )
    .showHelpAfterError()
    .exitOverride();
  registerServeCommand(program);
  registerLoginCommand(program);
  registerRunnerStartCommand(program);
  registerImageCommands(program);
  const sandbox = program.command("sandbox").description("Sandboxes, profiles and runners");
  registerProfileCommands(sandbox);
  registerRunnerCommands(sandbox);
  registerSandboxCommands(sandbox, setExitCode);
  registerAdminCommands(program);
  for (const command of allCommands(program)) command.exitOverride();
  return program;
}

function allCommands(command: Command): Command[] {
  return [command, ...command.commands.flatMap(allCommands)];
}

export async function runCli(argv: string[]): Promise<number> {
  let commandExitCode = 0;
  const program = buildProgram((code) => {
    commandExitCode = code;
  });
  try {
    await program.parseAsync(argv);
    return commandExitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    if ((error as { reported?: boolean }).reported) return 1;
    if (error instanceof CliError) {
      process.stderr.write(`${describeFailure(error)}\n`);
      return error.exitCode;
    }
    if (error instanceof AppError && error.code === "INVALID_ARGUMENT") {
      process.stderr.write(`error: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`${describeFailure(error)}\n`);
    return 1;
  }
}

const code = await runCli(process.argv);
// `serve` keeps running; every other command ends here.
if (code !== 0 || !process.argv.slice(2).includes("serve")) {
  process.exitCode = code;
}
