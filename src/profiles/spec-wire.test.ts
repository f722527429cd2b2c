import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AppError, type FieldViolation } from "../errors.js";
import { type ProfileSpec, ProfileSpecWireSchema } from "./spec-schema.js";
import { canonicalSpec, parseProfileSpec, readProfileSpec, toWireSpec } from "./spec-wire.js";

/** The violations parseProfileSpec throws, or [] when it accepts. */
function violationsOf(raw: unknown, basePath = "spec"): FieldViolation[] {
  const out: FieldViolation[] = [];
  readProfileSpec(raw, basePath, out);
  return out;
}

function fieldsOf(raw: unknown): string[] {
  return violationsOf(raw).map((v) => v.field);
}

const structured: ProfileSpec = {
  containerImage: "ghcr.io/myorg/python:3.11",
  runtimeClass: "kata-qemu",
  resourceDefaults: { cpuRequest: "500m", memoryRequest: "1Gi", cpuLimit: "2", memoryLimit: "4Gi" },
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
      },
    },
    ingress: {
      internal: { scope: "org", service: { serviceType: "ClusterIP" } },
      public: {
        scope: "any",
        expectsExternalAddress: true,
        service: {
          serviceType: "LoadBalancer",
          dnsAnnotation: { key: "external-dns.alpha.kubernetes.io/hostname", value: "x" },
        },
        ingress: { controllerName: "nginx", template: "{{.SandboxID}}.example.com" },
      },
    },
  },
  pod: {
    metadata: { labels: { app: "agent" }, annotations: { owner: "ml-platform" } },
    spec: { securityContext: { runAsNonRoot: true }, volumes: [{ name: "v", emptyDir: {} }] },
  },
};

describe("structured and proto-facing input", () => {
  it("reads the structured form as is", () => {
    expect(parseProfileSpec(structured)).toStrictEqual(structured);
  });

  it("answers proto-facing: every field present, sub-blocks as JSON strings", () => {
    const wire = toWireSpec(structured);
    expect(ProfileSpecWireSchema.parse(wire)).toStrictEqual(wire);
    expect(JSON.parse(wire.namespaceConfigJson)).toStrictEqual(structured.namespace);
    expect(JSON.parse(wire.networkConfigJson)).toStrictEqual(structured.network);
    expect(JSON.parse(wire.podTemplateJson)).toStrictEqual(structured.pod);
    expect(wire.resourceDefaults).toStrictEqual(structured.resourceDefaults);
  });

  it("reads the proto-facing answer back to the same spec", () => {
    expect(parseProfileSpec(toWireSpec(structured))).toStrictEqual(structured);
  });

  it("accepts each sub-block in either form independently", () => {
    const mixed = {
      namespace: structured.namespace,
      networkConfigJson: JSON.stringify(structured.network),
      pod: structured.pod,
    };
    expect(parseProfileSpec(mixed)).toStrictEqual({
      namespace: structured.namespace,
      network: structured.network,
      pod: structured.pod,
    });
  });

  it("refuses a structured key given with its alias, naming the alias", () => {
    for (const [key, alias] of [
      ["namespace", "namespaceConfigJson"],
      ["network", "networkConfigJson"],
      ["pod", "podTemplateJson"],
    ] as const) {
      const raw = { [key]: structured[key], [alias]: JSON.stringify(structured[key]) };
      const violations = violationsOf(raw);
      expect(violations).toHaveLength(1);
      expect(violations[0]?.field).toBe(`spec.${alias}`);
      expect(violations[0]?.description).toContain(`spec.${key}`);
    }
  });

  it("refuses alias strings that do not hold a JSON object", () => {
    expect(violationsOf({ networkConfigJson: "{egress" })).toEqual([
      { field: "spec.networkConfigJson", description: expect.stringContaining("invalid JSON") },
    ]);
    expect(violationsOf({ namespaceConfigJson: "[]" })).toEqual([
      { field: "spec.namespaceConfigJson", description: "must hold a JSON object, found an array" },
    ]);
    expect(violationsOf({ podTemplateJson: "null" })).toEqual([
      { field: "spec.podTemplateJson", description: "must hold a JSON object, found null" },
    ]);
    expect(violationsOf({ podTemplateJson: { spec: {} } })).toEqual([
      {
        field: "spec.podTemplateJson",
        description: "expected a JSON-encoded string, found an object",
      },
    ]);
  });

  it("refuses duplicate keys inside an alias string", () => {
    const violations = violationsOf({
      networkConfigJson: '{"egress":{"modes":{"a":{"type":"none"},"\\u0061":{"type":"internet"}}}}',
    });
    expect(violations).toEqual([
      {
        field: "spec.networkConfigJson",
        description: expect.stringContaining('duplicate key "a"'),
      },
    ]);
  });

  it("names fields inside an alias by their structured path", () => {
    expect(fieldsOf({ networkConfigJson: '{"egress":{"bogus":1}}' })).toEqual([
      "spec.network.egress.bogus",
    ]);
    expect(fieldsOf({ namespaceConfigJson: '{"autoCreate":"yes"}' })).toEqual([
      "spec.namespace.autoCreate",
    ]);
  });

  it("refuses a spec that is not an object", () => {
    expect(violationsOf("x")).toEqual([
      { field: "spec", description: "expected an object, found string" },
    ]);
    expect(violationsOf(null)).toEqual([
      { field: "spec", description: "expected an object, found null" },
    ]);
    expect(() => parseProfileSpec([])).toThrow(AppError);
  });

  it("refuses the key __proto__ instead of dropping it", () => {
    const raw = JSON.parse('{"nodeSelector":{"__proto__":"x"}}');
    expect(fieldsOf(raw)).toEqual(["spec.nodeSelector.__proto__"]);
    const modes = JSON.parse('{"egress":{"modes":{"__proto__":{"type":"none"}}}}');
    expect(fieldsOf({ network: modes })).toEqual(["spec.network.egress.modes.__proto__"]);
  });
});

