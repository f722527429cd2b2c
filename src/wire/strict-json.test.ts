import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { stringify as toYaml } from "yaml";
import {
  findDuplicateKey,
  PayloadSyntaxError,
  parseStrictJson,
  parseYamlOrJson,
} from "./strict-json.js";

/** `key` as a JSON string literal, each code unit either plain or as a \uXXXX escape. */
function spelledKey(key: string, escapes: boolean[]): string {
  let out = "";
  for (let i = 0; i < key.length; i++) {
    const unit = key.charCodeAt(i);
    if (escapes[i % Math.max(escapes.length, 1)]) {
      out += `\\u${unit.toString(16).padStart(4, "0")}`;
    } else {
      out += JSON.stringify(key[i]).slice(1, -1);
    }
  }
  return `"${out}"`;
}

/** An object text whose members are `entries` plus `key` given a second time at `at`. */
function objectWithRepeat(
  entries: [string, unknown][],
  key: string,
  first: string,
  second: string,
  at: number,
): string {
  const members = entries
    .filter(([k]) => k !== key)
    .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
  members.splice(Math.min(at, members.length), 0, `${first}: 1`);
  members.push(`${second} :{"nested":[true]}`);
  return `{${members.join(",")}}`;
}

/** Puts `text` somewhere inside a JSON document: as a member value, an array item, or alone. */
function embed(text: string, wrappers: ("object" | "array")[]): string {
  let out = text;
  for (const w of wrappers) out = w === "object" ? `{"x": ${out}, "y": 1}` : `[0, ${out}, "}"]`;
  return out;
}

describe("parseStrictJson", () => {
  it("agrees with JSON.parse on any JSON without duplicate keys", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.constantFrom(undefined, 2, "\t"), (value, indent) => {
        const text = JSON.stringify(value, null, indent);
        expect(parseStrictJson(text)).toEqual(JSON.parse(text));
        expect(findDuplicateKey(text)).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });

  it("agrees with JSON.parse on fc.json() texts", () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        expect(parseStrictJson(text)).toEqual(JSON.parse(text));
      }),
    );
  });

  it("rejects any object with a repeated key, however the key is spelled and wherever the object is", () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }),
        fc.string({ unit: "binary", maxLength: 8 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }),
        fc.nat(6),
        fc.array(fc.constantFrom("object" as const, "array" as const), { maxLength: 3 }),
        (members, key, escapes1, escapes2, at, wrappers) => {
          const text = embed(
            objectWithRepeat(
              Object.entries(members),
              key,
              spelledKey(key, escapes1),
              spelledKey(key, escapes2),
              at,
            ),
            wrappers,
          );
          expect(() => JSON.parse(text)).not.toThrow();
          expect(findDuplicateKey(text)).toBe(key);
          expect(() => parseStrictJson(text)).toThrow(PayloadSyntaxError);
          expect(() => parseStrictJson(text)).toThrow(`duplicate key ${JSON.stringify(key)}`);
        },
      ),
      { numRuns: 300 },
    );
  });

  it.each([
    ['{"a": 1, "a": 2}', "a"],
    ['{"a": 1, "\\u0061": 2}', "a"],
    ['{"\\u0061": 1, "a": 2}', "a"],
    ['{"ab": 1, "a\\u0062": 2}', "ab"],
    ['{"a\\"": 1, "a\\u0022": 2}', 'a"'],
    ['{"a\\\\": 1, "a\\u005c": 2}', "a\\"],
    ['{"\\/": 1, "/": 2}', "/"],
    ['{"x": {"b": 1, "b": 2}}', "b"],
    ['[1, {"b": 1, "c": [], "b": 2}]', "b"],
    ['{"": 1, "": 2}', ""],
    ['{"__proto__": 1, "__proto__": 2}', "__proto__"],
  ])("rejects %s (key %j given twice)", (text, key) => {
    expect(findDuplicateKey(text)).toBe(key);
    expect(() => parseStrictJson(text)).toThrow(`duplicate key ${JSON.stringify(key)}`);
  });

  it.each([
    '{"a": 1, "b": {"a": 2}}',
    '[{"a": 1}, {"a": 2}]',
    '{"a": "a", "b": "a"}',
    '{"a\\\\": 1, "a": 2}',
    '{"a": "\\"a\\": 1", "b": 2}',
    '{"a": "{\\"b\\": 1, \\"b\\": 2}"}',
    '{"a":1}\n',
  ])("accepts %s (no key repeated within one object)", (text) => {
    expect(parseStrictJson(text)).toEqual(JSON.parse(text));
  });

  it.each(["", "{", '{"a": 1,}', "{a: 1}", "[1, 2", "'x'", "NaN", '{"a": 1} {"b": 2}'])(
    "rejects %j as invalid JSON",
    (text) => {
      expect(() => parseStrictJson(text)).toThrow(PayloadSyntaxError);
      expect(() => parseStrictJson(text)).toThrow(/^invalid JSON/);
    },
  );
});

