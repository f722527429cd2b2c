import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CliError } from "./context.js";

export interface EditSession {
  /** What was saved, or undefined when it was saved unchanged (then nothing is sent). */
  edited: string | undefined;
  file: string;
  cleanup(): void;
}

/** Opens `text` in $VISUAL/$EDITOR on a private temporary file. */
export function editText(text: string, name: string): EditSession {
  const editor = process.env.VISUAL || process.env.EDITOR || "vi";
  const dir = mkdtempSync(join(tmpdir(), "paddock-edit-"));
  const file = join(dir, name);
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  writeFileSync(file, text, { mode: 0o600 });
  // Through the shell, so that EDITOR may carry arguments ("code --wait").
  const result = spawnSync("/bin/sh", ["-c", `${editor} "$1"`, "paddock-editor", file], {
    stdio: "inherit",
  });
  if (result.status !== 0) {
    cleanup();
    throw new CliError(
      `editor '${editor}' exited with status ${result.status ?? result.signal}; nothing was changed`,
    );
  }
  const saved = readFileSync(file, "utf8");
  return { edited: saved === text ? undefined : saved, file, cleanup };
}