describe("proto3 names", () => {
  it("accepts snake_case names for message fields, never renaming map keys", () => {
    const snake = {
      container_image: "img",
      runtime_class: "gvisor",
      resource_defaults: { cpu_request: "1", memory_limit: "2Gi" },
      instance_types: ["a"],
      node_selector: { gpu_type: "h100" },
      namespace_config_json: JSON.stringify({
        static_namespace: "ci",
        strategy: "static",
        namespace_prefix: "p-",
        auto_create: false,
        labels: { team_name: "x" },
      }),
      network_config_json: JSON.stringify({
        egress: { modes: { my_mode: { type: "none" } } },
        ingress: {
          pub_level: {
            expects_external_address: true,
            service: {
              service_type: "LoadBalancer",
              service_selector_annotation: { key: "k", value: "v" },
              dns_annotation: { key: "d", value: "e" },
            },
            ingress: { controller_name: "nginx", template: "x.example.com" },
          },
        },
      }),
      pod: { placement: { instance_types: ["b"] }, spec: { security_context: {} } },
    };
    expect(parseProfileSpec(snake)).toStrictEqual({
      containerImage: "img",
      runtimeClass: "gvisor",
      resourceDefaults: { cpuRequest: "1", memoryLimit: "2Gi" },
      instanceTypes: ["a"],
      nodeSelector: { gpu_type: "h100" },
      namespace: {
        staticNamespace: "ci",
        strategy: "static",
        namespacePrefix: "p-",
        autoCreate: false,
        labels: { team_name: "x" },
      },
      network: {
        egress: { modes: { my_mode: { type: "none" } } },
        ingress: {
          pub_level: {
            expectsExternalAddress: true,
            service: {
              serviceType: "LoadBalancer",
              serviceSelectorAnnotation: { key: "k", value: "v" },
              dnsAnnotation: { key: "d", value: "e" },
            },
            ingress: { controllerName: "nginx", template: "x.example.com" },
          },
        },
      },
      // PodSpec inner names are Kubernetes', passed through untouched.
      pod: { placement: { instanceTypes: ["b"] }, spec: { security_context: {} } },
    });
  });

  it("refuses a field given in both spellings", () => {
    expect(violationsOf({ containerImage: "a", container_image: "b" })).toEqual([
      {
        field: "spec.containerImage",
        description: "given twice (as containerImage and container_image)",
      },
    ]);
    expect(fieldsOf({ resourceDefaults: { cpuLimit: "1", cpu_limit: "2" } })).toEqual([
      "spec.resourceDefaults.cpuLimit",
    ]);
    expect(fieldsOf({ networkConfigJson: "", network_config_json: "" })).toEqual([
      "spec.networkConfigJson",
    ]);
  });

  it("refuses unknown fields, naming them", () => {
    expect(fieldsOf({ bogus: 1 })).toEqual(["spec.bogus"]);
    expect(fieldsOf({ resourceDefaults: { gpuLimit: "1" } })).toEqual([
      "spec.resourceDefaults.gpuLimit",
    ]);
    expect(fieldsOf({ namespace: { prefix: "x" } })).toEqual(["spec.namespace.prefix"]);
    expect(fieldsOf({ pod: { placement: { zones: [] } } })).toEqual(["spec.pod.placement.zones"]);
  });
});

