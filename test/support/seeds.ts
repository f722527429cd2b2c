import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * The JSON bodies of the seed "profile examples" page, read from a copy of
 * it kept in test/fixtures (byte-for-byte what CONTRACT.md points at), so
 * the tests exercise the documents themselves, not a retyped version.
 */
const SEED = readFileSync(
  fileURLToPath(new URL("../fixtures/seed-profile-examples.txt", import.meta.url)),
  "utf8",
);

/** Every top-level JSON object in the seed text, in order, as raw text. */
export function seedJsonBlocks(): string[] {
  const blocks: string[] = [];
  const lines = SEED.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== "{") continue;
    const start = i;
    while (i < lines.length && lines[i] !== "}") i++;
    blocks.push(lines.slice(start, i + 1).join("\n"));
  }
  return blocks;
}

export function seedProfiles(): string[] {
  return seedJsonBlocks().filter((b) => b.includes('"profileTemplate"'));
}

export function seedRunner(): string {
  const block = seedJsonBlocks().find((b) => b.includes('"profileBindings"'));
  if (!block) throw new Error("seed runner body not found");
  return block;
}

export function seedBindingOverride(): string {
  const block = seedJsonBlocks().find((b) => b.includes('"overridesJson"'));
  if (!block) throw new Error("seed binding override not found");
  return block;
}
