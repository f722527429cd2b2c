import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The package version, read once from package.json (one level above both src/ and dist/). */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

/** The package's root directory (holding package.json, dist/ and native/), from src/ or dist/ alike. */
export const PACKAGE_ROOT: string = fileURLToPath(new URL("../", import.meta.url));
