import { describe, expect, it } from "vitest";
import { type ObservedSandbox, pendingObserved } from "../backends/backend.js";
import type { SandboxStatus } from "../sandboxes/sandbox.js";
import { latestReports } from "./hub.js";

const report = (
  sandboxId: string,
  status: SandboxStatus,
  over: Partial<ObservedSandbox> = {},
): ObservedSandbox => ({ ...pendingObserved(sandboxId), status, ...over });

describe("latestReports", () => {
  it("keeps one report per sandbox, the last, in the order sandboxes first reported", () => {
    expect(
      latestReports([
        report("a", "SANDBOX_STATUS_CREATING"),
        report("b", "SANDBOX_STATUS_RUNNING"),
        report("a", "SANDBOX_STATUS_RUNNING"),
      ]),
    ).toEqual([report("a", "SANDBOX_STATUS_RUNNING"), report("b", "SANDBOX_STATUS_RUNNING")]);
  });

  it("a terminal report is final: what follows it for that sandbox is dropped", () => {
    const failed = report("a", "SANDBOX_STATUS_FAILED", { statusReason: "no image" });
    expect(latestReports([failed, report("a", "SANDBOX_STATUS_RUNNING")])).toEqual([failed]);
  });

  it("a later report without a start time or ports keeps the earlier one's, as the store would", () => {
    const running = report("a", "SANDBOX_STATUS_RUNNING", {
      startedAtMs: 1_000,
      exposedPorts: [8080],
    });
    const exited = report("a", "SANDBOX_STATUS_COMPLETED", { exitCode: 0 });
    expect(latestReports([running, exited])).toEqual([
      { ...exited, startedAtMs: 1_000, exposedPorts: [8080] },
    ]);
  });
});
