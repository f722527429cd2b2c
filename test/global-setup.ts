import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * End-to-end tests run the real ./bin/paddock, which loads dist/: build it
 * once first. Test files make their temporary directories under one
 * directory of this run (PADDOCK_TEST_TMPDIR, inherited by the workers),
 * removed when the run ends.
 */
export default function setup(): () => void {
  execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
  const runDir = mkdtempSync(join(tmpdir(), "paddock-run-"));
  // Sandboxes run as uids of their own and must reach image roots made in here.
  chmodSync(runDir, 0o755);
  process.env.PADDOCK_TEST_TMPDIR = runDir;
  return () => rmSync(runDir, { recursive: true, force: true });
}
