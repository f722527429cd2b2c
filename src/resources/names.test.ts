import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  dns1123LabelProblem,
  labelValueProblem,
  qualifiedKeyProblem,
  resourceIdProblem,
} from "./names.js";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

describe("DNS-1123 labels", () => {
  it.each(["a", "0", "ci-sandboxes", "a-b-c", "0abc9", "x".repeat(63), "a--b"])(
    "accepts %j",
    (name) => {
      expect(dns1123LabelProblem(name)).toBeUndefined();
    },
  );

  it.each([
    ["", "must not be empty"],
    ["x".repeat(64), "at most 63 characters, found 64"],
    ["-a", "DNS-1123"],
    ["a-", "DNS-1123"],
    ["A", "DNS-1123"],
    ["Ci-Sandboxes", "DNS-1123"],
    ["a_b", "DNS-1123"],
    ["a.b", "DNS-1123"],
    ["a b", "DNS-1123"],
    ["ä", "DNS-1123"],
    ["a\n", "DNS-1123"],
  ])("refuses %j", (name, why) => {
    expect(dns1123LabelProblem(name)).toContain(why);
  });

  it("names the value it refuses", () => {
    expect(dns1123LabelProblem("Bad_NS")).toContain('"Bad_NS"');
  });

  it("accepts exactly the strings of the label grammar", () => {
    fc.assert(
      fc.property(fc.stringMatching(DNS_LABEL), (name) => {
        expect(dns1123LabelProblem(name)).toBeUndefined();
      }),
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 70 }), (name) => {
        expect(dns1123LabelProblem(name) === undefined).toBe(DNS_LABEL.test(name));
      }),
    );
  });
});

describe("organization and user ids", () => {
  it("are DNS-1123 labels without '--'", () => {
    expect(resourceIdProblem("acme")).toBeUndefined();
    expect(resourceIdProblem("acme-corp")).toBeUndefined();
    expect(resourceIdProblem("acme--corp")).toContain("'--'");
    expect(resourceIdProblem("Acme")).toContain("DNS-1123");
    expect(resourceIdProblem("")).toContain("empty");
  });
});

describe("label and annotation keys", () => {
  it.each([
    "app",
    "a",
    "app.kubernetes.io/name",
    "example.com/a_b-c.d",
    "A1",
    `${"a".repeat(253)}/x`,
    "x".repeat(63),
  ])("accepts %j", (key) => {
    expect(qualifiedKeyProblem(key)).toBeUndefined();
  });

  it.each([
    ["", "qualified name"],
    ["/app", "prefix"],
    ["Example.com/app", "prefix"],
    ["-.com/app", "prefix"],
    [`${"a".repeat(254)}/x`, "prefix"],
    ["app/", "qualified name"],
    ["a/b/c", "qualified name"],
    ["-app", "qualified name"],
    ["app-", "qualified name"],
    ["bad key", "qualified name"],
    ["x".repeat(64), "qualified name"],
  ])("refuses %j", (key, why) => {
    expect(qualifiedKeyProblem(key)).toContain(why);
  });
});

describe("label values", () => {
  it.each(["", "v1", "v1.0_rc-1", "x".repeat(63)])("accepts %j", (value) => {
    expect(labelValueProblem(value)).toBeUndefined();
  });

  it.each(["-x", "x-", "a b", "x".repeat(64), "a/b"])("refuses %j", (value) => {
    expect(labelValueProblem(value)).toContain(JSON.stringify(value));
  });
});
