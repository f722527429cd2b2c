import { yaml } from "../lazy-yaml.js";

/** A payload that cannot be read: bad syntax or a key given twice in one object. */
export class PayloadSyntaxError extends Error {
  override readonly name = "PayloadSyntaxError";
}

/**
 * JSON.parse that also rejects a key repeated within one object.
 *
 * JSON.parse keeps the last duplicate silently, and the libraries that detect
 * duplicates build a full syntax tree, which is slow on the 40 MB bodies that
 * file uploads carry. So: let JSON.parse check the syntax, then scan the
 * (now known-valid) text once for repeated keys.
 */
export function parseStrictJson(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new PayloadSyntaxError(`invalid JSON: ${(error as Error).message}`);
  }
  const duplicate = findDuplicateKey(text);
  if (duplicate !== undefined) {
    throw new PayloadSyntaxError(`duplicate key ${JSON.stringify(duplicate)} in JSON object`);
  }
  return value;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COLON = 0x3a;

/** Returns the first key repeated inside one object of valid JSON `text`, if any. */
export function findDuplicateKey(text: string): string | undefined {
  // One entry per open container: a key set for objects, null for arrays.
  const stack: (Set<string> | null)[] = [];
  let i = 0;
  const length = text.length;
  while (i < length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = endOfString(text, i);
      const top = stack[stack.length - 1];
      if (top) {
        let j = end + 1;
        while (j < length && isSpace(text.charCodeAt(j))) j++;
        if (text.charCodeAt(j) === COLON) {
          const raw = text.slice(i + 1, end);
          const key = raw.includes("\\") ? (JSON.parse(`"${raw}"`) as string) : raw;
          if (top.has(key)) return key;
          top.add(key);
        }
      }
      i = end + 1;
    } else if (c === OPEN_BRACE) {
      stack.push(new Set());
      i++;
    } else if (c === OPEN_BRACKET) {
      stack.push(null);
      i++;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      stack.pop();
      i++;
    } else {
      i++;
    }
  }
  return undefined;
}

function endOfString(text: string, start: number): number {
  let i = start + 1;
  for (;;) {
    const q = text.indexOf('"', i);
    if (q < 0) return text.length;
    let backslashes = 0;
    for (let k = q - 1; k > start && text.charCodeAt(k) === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return q;
    i = q + 1;
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Parses a document that may be YAML or JSON (YAML 1.2 is a superset of JSON).
 * Duplicate keys are errors, as the profile reference requires.
 */
export function parseYamlOrJson(text: string): unknown {
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return parseStrictJson(text);
    } catch (error) {
      // Flow-style YAML also starts with a brace; only give up if YAML fails too.
      if (error instanceof PayloadSyntaxError && error.message.startsWith("duplicate")) throw error;
    }
  }
  const doc = yaml().parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const problem = doc.errors[0];
  if (problem) {
    const where = problem.linePos?.[0]
      ? ` at line ${problem.linePos[0].line}, column ${problem.linePos[0].col}`
      : "";
    if (problem.code === "DUPLICATE_KEY") {
      // The error points at the key's first character; read the whole key from there.
      const token =
        /^("(?:[^"\\]|\\.)*"|'[^']*'|[^:,}\n]+)/.exec(text.slice(problem.pos[0]))?.[1] ?? "";
      const key = token.trim().replace(/^["']|["']$/g, "");
      throw new PayloadSyntaxError(`duplicate key ${JSON.stringify(key)}${where}`);
    }
    throw new PayloadSyntaxError(`invalid YAML${where}: ${problem.message.split("\n")[0]}`);
  }
  return doc.toJS({ maxAliasCount: 100 });
}
