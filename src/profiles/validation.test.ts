import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp, type TestResponse } from "../../test/support/app.js";

/**
 * The Profile reference's fields and validation rules, over HTTP: each
 * refusal is checked for its HTTP status, its gRPC code, and the path of the
 * offending field in both the BadRequest detail and the message.
 */

const PROFILES = "/v1beta2/sandbox/profile-templates";
const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";
const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

let counter = 0;
const uniqueName = () => `profile-${++counter}`;

function violations(res: TestResponse): { field: string; description: string }[] {
  const detail = (res.body.details ?? []).find((d: any) => d["@type"] === BAD_REQUEST);
  return detail?.fieldViolations ?? [];
}

/** The answer is INVALID_ARGUMENT naming `field` in the BadRequest detail and in the message. */
function expectInvalid(res: TestResponse, field: string, description?: string | RegExp): void {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.body.code).toBe(3);
  const found = violations(res).find((v) => v.field === field);
  expect(found, `no violation for ${field} in ${JSON.stringify(res.body)}`).toBeDefined();
  if (description !== undefined) expect(found?.description).toMatch(description);
  expect(res.body.message).toContain(field);
}

function createSpec(spec: unknown): Promise<TestResponse> {
  return t.call("POST", PROFILES, { profileTemplate: { displayName: uniqueName(), spec } });
}

function createTemplate(template: Record<string, unknown>): Promise<TestResponse> {
  return t.call("POST", PROFILES, { profileTemplate: { displayName: uniqueName(), ...template } });
}

async function expectAccepted(spec: unknown): Promise<any> {
  const res = await createSpec(spec);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.profileTemplate;
}

/** A spec giving `network` in structured form, or as its JSON-string alias. */
const asNetwork = (network: unknown, alias: boolean) =>
  alias ? { networkConfigJson: JSON.stringify(network) } : { network };
const asNamespace = (namespace: unknown, alias: boolean) =>
  alias ? { namespaceConfigJson: JSON.stringify(namespace) } : { namespace };
const asPod = (pod: unknown, alias: boolean) =>
  alias ? { podTemplateJson: JSON.stringify(pod) } : { pod };

const FORMS = [
  ["structured", false],
  ["proto-facing", true],
] as const;

