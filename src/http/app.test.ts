import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../test/support/app.js";
import { MAX_BODY_BYTES } from "./app.js";

describe("request bodies", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ kind: "memory" });
  });
  afterAll(() => t?.close());

  it("refuses a body over the limit with BODY_TOO_LARGE, before reading it as JSON", async () => {
    const huge = `{"tags": ["${"x".repeat(MAX_BODY_BYTES)}"]}`;
    const res = await t.callRaw("POST", "/v1beta2/sandboxes", huge);
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain("BODY_TOO_LARGE");
    expect(JSON.stringify(res.body)).toContain(`larger than ${MAX_BODY_BYTES} bytes`);
  });

  it("a get, which has no body to limit, is answered", async () => {
    const res = await t.call("GET", "/v1beta2/sandbox/profile-templates");
    expect(res.status).toBe(200);
  });
});
