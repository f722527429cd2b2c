import { readFileSync } from "node:fs";
import { PayloadSyntaxError, parseYamlOrJson } from "../wire/strict-json.js";
import { CliError } from "./context.js";

/** Reads `-f FILE` (or `-` for stdin) as YAML or JSON; unreadable input, duplicate keys included, is an error. */
export function readDocument(file: string): unknown {
  const name = file === "-" ? "stdin" : file;
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (error) {
    throw new CliError(`cannot read ${name}: ${(error as Error).message}`);
  }
  return parseDocumentText(text, name);
}

export function parseDocumentText(text: string, name: string): unknown {
  if (text.trim() === "") throw new CliError(`${name} is empty`);
  try {
    return parseYamlOrJson(text);
  } catch (error) {
    if (error instanceof PayloadSyntaxError) throw new CliError(`${name}: ${error.message}`);
    throw error;
  }
}

/** Accepts a document bare or wrapped in `{"<wrapper>": {...}}`. */
export function unwrapDocument(doc: unknown, wrapper: string): unknown {
  if (typeof doc === "object" && doc !== null && !Array.isArray(doc)) {
    const keys = Object.keys(doc);
    const snake = wrapper.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    if (keys.length === 1 && (keys[0] === wrapper || keys[0] === snake))
      return (doc as Record<string, unknown>)[keys[0]];
  }
  return doc;
}
