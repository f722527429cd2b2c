import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp, buildServices } from "../server.js";
import { type OpenedStore, openStore } from "../store/database.js";

describe("/openapi.json", () => {
  let store: OpenedStore;
  let app: ReturnType<typeof buildApp>;
  let doc: any;
  beforeAll(async () => {
    store = await openStore({ kind: "memory" });
    app = buildApp(
      store,
      buildServices(store, pino({ level: "silent" })),
      pino({ level: "silent" }),
    );
    const res = await app.request("/openapi.json");
    expect(res.status).toBe(200);
    doc = await res.json();
  });
  afterAll(() => store.close());

  it("describes every route the server answers", () => {
    const served = app.routes
      .filter((r) => r.method !== "ALL")
      .map(
        (r) =>
          `${r.method.toLowerCase()} ${r.path.replace(/\{\.\+\}$/, "").replace(/:(\w+)/g, "{$1}")}`,
      );
    const described = Object.entries(doc.paths as Record<string, object>).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m} ${path}`),
    );
    expect(served.length).toBeGreaterThan(20);
    expect([...new Set(served)].sort()).toEqual([...new Set(described)].sort());
  });

  it("uses the request schemas: profile create takes ProfileTemplateInput with both spec forms", () => {
    const op = doc.paths["/v1beta2/sandbox/profile-templates"].post;
    const body = op.requestBody.content["application/json"].schema;
    expect(body.properties.profileTemplate.$ref).toBe("#/components/schemas/ProfileTemplateInput");
    const spec = doc.components.schemas.ProfileSpecInput;
    expect(Object.keys(spec.properties)).toEqual(
      expect.arrayContaining([
        "namespace",
        "namespaceConfigJson",
        "network",
        "networkConfigJson",
        "pod",
        "podTemplateJson",
      ]),
    );
    expect(doc.components.schemas.EgressMode.properties.type.enum).toEqual([
      "internet",
      "allowlist",
      "org",
      "user",
      "profile",
      "none",
    ]);
  });

  it("marks health routes public and everything else bearer-authenticated", () => {
    expect(doc.paths["/healthz"].get.security).toEqual([]);
    expect(doc.security).toEqual([{ bearer: [] }]);
    expect(doc.paths["/v1beta2/sandbox/runners/{runnerId}"].get.security).toBeUndefined();
  });
});
