import { readFileSync, writeFileSync } from "node:fs";
import { ApiError, listAll, type PaddockClient } from "../client/client.js";
import type { SandboxWire } from "../sandboxes/sandbox.js";
import { type Command, Option } from "./commander.js";
import { CliError, clientFor, globals } from "./context.js";
import { age, printData, printRows } from "./output.js";

const BASE = "/v1beta2/sandboxes";

interface StartFlags {
  profile?: string;
  runner?: string;
  image?: string;
  cpu?: string;
  memory?: string;
  egress?: string;
  env: string[];
  tag: string[];
  wait?: boolean;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function addStartOptions(command: Command): Command {
  return command
    .option(
      "--profile <name>",
      "profile name (binding alias or display name); default: the runner's default binding",
    )
    .option("--runner <id>", "place on this runner")
    .option("--image <image>", "container image")
    .option("--cpu <quantity>", "CPU request and limit, e.g. 500m or 2")
    .option("--memory <quantity>", "memory request and limit, e.g. 512Mi")
    .option("--egress <mode>", "egress mode of the profile")
    .option("--env <KEY=VALUE>", "environment variable (repeatable)", collect, [])
    .option("--tag <tag>", "tag (repeatable)", collect, []);
}

/** The start request a set of flags stands for. */
export function startBody(flags: StartFlags, argv: string[]): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (flags.profile) body.profileNames = [flags.profile];
  if (flags.runner) body.runnerIds = [flags.runner];
  if (flags.image) body.containerImage = flags.image;
  const resources: Record<string, string> = {};
  if (flags.cpu) resources.cpu = flags.cpu;
  if (flags.memory) resources.memory = flags.memory;
  if (Object.keys(resources).length > 0) body.resources = resources;
  if (flags.egress) body.network = { egressMode: flags.egress };
  if (flags.env.length > 0) {
    body.environmentVariables = Object.fromEntries(
      flags.env.map((pair) => {
        const eq = pair.indexOf("=");
        if (eq <= 0) throw new CliError(`--env takes KEY=VALUE, found ${JSON.stringify(pair)}`, 2);
        return [pair.slice(0, eq), pair.slice(eq + 1)];
      }),
    );
  }
  if (flags.tag.length > 0) body.tags = flags.tag;
  if (argv.length > 0) {
    body.command = argv[0];
    body.args = argv.slice(1);
  }
  return body;
}

/** Starts a sandbox; with wait, says so on stderr when the wait is long, and fails if the sandbox did. */
async function startSandbox(
  client: PaddockClient,
  body: unknown,
  wait: boolean,
): Promise<SandboxWire> {
  const timer = wait
    ? setTimeout(() => process.stderr.write("waiting for the sandbox to start…\n"), 1500)
    : undefined;
  try {
    const sandbox = await client.post<SandboxWire>(`${BASE}${wait ? "?wait=true" : ""}`, body);
    if (wait && sandbox.sandboxStatus === "SANDBOX_STATUS_FAILED") {
      throw new CliError(`sandbox ${sandbox.sandboxId} failed to start: ${sandbox.statusReason}`);
    }
    return sandbox;
  } finally {
    if (timer) clearTimeout(timer);
  }
}