describe("parseYamlOrJson", () => {
  it("reads YAML and JSON documents to the same values", () => {
    fc.assert(
      // Through JSON once: JSON has no -0, so the value is one JSON can express.
      fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 })), (generated) => {
        const value = JSON.parse(JSON.stringify(generated));
        expect(parseYamlOrJson(toYaml(value))).toEqual(value);
        expect(parseYamlOrJson(JSON.stringify(value, null, 2))).toEqual(value);
      }),
      { numRuns: 200 },
    );
  });

  it("reads the seed's structured profile shape", () => {
    const text = [
      "displayName: agent",
      "spec:",
      "  namespace:",
      "    strategy: per-user",
      "    namespacePrefix: sb-",
      "  network:",
      "    egress:",
      "      default: allow",
      "      modes:",
      '        allow: {type: allowlist, cidrs: ["10.0.0.0/8"]}',
    ].join("\n");
    expect(parseYamlOrJson(text)).toEqual({
      displayName: "agent",
      spec: {
        namespace: { strategy: "per-user", namespacePrefix: "sb-" },
        network: {
          egress: {
            default: "allow",
            modes: { allow: { type: "allowlist", cidrs: ["10.0.0.0/8"] } },
          },
        },
      },
    });
  });

  it.each([
    ["block mapping", "a: 1\nb: 2\na: 3\n"],
    ["nested mapping", "spec:\n  network:\n    egress: {}\n    egress: {}\n"],
    ["flow mapping", "{a: 1, b: 2, a: 3}"],
    ["quoted and plain spellings", 'a: 1\n"a": 2\n'],
    ["single-quoted spelling", "a: 1\n'a': 2\n"],
    ["escaped spelling", 'ab: 1\n"a\\x62": 2\n'],
    ["inside a list item", "items:\n  - name: x\n    name: y\n"],
    ["JSON text", '{"a": 1, "a": 2}'],
    ["JSON text with an escaped key", '{"a": 1, "\\u0061": 2}'],
  ])("rejects duplicate keys: %s", (_what, text) => {
    expect(() => parseYamlOrJson(text)).toThrow(PayloadSyntaxError);
  });

  it("rejects any YAML mapping with a key repeated", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(
          // Plain words YAML reads as non-strings (null, true) are not the same key as their quoted form.
          fc.stringMatching(/^[a-z][a-z0-9_]{0,8}$/).filter((k) => !/^(null|true|false)$/.test(k)),
          { minLength: 1, maxLength: 6 },
        ),
        fc.nat(),
        fc.nat(),
        fc.boolean(),
        (keys, pick, at, quoted) => {
          const repeated = keys[pick % keys.length] as string;
          const lines = keys.map((k, i) => `${k}: ${i}`);
          lines.splice(
            at % (lines.length + 1),
            0,
            `${quoted ? JSON.stringify(repeated) : repeated}: x`,
          );
          expect(() => parseYamlOrJson(lines.join("\n"))).toThrow(PayloadSyntaxError);
        },
      ),
    );
  });

  it("reports bad syntax as PayloadSyntaxError", () => {
    expect(() => parseYamlOrJson("a: [1, 2")).toThrow(PayloadSyntaxError);
    expect(() => parseYamlOrJson("a: b: c")).toThrow(/invalid YAML/);
  });
});