describe("empty values mean unset", () => {
  it("reads the answer for an empty spec back as an empty spec", () => {
    const wire = toWireSpec({});
    expect(wire).toStrictEqual({
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
    expect(parseProfileSpec(wire)).toStrictEqual({});
  });

  it.each([
    ["containerImage", ""],
    ["runtimeClass", ""],
    ["instanceTypes", []],
    ["tags", []],
    ["nodeSelector", {}],
    ["resourceDefaults", {}],
    ["resourceDefaults", { cpuRequest: "", memoryLimit: "" }],
    ["namespaceConfigJson", ""],
    ["networkConfigJson", "  "],
    ["podTemplateJson", ""],
  ])("%s = %j is unset", (key, value) => {
    expect(parseProfileSpec({ [key]: value })).toStrictEqual({});
  });

  it("keeps the set keys of a partly empty resourceDefaults", () => {
    expect(parseProfileSpec({ resourceDefaults: { cpuRequest: "", cpuLimit: "2" } })).toStrictEqual(
      {
        resourceDefaults: { cpuLimit: "2" },
      },
    );
  });

  it("keeps an empty structured block: {} is a value for a message", () => {
    expect(parseProfileSpec({ network: {} })).toStrictEqual({ network: {} });
    expect(parseProfileSpec({ networkConfigJson: "{}" })).toStrictEqual({ network: {} });
  });

  it("canonicalSpec is idempotent", () => {
    const once = canonicalSpec({ ...structured, tags: [], containerImage: "" });
    expect(canonicalSpec(once)).toStrictEqual(once);
    expect("tags" in once).toBe(false);
  });
});

describe("round trip on canonical specs", () => {
  const text = fc.string({ maxLength: 8 });
  const nonEmpty = fc.string({ minLength: 1, maxLength: 8 });
  const key = fc.string({ maxLength: 8 }).filter((k) => k !== "__proto__");
  const map = (min = 0) => fc.dictionary(key, text, { minKeys: min, maxKeys: 3 });
  const list = fc.array(text, { minLength: 1, maxLength: 3 });
  const pair = fc.record({ key: text, value: text });

  const namespace = fc.record(
    {
      strategy: fc.constantFrom("per-user", "per-org", "per-profile", "static", "" as const),
      staticNamespace: text,
      namespacePrefix: text,
      autoCreate: fc.boolean(),
      labels: map(),
      annotations: map(),
    },
    { requiredKeys: [] },
  );
  const egressMode = fc.record(
    {
      type: fc.constantFrom("internet", "allowlist", "org", "user", "profile", "none" as const),
      cidrs: fc.array(text, { maxLength: 3 }),
    },
    { requiredKeys: ["type"] },
  );
  const ingressLevel = fc.record(
    {
      scope: fc.constantFrom("user", "profile", "org", "any" as const),
      expectsExternalAddress: fc.boolean(),
      service: fc.record(
        {
          serviceType: fc.constantFrom("ClusterIP", "NodePort", "LoadBalancer" as const),
          serviceSelectorAnnotation: pair,
          dnsAnnotation: pair,
        },
        { requiredKeys: [] },
      ),
      ingress: fc.record({ controllerName: text, template: text }, { requiredKeys: [] }),
    },
    { requiredKeys: [] },
  );
  const network = fc.record(
    {
      egress: fc.record(
        { default: text, modes: fc.dictionary(key, egressMode, { maxKeys: 3 }) },
        { requiredKeys: [] },
      ),
      ingress: fc.dictionary(key, ingressLevel, { maxKeys: 2 }),
    },
    { requiredKeys: [] },
  );
  const pod = fc.record(
    {
      metadata: fc.record({ labels: map(), annotations: map() }, { requiredKeys: [] }),
      spec: fc.dictionary(key, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
      placement: fc.record(
        { instanceTypes: fc.array(text, { maxLength: 2 }) },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: [] },
  );
  const canonical: fc.Arbitrary<ProfileSpec> = fc
    .record(
      {
        containerImage: nonEmpty,
        runtimeClass: nonEmpty,
        resourceDefaults: fc.record(
          {
            cpuRequest: nonEmpty,
            memoryRequest: nonEmpty,
            cpuLimit: nonEmpty,
            memoryLimit: nonEmpty,
          },
          { requiredKeys: ["cpuLimit"] },
        ),
        instanceTypes: list,
        nodeSelector: map(1),
        tags: list,
        namespace,
        network,
        pod,
      },
      { requiredKeys: [] },
      // Plain objects, as a parsed request body holds (fast-check also makes null-prototype ones).
    )
    .map((spec) => JSON.parse(JSON.stringify(spec)) as ProfileSpec);

  it("parseProfileSpec ∘ toWireSpec is the identity", () => {
    fc.assert(
      fc.property(canonical, (spec) => {
        expect(parseProfileSpec(toWireSpec(spec))).toStrictEqual(spec);
      }),
      { numRuns: 300 },
    );
  });

  it("parseProfileSpec reads a canonical structured spec unchanged", () => {
    fc.assert(
      fc.property(canonical, (spec) => {
        expect(parseProfileSpec(spec)).toStrictEqual(spec);
        expect(canonicalSpec(spec)).toStrictEqual(spec);
      }),
      { numRuns: 300 },
    );
  });

  it("toWireSpec ∘ parseProfileSpec is the identity on answers", () => {
    fc.assert(
      fc.property(canonical, (spec) => {
        const wire = toWireSpec(spec);
        expect(toWireSpec(parseProfileSpec(JSON.parse(JSON.stringify(wire))))).toStrictEqual(wire);
      }),
    );
  });
});