interface ExecAnswer {
  stdout: string;
  stderr: string;
  exitCode: number;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

async function execIn(
  client: PaddockClient,
  id: string,
  argv: string[],
  options: { cwd?: string; timeout?: string; stdin?: Buffer },
): Promise<number> {
  const body: Record<string, unknown> = { command: argv };
  if (options.cwd) body.workingDir = options.cwd;
  if (options.timeout) body.maxTimeoutSeconds = Number(options.timeout);
  if (options.stdin && options.stdin.length > 0) body.stdin = options.stdin.toString("base64");
  const answer = await client.post<ExecAnswer>(`${BASE}/${id}/exec`, body);
  process.stdout.write(Buffer.from(answer.stdout, "base64"));
  process.stderr.write(Buffer.from(answer.stderr, "base64"));
  if (answer.stdoutTruncated || answer.stderrTruncated)
    process.stderr.write("paddock: output was truncated\n");
  return answer.exitCode;
}

function readStdinIfPiped(): Buffer | undefined {
  if (process.stdin.isTTY) return undefined;
  try {
    return readFileSync(0);
  } catch {
    return undefined;
  }
}

function statusWord(status: string): string {
  return status.replace("SANDBOX_STATUS_", "");
}

export function registerSandboxCommands(
  sandbox: Command,
  setExitCode: (code: number) => void,
): void {
  addStartOptions(sandbox.command("create"))
    .description("Start a sandbox; prints its id. Without a command it idles until stopped")
    .option("--wait", "return once it runs (or has failed)")
    .argument("[command...]", "the main process (after --)")
    .action(async (argv: string[], flags: StartFlags, cmd: Command) => {
      const created = await startSandbox(
        clientFor(cmd),
        startBody(flags, argv),
        flags.wait === true,
      );
      process.stdout.write(`${created.sandboxId}\n`);
    });

  addStartOptions(sandbox.command("run"))
    .description(
      "Start a sandbox, run a command in it, print its output, delete it, exit with its code",
    )
    .option("--cwd <dir>", "working directory")
    .option("--timeout <seconds>", "command timeout")
    .argument("<command...>", "the command (after --)")
    .action(
      async (
        argv: string[],
        flags: StartFlags & { cwd?: string; timeout?: string },
        cmd: Command,
      ) => {
        const client = clientFor(cmd);
        const created = await startSandbox(client, startBody(flags, []), true);
        try {
          const stdin = readStdinIfPiped();
          setExitCode(
            await execIn(client, created.sandboxId, argv, {
              ...flags,
              ...(stdin ? { stdin } : {}),
            }),
          );
        } finally {
          // Recorded is enough: the runner removes it after this command has answered.
          await client.delete(`${BASE}/${created.sandboxId}?wait=false`).catch(() => undefined);
        }
      },
    );

  sandbox
    .command("ls")
    .description("List sandboxes")
    .option("--status <status>", "only this status (RUNNING, FAILED, …)")
    .option("--tag <tag>", "only with this tag (repeatable)", collect, [])
    .option("--runner-id <id>", "only on this runner")
    .action(async (opts: { status?: string; tag: string[]; runnerId?: string }, cmd: Command) => {
      const filters = new URLSearchParams();
      if (opts.status) filters.set("status", opts.status);
      for (const t of opts.tag) filters.append("tags", t);
      if (opts.runnerId) filters.set("runnerId", opts.runnerId);
      const items = await listAll<SandboxWire>(clientFor(cmd), BASE, "sandboxes", filters);
      printRows(
        globals(cmd).output,
        items,
        ["ID", "STATUS", "PROFILE", "RUNNER", "EGRESS", "AGE", "REASON"],
        items.map((s) => [
          s.sandboxId,
          statusWord(s.sandboxStatus),
          s.profileName,
          s.runnerId,
          s.appliedEgressMode,
          age(s.createdAt),
          s.statusReason,
        ]),
      );
    });

  sandbox
    .command("get")
    .description("Show a sandbox")
    .argument("<id>")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const s = await clientFor(cmd).get<SandboxWire>(`${BASE}/${encodeURIComponent(id)}`);
      const format = globals(cmd).output;
      if (format !== "table") return printData(s, format);
      printRows(
        "table",
        s,
        ["ID", "STATUS", "PROFILE", "RUNNER", "NAMESPACE", "EXIT", "REASON"],
        [
          [
            s.sandboxId,
            statusWord(s.sandboxStatus),
            s.profileName,
            s.runnerId,
            s.namespace,
            String(s.exitCode),
            s.statusReason,
          ],
        ],
      );
    });

  sandbox
    .command("exec")
    .description("Run a command in a sandbox; exits with its exit code")
    .argument("<id>")
    .argument("<command...>", "the command (after --)")
    .option("--cwd <dir>", "working directory")
    .option("--timeout <seconds>", "kill the command after this long")
    .action(
      async (
        id: string,
        argv: string[],
        opts: { cwd?: string; timeout?: string },
        cmd: Command,
      ) => {
        const stdin = readStdinIfPiped();
        setExitCode(
          await execIn(clientFor(cmd), encodeURIComponent(id), argv, {
            ...opts,
            ...(stdin ? { stdin } : {}),
          }),
        );
      },
    );

  sandbox
    .command("sh")
    .description("An interactive shell in a sandbox")
    .argument("<id>")
    .option("--shell <path>", "shell to run", "/bin/sh")
    .action(async (id: string, opts: { shell: string }, cmd: Command) => {
      const { interactiveShell } = await import("./shell.js");
      setExitCode(await interactiveShell(clientFor(cmd), id, [opts.shell]));
    });

  sandbox
    .command("logs")
    .description("The main process's output")
    .argument("<id>")
    .option("-f, --follow", "keep streaming until the sandbox ends")
    .option("--tail <lines>", "only the last N lines")
    .option("--timestamps", "prefix each line with its time")
    .action(
      async (
        id: string,
        opts: { follow?: boolean; tail?: string; timestamps?: boolean },
        cmd: Command,
      ) => {
        const client = clientFor(cmd);
        const query = new URLSearchParams();
        if (opts.follow) query.set("follow", "true");
        if (opts.tail) query.set("tailLines", opts.tail);
        if (opts.timestamps) query.set("timestamps", "true");
        const response = await client.stream(`${BASE}/${encodeURIComponent(id)}/logs?${query}`);
        for await (const chunk of response) process.stdout.write(chunk);
      },
    );

  const files = sandbox.command("files").description("Move files in and out of a sandbox");
  files
    .command("read")
    .description("Read REMOTE (absolute path) to stdout or -o LOCAL")
    .argument("<id>")
    .argument("<remote>")
    .option("--output-file <local>", "write here instead of stdout (also -o LOCAL)")
    .action(async (id: string, remote: string, opts: { outputFile?: string }, cmd: Command) => {
      // -o is the global output flag; here it names the local file.
      const dashO = (cmd.optsWithGlobals() as { output?: string }).output;
      if (!opts.outputFile && dashO && dashO !== "table") opts.outputFile = dashO;
      const path = remote.replace(/^\/+/, "").split("/").map(encodeURIComponent).join("/");
      const bytes = await clientFor(cmd).bytes(`${BASE}/${encodeURIComponent(id)}/files/${path}`);
      if (opts.outputFile) writeFileSync(opts.outputFile, bytes);
      else process.stdout.write(bytes);
    });
  files
    .command("write")
    .description("Write LOCAL (or - for stdin) to REMOTE (absolute path)")
    .argument("<id>")
    .argument("<remote>")
    .argument("<local>")
    .action(async (id: string, remote: string, local: string, _opts: unknown, cmd: Command) => {
      const content = readFileSync(local === "-" ? 0 : local);
      await clientFor(cmd).post(`${BASE}/${encodeURIComponent(id)}/files`, {
        filePath: remote,
        fileContent: content.toString("base64"),
      });
    });

  sandbox
    .command("stop")
    .description("Stop a sandbox (SIGTERM, then SIGKILL after the grace period)")
    .argument("<id>")
    .option("--grace <seconds>", "seconds between SIGTERM and SIGKILL", "10")
    .action(async (id: string, opts: { grace: string }, cmd: Command) => {
      const s = await clientFor(cmd).post<SandboxWire>(`${BASE}/${encodeURIComponent(id)}/stop`, {
        gracefulShutdownSeconds: Number(opts.grace),
        waitForReady: true,
      });
      process.stdout.write(`${s.sandboxId} ${statusWord(s.sandboxStatus)}\n`);
    });

  sandbox
    .command("delete")
    .description("Delete a sandbox, stopping it first if needed")
    .argument("<id>")
    .addOption(new Option("--missing-ok", "succeed if it does not exist"))
    .action(async (id: string, opts: { missingOk?: boolean }, cmd: Command) => {
      try {
        await clientFor(cmd).delete(`${BASE}/${encodeURIComponent(id)}`);
      } catch (error) {
        if (!(opts.missingOk && error instanceof ApiError && error.httpStatus === 404)) throw error;
      }
      process.stdout.write(`sandbox ${id} deleted\n`);
    });
}
