import { describe, expect, it } from "vitest";
import { exitCodeOf, selectLogLines } from "./kubernetes-backend.js";

describe("exitCodeOf (the exec API's last status)", () => {
  it("reads Success as 0 and a Failure's ExitCode cause as the code", () => {
    expect(exitCodeOf({ status: "Success" })).toBe(0);
    expect(
      exitCodeOf({
        status: "Failure",
        reason: "NonZeroExitCode",
        details: { causes: [{ reason: "ExitCode", message: "126" }] },
      }),
    ).toBe(126);
  });

  it("reads a Failure without a code (the command could not start) as 1", () => {
    expect(exitCodeOf({ status: "Failure", message: "executable file not found" })).toBe(1);
  });
});

describe("selectLogLines (logs kept after stop deleted the pod)", () => {
  const stamped =
    "2026-11-24T20:00:00.000000001Z one\n2026-11-24T20:00:01.5Z two words\n2026-11-24T20:00:02Z three\n";

  it("strips timestamps unless asked, and keeps the spaces inside lines", () => {
    expect(selectLogLines(stamped, { tailLines: undefined, timestamps: false })).toBe(
      "one\ntwo words\nthree\n",
    );
    expect(selectLogLines(stamped, { tailLines: undefined, timestamps: true })).toBe(stamped);
  });

  it("applies tailLines, 0 included", () => {
    expect(selectLogLines(stamped, { tailLines: 2, timestamps: false })).toBe("two words\nthree\n");
    expect(selectLogLines(stamped, { tailLines: 0, timestamps: false })).toBe("");
    expect(selectLogLines(stamped, { tailLines: 10, timestamps: false })).toBe(
      "one\ntwo words\nthree\n",
    );
  });

  it("gives nothing for an empty log", () => {
    expect(selectLogLines("", { tailLines: undefined, timestamps: false })).toBe("");
  });
});