describe("accepted profiles", () => {
  it("accepts every field of the reference in structured form and answers proto-facing", async () => {
    const spec = {
      containerImage: "ghcr.io/myorg/python:3.11",
      runtimeClass: "kata-qemu",
      resourceDefaults: {
        cpuRequest: "500m",
        memoryRequest: "1Gi",
        cpuLimit: "2",
        memoryLimit: "4Gi",
      },
      instanceTypes: ["h100"],
      nodeSelector: { gpu: "h100" },
      tags: ["ml"],
      namespace: {
        strategy: "per-user",
        namespacePrefix: "sb-",
        autoCreate: true,
        staticNamespace: "",
        labels: { team: "ml" },
        annotations: {},
      },
      network: {
        egress: {
          default: "internet",
          modes: {
            internet: { type: "internet" },
            allow: { type: "allowlist", cidrs: ["10.0.0.0/8"] },
            org: { type: "org" },
            user: { type: "user" },
            profile: { type: "profile" },
            none: { type: "none" },
          },
        },
        ingress: {
          internal: { scope: "org", service: { serviceType: "ClusterIP" } },
          node: { scope: "user", service: { serviceType: "NodePort" } },
          team: { scope: "profile" },
          public: {
            scope: "any",
            expectsExternalAddress: true,
            service: {
              serviceType: "LoadBalancer",
              serviceSelectorAnnotation: {
                key: "metallb.universe.tf/address-pool",
                value: "public",
              },
              dnsAnnotation: {
                key: "external-dns.alpha.kubernetes.io/hostname",
                value: "x.example.com",
              },
            },
            ingress: { controllerName: "nginx", template: "{{.SandboxID}}.example.com" },
          },
        },
      },
      pod: {
        metadata: { labels: { app: "agent" }, annotations: { owner: "ml-platform" } },
        spec: {
          volumes: [{ name: "scratch", emptyDir: {} }],
          initContainers: [{ name: "init", image: "busybox" }],
          securityContext: { runAsNonRoot: true },
          tolerations: [{ key: "gpu", operator: "Exists", effect: "NoSchedule" }],
        },
      },
    };
    const res = await t.call("POST", PROFILES, {
      profileTemplate: {
        displayName: "everything",
        description: "all fields",
        labels: { a: "b" },
        spec,
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const p = res.body.profileTemplate;
    expect(p.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(p.organizationId).toBe("default");
    expect(new Date(p.createdAt).toISOString()).toBe(p.createdAt);
    expect(new Date(p.updatedAt).toISOString()).toBe(p.updatedAt);
    expect(p.displayName).toBe("everything");
    expect(p.description).toBe("all fields");
    expect(p.labels).toEqual({ a: "b" });
    const { namespace, network, pod, ...flat } = spec;
    expect(p.spec).toEqual({
      ...flat,
      namespaceConfigJson: expect.any(String),
      networkConfigJson: expect.any(String),
      podTemplateJson: expect.any(String),
    });
    expect(JSON.parse(p.spec.namespaceConfigJson)).toEqual(namespace);
    expect(JSON.parse(p.spec.networkConfigJson)).toEqual(network);
    expect(JSON.parse(p.spec.podTemplateJson)).toEqual(pod);

    // The proto-facing answer, sent back as an edit, changes nothing.
    const edit = await t.call("PATCH", `${PROFILES}/${p.id}`, { profileTemplate: p });
    expect(edit.status, JSON.stringify(edit.body)).toBe(200);
    expect(edit.body.profileTemplate.spec).toEqual(p.spec);
    expect(edit.body.profileTemplate.createdAt).toBe(p.createdAt);
  });

  it("accepts snake_case names everywhere and answers lowerCamelCase", async () => {
    const res = await t.call("POST", PROFILES, {
      profile_template: {
        display_name: "snake",
        spec: {
          container_image: "img",
          runtime_class: "gvisor",
          resource_defaults: {
            cpu_request: "250m",
            memory_request: "512Mi",
            cpu_limit: "1",
            memory_limit: "2Gi",
          },
          instance_types: ["a"],
          node_selector: { node_pool: "x" },
          namespace_config_json: JSON.stringify({
            strategy: "static",
            static_namespace: "ci-sandboxes",
            auto_create: false,
          }),
          network_config_json: JSON.stringify({
            egress: { modes: { my_mode: { type: "none" } } },
          }),
        },
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const spec = res.body.profileTemplate.spec;
    expect(spec.containerImage).toBe("img");
    expect(spec.resourceDefaults).toEqual({
      cpuRequest: "250m",
      memoryRequest: "512Mi",
      cpuLimit: "1",
      memoryLimit: "2Gi",
    });
    expect(spec.nodeSelector).toEqual({ node_pool: "x" });
    expect(JSON.parse(spec.namespaceConfigJson)).toEqual({
      strategy: "static",
      staticNamespace: "ci-sandboxes",
      autoCreate: false,
    });
    expect(JSON.parse(spec.networkConfigJson)).toEqual({
      egress: { modes: { my_mode: { type: "none" } } },
    });
  });

  it("gives the same answer for the structured and the proto-facing form", async () => {
    const namespace = {
      strategy: "per-profile",
      namespacePrefix: "untrusted-",
      labels: { policy: "restricted" },
    };
    const network = { egress: { default: "none", modes: { none: { type: "none" } } } };
    const pod = { spec: { securityContext: { runAsNonRoot: true } } };
    const a = await expectAccepted({ namespace, network, pod });
    const b = await expectAccepted({
      namespaceConfigJson: JSON.stringify(namespace),
      networkConfigJson: JSON.stringify(network),
      podTemplateJson: JSON.stringify(pod),
    });
    expect(a.spec).toEqual(b.spec);
  });

  it("accepts an empty spec and answers every field at its default", async () => {
    const p = await expectAccepted({});
    expect(p.spec).toEqual({
      containerImage: "",
      runtimeClass: "",
      resourceDefaults: { cpuRequest: "", memoryRequest: "", cpuLimit: "", memoryLimit: "" },
      instanceTypes: [],
      nodeSelector: {},
      tags: [],
      namespaceConfigJson: "",
      networkConfigJson: "",
      podTemplateJson: "",
    });
    expect(p.description).toBe("");
    expect(p.labels).toEqual({});
  });

  it("accepts a single egress mode without a default", async () => {
    await expectAccepted({ network: { egress: { modes: { only: { type: "internet" } } } } });
  });

  it("accepts every namespace strategy, and an empty one", async () => {
    for (const strategy of ["per-user", "per-org", "per-profile", ""]) {
      await expectAccepted({ namespace: { strategy } });
    }
    await expectAccepted({ namespace: { strategy: "static", staticNamespace: "ci-sandboxes" } });
  });

  it.each(["agent-", "a", "0x", "sb", "a".repeat(40), "team-1-"])(
    "accepts namespacePrefix %j",
    async (namespacePrefix) => {
      await expectAccepted({ namespace: { namespacePrefix } });
    },
  );

  it.each(["a", "ci-sandboxes", "0", "x".repeat(63)])(
    "accepts staticNamespace %j",
    async (name) => {
      await expectAccepted({ namespace: { strategy: "static", staticNamespace: name } });
    },
  );

  it.each([
    "10.0.0.0/8",
    "192.168.1.0/24",
    "0.0.0.0/0",
    "10.0.0.1/32",
    "140.82.112.0/20",
    "2001:db8::/32",
    "::/0",
    "fe80::/10",
    "2001:0db8:0000:0000:0000:0000:0000:0001/128",
    "::ffff:10.0.0.0/104",
  ])("accepts CIDR %s", async (cidr) => {
    await expectAccepted({
      network: { egress: { modes: { allow: { type: "allowlist", cidrs: [cidr] } } } },
    });
  });

  it.each([
    ["100m", "1"],
    ["9m", "0.009"],
    ["1100m", "1.1"],
    ["1", "1"],
  ])("accepts cpuRequest %s with cpuLimit %s", async (cpuRequest, cpuLimit) => {
    await expectAccepted({ resourceDefaults: { cpuRequest, cpuLimit } });
  });

  it.each([
    ["1Gi", "1073741824"],
    ["1G", "1Gi"],
    ["512Mi", "0.5Gi"],
    ["1e3", "1k"],
  ])("accepts memoryRequest %s with memoryLimit %s", async (memoryRequest, memoryLimit) => {
    await expectAccepted({ resourceDefaults: { memoryRequest, memoryLimit } });
  });

  it("accepts a request with no limit and a limit with no request", async () => {
    await expectAccepted({ resourceDefaults: { cpuRequest: "64", memoryLimit: "1Ki" } });
  });
});

describe("top-level fields", () => {
  it.each([
    ["id", { id: "6f1c3a0e-0000-4000-8000-000000000000" }],
    ["organizationId", { organizationId: "default" }],
    ["organizationId", { organization_id: "default" }],
    ["createdAt", { createdAt: "2026-01-01T00:00:00Z" }],
    ["createdAt", { created_at: "2026-01-01T00:00:00Z" }],
    ["updatedAt", { updatedAt: "2026-01-01T00:00:00Z" }],
  ])("refuses output-only %s on create", async (field, extra) => {
    expectInvalid(await createTemplate({ spec: {}, ...extra }), field, /output-only/);
  });

  it("refuses an unknown top-level field", async () => {
    expectInvalid(await createTemplate({ spec: {}, bogus: 1 }), "bogus", "unknown field");
  });

  it("refuses an unknown field beside profileTemplate", async () => {
    const res = await t.call("POST", PROFILES, {
      profileTemplate: { displayName: uniqueName(), spec: {} },
      extra: true,
    });
    expectInvalid(res, "extra", "unknown field");
  });

  it("refuses a body without profileTemplate", async () => {
    expectInvalid(await t.call("POST", PROFILES, {}), "profileTemplate");
  });

  it.each([
    ["missing", {}],
    ["empty", { displayName: "" }],
    ["blank", { displayName: "   " }],
    ["padded", { displayName: " x " }],
    ["too long", { displayName: "x".repeat(64) }],
    ["not a string", { displayName: 7 }],
  ])("refuses a displayName that is %s", async (_what, fields) => {
    const res = await t.call("POST", PROFILES, { profileTemplate: { spec: {}, ...fields } });
    expectInvalid(res, "displayName");
  });

  it("refuses a profile without spec", async () => {
    expectInvalid(await createTemplate({}), "spec", /required/);
  });

  it("refuses a spec that is not an object", async () => {
    expectInvalid(await createSpec("x"), "spec", "expected an object, found string");
  });

  it("refuses labels that are not a map of strings", async () => {
    expectInvalid(
      await createTemplate({ spec: {}, labels: { a: 1 } }),
      "labels.a",
      /expected string/,
    );
  });

  it("refuses a field given in both spellings", async () => {
    const res = await t.call("POST", PROFILES, {
      profileTemplate: { displayName: uniqueName(), display_name: "other", spec: {} },
    });
    expectInvalid(res, "displayName", /given twice/);
  });
});

describe("duplicate keys", () => {
  it("refuses a JSON body with a key given twice", async () => {
    const res = await t.callRaw(
      "POST",
      PROFILES,
      `{"profileTemplate": {"displayName": "${uniqueName()}", "spec": {}, "spec": {}}}`,
    );
    expect(res.status).toBe(400);
    expect(res.body.code).toBe(3);
    expect(res.body.message).toContain('duplicate key "spec"');
    expect(violations(res)[0]?.field).toBe("body");
  });

  it("refuses a key given twice when one spelling uses escapes", async () => {
    const res = await t.callRaw(
      "POST",
      PROFILES,
      `{"profileTemplate": {"displayName": "a", "display\\u004eame": "b", "spec": {}}}`,
    );
    expect(res.status).toBe(400);
    expect(res.body.code).toBe(3);
    expect(res.body.message).toContain('duplicate key "displayName"');
  });

  it("refuses a duplicate key deep in the body", async () => {
    const res = await t.callRaw(
      "POST",
      PROFILES,
      `{"profileTemplate": {"displayName": "${uniqueName()}", "spec": {"nodeSelector": {"a": "1", "a": "2"}}}}`,
    );
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('duplicate key "a"');
  });

  it("refuses a body that is not JSON", async () => {
    const res = await t.callRaw("POST", PROFILES, `{"profileTemplate": `);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe(3);
    expect(res.body.message).toMatch(/invalid JSON/);
  });

  it.each([
    ["namespaceConfigJson", '{"strategy":"per-user","strategy":"per-org"}', "strategy"],
    [
      "networkConfigJson",
      '{"egress":{"modes":{"a":{"type":"none"},"\\u0061":{"type":"none"}}}}',
      "a",
    ],
    ["podTemplateJson", '{"spec":{"hostname":"x","hostname":"y"}}', "hostname"],
  ])("refuses a key given twice inside %s", async (alias, text, key) => {
    expectInvalid(await createSpec({ [alias]: text }), `spec.${alias}`, `duplicate key "${key}"`);
  });
});

describe("unknown fields", () => {
  it.each([
    ["spec.bogus", { bogus: 1 }],
    ["spec.resourceDefaults.gpuLimit", { resourceDefaults: { gpuLimit: "1" } }],
    ["spec.namespace.prefix", { namespace: { prefix: "x" } }],
    ["spec.namespace.prefix", { namespaceConfigJson: '{"prefix":"x"}' }],
    [
      "spec.network.egress.bogus",
      { network: { egress: { modes: { a: { type: "none" } }, bogus: 1 } } },
    ],
    [
      "spec.network.egress.modes.a.ports",
      { network: { egress: { modes: { a: { type: "none", ports: [] } } } } },
    ],
    ["spec.network.ingress.pub.tls", { networkConfigJson: '{"ingress":{"pub":{"tls":true}}}' }],
    [
      "spec.network.ingress.pub.service.ports",
      { network: { ingress: { pub: { service: { ports: [] } } } } },
    ],
    ["spec.pod.placement.zones", { pod: { placement: { zones: [] } } }],
    ["spec.pod.metadata.name", { podTemplateJson: '{"metadata":{"name":"x"}}' }],
  ])("refuses %s", async (field, spec) => {
    expectInvalid(await createSpec(spec), field, "unknown field");
  });
});

describe("sub-blocks and their aliases", () => {
  it.each([
    ["namespace", "namespaceConfigJson", { strategy: "per-org" }],
    ["network", "networkConfigJson", { egress: { modes: { a: { type: "none" } } } }],
    ["pod", "podTemplateJson", { metadata: { labels: { a: "b" } } }],
  ])("refuses %s given with %s", async (key, alias, block) => {
    const res = await createSpec({ [key]: block, [alias]: JSON.stringify(block) });
    expectInvalid(res, `spec.${alias}`, `spec.${key}`);
  });

  it("refuses a structured key with its snake_case alias", async () => {
    const block = { strategy: "per-org" };
    const res = await createSpec({
      namespace: block,
      namespace_config_json: JSON.stringify(block),
    });
    expectInvalid(res, "spec.namespaceConfigJson", "spec.namespace");
  });

  it.each([
    ["networkConfigJson", "{egress", /invalid JSON/],
    ["networkConfigJson", "not json", /invalid JSON/],
    ["namespaceConfigJson", "[]", "found an array"],
    ["podTemplateJson", '"x"', "found string"],
    ["podTemplateJson", "null", "found null"],
  ])("refuses %s = %j", async (alias, text, why) => {
    expectInvalid(await createSpec({ [alias]: text }), `spec.${alias}`, why);
  });

  it("refuses an alias that is not a string", async () => {
    expectInvalid(
      await createSpec({ networkConfigJson: { egress: {} } }),
      "spec.networkConfigJson",
      "expected a JSON-encoded string, found an object",
    );
  });
});

describe("namespace", () => {
  describe.each(FORMS)("%s", (_form, alias) => {
    it.each([
      ["Bad_NS", "DNS-1123"],
      ["CI", "DNS-1123"],
      ["-ci", "DNS-1123"],
      ["ci-", "DNS-1123"],
      ["ci.sandboxes", "DNS-1123"],
      ["x".repeat(64), "at most 63"],
    ])("refuses staticNamespace %j", async (name, why) => {
      const res = await createSpec(
        asNamespace({ strategy: "static", staticNamespace: name }, alias),
      );
      expectInvalid(res, "spec.namespace.staticNamespace", why);
    });

    it("requires staticNamespace when strategy is static", async () => {
      const res = await createSpec(asNamespace({ strategy: "static" }, alias));
      expectInvalid(res, "spec.namespace.staticNamespace", /required when strategy is static/);
    });

    it.each([
      ["Agent-", "lowercase"],
      ["-agent", "starting with a letter or digit"],
      ["agent_", "lowercase letters, digits and '-'"],
      ["a.b", "lowercase letters, digits and '-'"],
      ["a b", "lowercase letters, digits and '-'"],
      ["a".repeat(41), "at most 40 characters"],
    ])("refuses namespacePrefix %j", async (prefix, why) => {
      const res = await createSpec(asNamespace({ namespacePrefix: prefix }, alias));
      expectInvalid(res, "spec.namespace.namespacePrefix", why);
    });

    it.each(["per-team", "PER-USER", "static "])("refuses strategy %j", async (strategy) => {
      const res = await createSpec(asNamespace({ strategy }, alias));
      expectInvalid(res, "spec.namespace.strategy", /expected one of .*per-user/);
    });

    it.each([["true"], [1], [null]])("refuses autoCreate %j", async (autoCreate) => {
      const res = await createSpec(asNamespace({ autoCreate }, alias));
      expectInvalid(res, "spec.namespace.autoCreate", /expected boolean/);
    });

    it("refuses invalid namespace labels and annotations", async () => {
      expectInvalid(
        await createSpec(asNamespace({ labels: { team: "-x" } }, alias)),
        "spec.namespace.labels.team",
        "label value",
      );
      expectInvalid(
        await createSpec(asNamespace({ annotations: { "bad key": "x" } }, alias)),
        'spec.namespace.annotations["bad key"]',
        "qualified name",
      );
      expectInvalid(
        await createSpec(asNamespace({ labels: { team: 1 } }, alias)),
        "spec.namespace.labels.team",
        /expected string/,
      );
    });
  });
});

describe("network.egress", () => {
  describe.each(FORMS)("%s", (_form, alias) => {
    const egress = (e: unknown) => createSpec(asNetwork({ egress: e }, alias));

    it("requires modes when egress is present", async () => {
      expectInvalid(await egress({}), "spec.network.egress.modes", /at least one mode/);
      expectInvalid(
        await egress({ default: "a" }),
        "spec.network.egress.modes",
        /at least one mode/,
      );
    });

    it("requires modes to be non-empty", async () => {
      expectInvalid(await egress({ modes: {} }), "spec.network.egress.modes", /at least one mode/);
    });

    it("requires default with more than one mode", async () => {
      const res = await egress({ modes: { a: { type: "internet" }, b: { type: "none" } } });
      expectInvalid(res, "spec.network.egress.default", /required when more than one mode/);
    });

    it("requires default to name a mode", async () => {
      const res = await egress({
        default: "c",
        modes: { a: { type: "internet" }, b: { type: "none" } },
      });
      expectInvalid(res, "spec.network.egress.default", /'c' is not one of the modes: a, b/);
      const single = await egress({ default: "x", modes: { a: { type: "internet" } } });
      expectInvalid(single, "spec.network.egress.default", /not one of the modes/);
    });

    it.each([["public"], ["Internet"], [""], [3]])("refuses mode type %j", async (type) => {
      const res = await egress({ modes: { a: { type } } });
      expectInvalid(res, "spec.network.egress.modes.a.type", /expected one of .*allowlist/);
    });

    it("requires a mode type", async () => {
      expectInvalid(
        await egress({ modes: { a: {} } }),
        "spec.network.egress.modes.a.type",
        /required/,
      );
    });

    it("requires cidrs for an allowlist", async () => {
      expectInvalid(
        await egress({ modes: { allow: { type: "allowlist" } } }),
        "spec.network.egress.modes.allow.cidrs",
        /required/,
      );
      expectInvalid(
        await egress({ modes: { allow: { type: "allowlist", cidrs: [] } } }),
        "spec.network.egress.modes.allow.cidrs",
        /required/,
      );
    });

    it("refuses cidrs on a mode that is not an allowlist", async () => {
      const res = await egress({ modes: { open: { type: "internet", cidrs: ["10.0.0.0/8"] } } });
      expectInvalid(
        res,
        "spec.network.egress.modes.open.cidrs",
        /only allowed when type is allowlist/,
      );
    });

    it("refuses an empty mode name", async () => {
      const res = await egress({ default: "", modes: { "": { type: "none" } } });
      expectInvalid(res, 'spec.network.egress.modes[""]', /must not be empty/);
    });

    it.each([
      "10.0.0.0",
      "10.0.0.0/33",
      "10.0.0.0/-1",
      "10.0.0.0/8/8",
      "10.0.0/8",
      "10/8",
      "010.0.0.0/8",
      "0xa.0.0.0/8",
      "256.0.0.0/8",
      " 10.0.0.0/8",
      "10.0.0.0/8 ",
      "10.0.0.0/",
      "2001:db8::/129",
      "2001:db8::g/32",
      "2001:db8:::/32",
      "fe80::1%eth0/64",
      "example.com/24",
      "",
    ])("refuses CIDR %j, naming its index", async (cidr) => {
      const res = await egress({
        modes: { allow: { type: "allowlist", cidrs: ["10.0.0.0/8", cidr] } },
      });
      expectInvalid(res, "spec.network.egress.modes.allow.cidrs[1]", /must be a CIDR/);
    });

    it("names the seed's path for the first bad CIDR", async () => {
      const res = await egress({
        default: "allow",
        modes: { allow: { type: "allowlist", cidrs: ["nope"] } },
      });
      expectInvalid(res, "spec.network.egress.modes.allow.cidrs[0]", '"nope"');
    });
  });
});

describe("network.ingress", () => {
  describe.each(FORMS)("%s", (_form, alias) => {
    const ingress = (levels: unknown) => createSpec(asNetwork({ ingress: levels }, alias));

    it("refuses the reserved level name none", async () => {
      expectInvalid(
        await ingress({ none: { scope: "org" } }),
        "spec.network.ingress.none",
        /reserved/,
      );
    });

    it("refuses an empty level name", async () => {
      expectInvalid(
        await ingress({ "": { scope: "org" } }),
        'spec.network.ingress[""]',
        /must not be empty/,
      );
    });

    it("accepts any other non-empty level name", async () => {
      await expectAccepted(asNetwork({ ingress: { "my level": {}, nonE: {}, None: {} } }, alias));
    });

    it.each(["world", "ANY", "organization"])("refuses scope %j", async (scope) => {
      const res = await ingress({ pub: { scope } });
      expectInvalid(
        res,
        "spec.network.ingress.pub.scope",
        /expected one of "user", "profile", "org", "any"/,
      );
    });

    it.each(["ExternalName", "clusterip", "Headless"])(
      "refuses serviceType %j",
      async (serviceType) => {
        const res = await ingress({ pub: { service: { serviceType } } });
        expectInvalid(
          res,
          "spec.network.ingress.pub.service.serviceType",
          /expected one of "ClusterIP", "NodePort", "LoadBalancer"/,
        );
      },
    );

    it("refuses expectsExternalAddress that is not a boolean", async () => {
      const res = await ingress({
        pub: { expectsExternalAddress: "yes", service: { serviceType: "LoadBalancer" } },
      });
      expectInvalid(res, "spec.network.ingress.pub.expectsExternalAddress", /expected boolean/);
    });

    it.each(["serviceSelectorAnnotation", "dnsAnnotation"])("checks the %s pair", async (which) => {
      const at = `spec.network.ingress.pub.service.${which}`;
      expectInvalid(
        await ingress({ pub: { service: { [which]: { key: "bad key", value: "x" } } } }),
        `${at}.key`,
        "qualified name",
      );
      expectInvalid(
        await ingress({ pub: { service: { [which]: { key: "a" } } } }),
        `${at}.value`,
        /required/,
      );
      expectInvalid(
        await ingress({ pub: { service: { [which]: { value: "x" } } } }),
        `${at}.key`,
        /required/,
      );
      expectInvalid(
        await ingress({ pub: { service: { [which]: { key: "a", value: 1 } } } }),
        `${at}.value`,
        /expected string/,
      );
      expectInvalid(
        await ingress({ pub: { service: { [which]: { key: "a", value: "b", extra: "c" } } } }),
        `${at}.extra`,
        "unknown field",
      );
      await expectAccepted(
        asNetwork(
          { ingress: { pub: { service: { [which]: { key: "example.com/pool", value: "" } } } } },
          alias,
        ),
      );
    });

    it("checks the ingress block", async () => {
      const at = "spec.network.ingress.pub";
      expectInvalid(
        await ingress({
          pub: { service: {}, ingress: { template: "{{.SandboxID}}.example.com" } },
        }),
        `${at}.ingress.controllerName`,
        /required/,
      );
      expectInvalid(
        await ingress({
          pub: { service: {}, ingress: { controllerName: "nginx", template: "{{.Pod}}.x.com" } },
        }),
        `${at}.ingress.template`,
        /unknown template variable/,
      );
    });
  });
});

describe("resourceDefaults", () => {
  it.each([
    ["cpuRequest", "abc"],
    ["cpuLimit", "1.2.3"],
    ["memoryRequest", "4GB"],
    ["memoryLimit", "1 Gi"],
    ["memoryLimit", "1gi"],
    ["cpuRequest", "0x10"],
  ])("refuses %s %j as a quantity", async (key, value) => {
    const res = await createSpec({ resourceDefaults: { [key]: value } });
    expectInvalid(res, `spec.resourceDefaults.${key}`, /Kubernetes quantity .*found/);
  });

  it("refuses a negative quantity", async () => {
    expectInvalid(
      await createSpec({ resourceDefaults: { cpuLimit: "-1" } }),
      "spec.resourceDefaults.cpuLimit",
      /negative/,
    );
  });

  it("refuses a quantity that is not a string", async () => {
    expectInvalid(
      await createSpec({ resourceDefaults: { cpuLimit: 2 } }),
      "spec.resourceDefaults.cpuLimit",
      "expected string, found number 2",
    );
  });

  it.each([
    ["cpuRequest", { cpuRequest: "2", cpuLimit: "1" }],
    ["cpuRequest", { cpuRequest: "1001m", cpuLimit: "1" }],
    ["cpuRequest", { cpuRequest: "10m", cpuLimit: "0.009" }],
    ["memoryRequest", { memoryRequest: "2Gi", memoryLimit: "1Gi" }],
    ["memoryRequest", { memoryRequest: "1Gi", memoryLimit: "1G" }],
  ])("refuses %s above its own limit (%j)", async (field, resources) => {
    const res = await createSpec({ resourceDefaults: resources });
    expectInvalid(res, `spec.resourceDefaults.${field}`, /must not exceed/);
  });
});

describe("other spec fields", () => {
  it("refuses instance types set twice", async () => {
    const res = await createSpec({
      instanceTypes: ["h100"],
      pod: { placement: { instanceTypes: ["a100"] } },
    });
    expectInvalid(res, "spec.pod.placement.instanceTypes", /set twice.*spec\.instanceTypes/);
    const alias = await createSpec({
      instance_types: ["h100"],
      podTemplateJson: JSON.stringify({ placement: { instanceTypes: ["h100"] } }),
    });
    expectInvalid(alias, "spec.pod.placement.instanceTypes", /set twice/);
  });

  it("accepts instance types given once, either way", async () => {
    await expectAccepted({ instanceTypes: ["h100"] });
    await expectAccepted({ pod: { placement: { instanceTypes: ["h100"] } } });
  });

  it.each([
    ["spec.instanceTypes[1]", { instanceTypes: ["a", " "] }, /must not be empty/],
    ["spec.instanceTypes", { instanceTypes: "h100" }, /expected array/],
    ["spec.tags", { tags: "ml" }, /expected array/],
    ["spec.tags[0]", { tags: [1] }, /expected string/],
    ["spec.containerImage", { containerImage: 5 }, /expected string/],
    ["spec.runtimeClass", { runtimeClass: true }, /expected string/],
    ["spec.nodeSelector.gpu", { nodeSelector: { gpu: "-h100" } }, /label value/],
    ['spec.nodeSelector["bad key"]', { nodeSelector: { "bad key": "x" } }, /qualified name/],
    [
      'spec.pod.metadata.labels["a/b/c"]',
      { pod: { metadata: { labels: { "a/b/c": "x" } } } },
      /qualified name/,
    ],
    [
      'spec.pod.metadata.annotations["/x"]',
      { pod: { metadata: { annotations: { "/x": "y" } } } },
      /prefix/,
    ],
    [
      "spec.pod.placement.instanceTypes[0]",
      { pod: { placement: { instanceTypes: [""] } } },
      /must not be empty/,
    ],
  ])("refuses %s", async (field, spec, why) => {
    expectInvalid(await createSpec(spec), field, why);
  });
});

describe("pod.spec is checked against the Kubernetes PodSpec schema", () => {
  describe.each(FORMS)("%s", (_form, alias) => {
    it.each([
      [
        "securityContext.runAsNonRoot",
        { securityContext: { runAsNonRoot: "yes" } },
        /boolean.*found string "yes"/,
      ],
      ["securityContext.runAsUser", { securityContext: { runAsUser: "1000" } }, /integer/],
      [
        "containers[0].image",
        { containers: [{ name: "main", image: 5 }] },
        /string.*found number 5/,
      ],
      [
        "containers[0].resources.limits.cpu",
        { containers: [{ resources: { limits: { cpu: "lots" } } }] },
        /quantity/,
      ],
      ["tolerations", { tolerations: "gpu" }, /array/],
      ["volumes[0].emptyDir", { volumes: [{ name: "v", emptyDir: "yes" }] }, /object/],
      ["nodeSelector.a", { nodeSelector: { a: 1 } }, /string/],
      ["terminationGracePeriodSeconds", { terminationGracePeriodSeconds: "30s" }, /integer/],
    ])("refuses a wrong %s", async (path, podSpec, why) => {
      const res = await createSpec(asPod({ spec: podSpec }, alias));
      expectInvalid(res, `spec.pod.spec.${path}`, why);
    });

    it("accepts a partial PodSpec without the fields Kubernetes requires", async () => {
      await expectAccepted(
        asPod({ spec: { containers: [{ resources: { limits: { cpu: "2" } } }] } }, alias),
      );
    });
  });
});

describe("displayName uniqueness and edits", () => {
  it("refuses a duplicate displayName with ALREADY_EXISTS", async () => {
    const name = uniqueName();
    expect(
      (await t.call("POST", PROFILES, { profileTemplate: { displayName: name, spec: {} } })).status,
    ).toBe(200);
    const res = await t.call("POST", PROFILES, {
      profileTemplate: { displayName: name, spec: {} },
    });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe(6);
    expect(res.body.message).toContain(name);
    expect(violations(res).map((v) => v.field)).toEqual(["displayName"]);
  });

  it("refuses renaming a profile to another's displayName", async () => {
    const taken = uniqueName();
    await t.call("POST", PROFILES, { profileTemplate: { displayName: taken, spec: {} } });
    const mine = (
      await t.call("POST", PROFILES, { profileTemplate: { displayName: uniqueName(), spec: {} } })
    ).body.profileTemplate;
    const res = await t.call("PATCH", `${PROFILES}/${mine.id}`, {
      profileTemplate: { displayName: taken, spec: {} },
    });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe(6);
    expect(violations(res).map((v) => v.field)).toEqual(["displayName"]);
  });

  it("refuses an edit whose id differs from the path's", async () => {
    const p = (
      await t.call("POST", PROFILES, { profileTemplate: { displayName: uniqueName(), spec: {} } })
    ).body.profileTemplate;
    const other = "00000000-0000-4000-8000-000000000000";
    const res = await t.call("PATCH", `${PROFILES}/${p.id}`, {
      profileTemplate: { id: other, displayName: p.displayName, spec: {} },
    });
    expectInvalid(res, "id", other);
    expect(res.body.message).toContain(p.id);
  });

  it("accepts an edit whose id equals the path's, or omits it", async () => {
    const p = (
      await t.call("POST", PROFILES, { profileTemplate: { displayName: uniqueName(), spec: {} } })
    ).body.profileTemplate;
    const same = await t.call("PATCH", `${PROFILES}/${p.id}`, {
      profileTemplate: { id: p.id, displayName: p.displayName, spec: { containerImage: "a" } },
    });
    expect(same.status, JSON.stringify(same.body)).toBe(200);
    expect(same.body.profileTemplate.spec.containerImage).toBe("a");
    const omitted = await t.call("PATCH", `${PROFILES}/${p.id}`, {
      profileTemplate: { displayName: p.displayName, spec: { containerImage: "b" } },
    });
    expect(omitted.status).toBe(200);
    expect(omitted.body.profileTemplate.spec.containerImage).toBe("b");
  });

  it("applies the same rules on edit, naming the field", async () => {
    const p = (
      await t.call("POST", PROFILES, { profileTemplate: { displayName: uniqueName(), spec: {} } })
    ).body.profileTemplate;
    const res = await t.call("PATCH", `${PROFILES}/${p.id}`, {
      profileTemplate: {
        displayName: p.displayName,
        spec: { namespace: { namespacePrefix: "Bad" } },
      },
    });
    expectInvalid(res, "spec.namespace.namespacePrefix");
    const after = await t.call("GET", `${PROFILES}/${p.id}`);
    expect(after.body.profileTemplate.spec.namespaceConfigJson).toBe("");
  });

  it("answers NOT_FOUND for an edit of a profile that does not exist", async () => {
    const res = await t.call("PATCH", `${PROFILES}/00000000-0000-4000-8000-000000000000`, {
      profileTemplate: { displayName: uniqueName(), spec: {} },
    });
    expect(res.status).toBe(404);
    expect(res.body.code).toBe(5);
    const info = res.body.details.find((d: any) => d["@type"] === ERROR_INFO);
    expect(info.reason).toBe("PROFILE_NOT_FOUND");
  });
});
