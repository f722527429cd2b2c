import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { seedBindingOverride, seedProfiles } from "../../../test/support/seeds.js";
import { type ProfileTemplate, parseProfileTemplate } from "../../profiles/profile.js";
import type { Runner } from "../../runners/runner.js";
import { placeSandbox } from "../../sandboxes/placement.js";
import type { StartSandboxRequest } from "../../sandboxes/sandbox.js";
import { NOT_INTERNET_V4, NOT_INTERNET_V6 } from "../not-internet.js";
import {
  ANNOTATION_EXPOSURE,
  exposureOf,
  type KubeObject,
  mergePodSpec,
  objectPath,
  render,
} from "./render.js";

const GOLDEN = fileURLToPath(new URL("./golden/", import.meta.url));
const SANDBOX_ID = "0b7f6c2e-8d1a-4f3b-9c5e-2a4d6e8f0a1c";
const NOW = new Date("2026-11-24T00:00:00Z");

function profile(id: string, body: unknown): ProfileTemplate {
  return {
    id,
    organizationId: "acme",
    ...parseProfileTemplate(body, { kind: "create" }),
    createdAt: NOW,
    updatedAt: NOW,
  };
}

function runner(p: ProfileTemplate, overridesJson = ""): Runner {
  return {
    organizationId: "acme",
    runnerId: "cks-1",
    displayName: "cks-1",
    zone: "us-east-1",
    clusterId: "",
    releaseChannel: "RELEASE_CHANNEL_STABLE",
    bindings: [
      {
        profileTemplateId: p.id,
        profileName: "",
        isDefault: true,
        overridesJson,
        overrides: overridesJson ? (parseOverrides(overridesJson) as Runner["zoneDefaults"]) : {},
      },
    ],
    zoneDefaults: { containerImage: "localhost/paddock/busybox:1.36" },
    connectionStatus: "CONNECTED",
    lastHeartbeatAt: NOW,
    backend: "kubernetes",
    agentVersion: "test",
    createdAt: NOW,
    updatedAt: NOW,
  };
}

function parseOverrides(text: string): unknown {
  const raw = JSON.parse(text) as Record<string, unknown>;
  return parseProfileTemplate({ displayName: "x", spec: raw }, { kind: "create" }).spec;
}

function renderFor(p: ProfileTemplate, request: StartSandboxRequest, overridesJson = "") {
  const placement = placeSandbox({
    request,
    organizationId: "acme",
    userId: "alice",
    runners: [runner(p, overridesJson)],
    profiles: new Map([[p.id, p]]),
    activeSandboxes: new Map(),
    ceiling: { maxCpu: "", maxMemory: "" },
  });
  return render({
    sandboxId: SANDBOX_ID,
    organizationId: "acme",
    userId: "alice",
    profileId: p.id,
    spec: placement.launch,
  });
}

function golden(name: string, value: unknown): void {
  const file = `${GOLDEN}${name}.json`;
  const text = `${JSON.stringify(value, null, 2)}\n`;
  if (process.env.UPDATE_GOLDEN === "1" || !existsSync(file)) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, text);
  }
  expect(text).toBe(readFileSync(file, "utf8"));
}

const seeds = seedProfiles().map((text, i) => {
  const body = JSON.parse(text).profileTemplate;
  return profile(`00000000-0000-4000-8000-00000000000${i + 1}`, body);
});

describe("rendered Kubernetes objects (golden files)", () => {
  it.each(seeds.map((p) => [p.displayName, p] as const))("seed profile %s", (name, p) => {
    const request: StartSandboxRequest =
      name === "worker-internal-svc"
        ? { network: { ingressMode: "internal", exposedPorts: [8080] } }
        : {};
    golden(`seed-${name}`, renderFor(p, request));
  });

  it("a profile that uses every field", () => {
    const body = parse(
      readFileSync(
        fileURLToPath(new URL("../../../test/fixtures/every-block.yaml", import.meta.url)),
        "utf8",
      ),
    );
    const p = profile("00000000-0000-4000-8000-0000000000ff", body);
    golden(
      "every-field",
      renderFor(p, {
        command: "python3",
        args: ["-m", "http.server", "8080"],
        environmentVariables: { GREETING: "hi" },
        network: { egressMode: "allow", ingressMode: "public", exposedPorts: [8080] },
        ports: [{ containerPort: 8080, name: "http", protocol: "TCP" }],
        podAnnotations: { "example.com/trace": "on" },
      }),
    );
  });

  it("the seed's binding override changes the allowlist to exactly its CIDRs", () => {
    const agent = seeds.find((p) => p.displayName === "agent-allowlist") as ProfileTemplate;
    const { overridesJson } = JSON.parse(
      seedBindingOverride().replace("[AGENT-ALLOWLIST-ID]", agent.id),
    );
    const rendered = renderFor(agent, {}, overridesJson);
    const egress = rendered.networkPolicies[0]?.spec as {
      egress: { to: { ipBlock?: { cidr: string } }[] }[];
    };
    expect(egress.egress[0]?.to.map((t) => t.ipBlock?.cidr)).toEqual([
      "140.82.112.0/20",
      "10.42.0.0/16",
    ]);
  });
});

describe("render rules", () => {
  const untrusted = seeds.find((p) => p.displayName === "untrusted-exec") as ProfileTemplate;
  const ci = seeds.find((p) => p.displayName === "ci-test-runner") as ProfileTemplate;
  const gpu = seeds.find((p) => p.displayName === "ds-gpu-h100") as ProfileTemplate;

  it("labels every object with the sandbox id and manager, and the pod with org, user and profile", () => {
    const r = renderFor(untrusted, {});
    for (const o of [r.pod, ...r.networkPolicies]) {
      expect(o.metadata.labels).toMatchObject({
        "paddock.dev/sandbox-id": SANDBOX_ID,
        "app.kubernetes.io/managed-by": "paddock",
      });
    }
    expect(r.pod.metadata.labels).toMatchObject({
      "paddock.dev/organization": "acme",
      "paddock.dev/user": "alice",
      "paddock.dev/profile": untrusted.id,
    });
    expect(r.namespace?.metadata.labels).toMatchObject({
      "paddock.dev/organization": "acme",
      policy: "restricted",
    });
  });

  it("names namespaces by strategy; static namespaces and autoCreate false are not created", () => {
    expect(renderFor(untrusted, {}).pod.metadata.namespace).toMatch(
      /^untrusted-untrusted-exec-[0-9a-f]{6}$/,
    );
    const r = renderFor(ci, {});
    expect(r.pod.metadata.namespace).toBe("ci-sandboxes");
    expect(r.namespace).toBeUndefined();
    expect(renderFor(gpu, {}).pod.metadata.namespace).toMatch(/^ds-acme-alice-[0-9a-f]{6}$/);
  });

  it("internet egress excepts the ranges the local backend blocks too", () => {
    const worker = seeds.find((p) => p.displayName === "worker-internal-svc") as ProfileTemplate;
    const egress = renderFor(worker, {}).networkPolicies[0]?.spec as {
      egress: { to: { ipBlock?: { cidr: string; except: string[] } }[] }[];
    };
    expect(egress.egress[0]?.to.map((t) => t.ipBlock)).toEqual([
      { cidr: "0.0.0.0/0", except: NOT_INTERNET_V4 },
      { cidr: "::/0", except: NOT_INTERNET_V6 },
    ]);
  });

  it("none denies all egress; instance types become required node affinity", () => {
    expect(
      (renderFor(untrusted, {}).networkPolicies[0]?.spec as { egress?: unknown[] } | undefined)
        ?.egress,
    ).toEqual([]);
    const spec = renderFor(gpu, {}).pod.spec as {
      affinity: unknown;
      nodeSelector: unknown;
      runtimeClassName: string;
    };
    expect(spec.runtimeClassName).toBe("kata-qemu-nvidia-gpu");
    expect(spec.nodeSelector).toEqual({ gpu: "h100" });
    expect(JSON.stringify(spec.affinity)).toContain(
      '"node.kubernetes.io/instance-type","operator":"In","values":["h100"]',
    );
  });

  it("merges a partial PodSpec: an unnamed container patches the main one, named lists merge by name", () => {
    const merged = mergePodSpec(
      {
        containers: [{ name: "sandbox", image: "a", env: [{ name: "A", value: "1" }] }],
        volumes: [{ name: "v1" }],
      },
      {
        containers: [
          { name: "", env: [{ name: "B", value: "2" }] },
          { name: "sidecar", image: "s" },
        ],
        volumes: [{ name: "v2" }],
        hostname: "h",
      },
    );
    expect(merged).toEqual({
      containers: [
        {
          name: "sandbox",
          image: "a",
          env: [
            { name: "A", value: "1" },
            { name: "B", value: "2" },
          ],
        },
        { name: "sidecar", image: "s" },
      ],
      volumes: [{ name: "v1" }, { name: "v2" }],
      hostname: "h",
    });
  });

  it("filters reserved paddock.dev labels and annotations out of what the profile sets", () => {
    const p = profile("00000000-0000-4000-8000-0000000000aa", {
      displayName: "sneaky",
      spec: {
        pod: {
          metadata: {
            labels: { "paddock.dev/sandbox-id": "forged", app: "x" },
            annotations: { "paddock.dev/x": "y" },
          },
        },
      },
    });
    const r = renderFor(p, {});
    expect(r.pod.metadata.labels?.["paddock.dev/sandbox-id"]).toBe(SANDBOX_ID);
    expect(r.pod.metadata.labels?.app).toBe("x");
    expect(r.pod.metadata.annotations).toEqual({});
  });

  it("paths objects for the API: core and grouped, namespaced and not", () => {
    const r = renderFor(
      seeds.find((p) => p.displayName === "worker-internal-svc") as ProfileTemplate,
      { network: { ingressMode: "internal", exposedPorts: [8080] } },
    );
    expect(objectPath(r.pod)).toBe(
      `/api/v1/namespaces/${r.pod.metadata.namespace}/pods/${r.pod.metadata.name}`,
    );
    expect(objectPath(r.namespace as KubeObject)).toBe(
      `/api/v1/namespaces/${r.pod.metadata.namespace}`,
    );
    expect(objectPath(r.networkPolicies[1] as KubeObject)).toMatch(
      /^\/apis\/networking\.k8s\.io\/v1\/namespaces\/[^/]+\/networkpolicies\/[^/]+-ingress$/,
    );
    expect(() =>
      objectPath({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" } }),
    ).toThrow(/kind Deployment/);
  });

  it("records the exposure on the pod, for a restarted agent; a profile cannot forge it", () => {
    const worker = seeds.find((p) => p.displayName === "worker-internal-svc") as ProfileTemplate;
    const r = renderFor(worker, { network: { ingressMode: "internal", exposedPorts: [8080] } });
    expect(exposureOf(r.pod)).toEqual({
      serviceType: "ClusterIP",
      ports: [8080],
      expectsExternalAddress: false,
      host: "",
    });
    const forged = profile("00000000-0000-4000-8000-0000000000ab", {
      displayName: "forger",
      spec: {
        pod: {
          metadata: { annotations: { [ANNOTATION_EXPOSURE]: '{"serviceType":"LoadBalancer"}' } },
        },
      },
    });
    expect(exposureOf(renderFor(forged, {}).pod)).toBeUndefined();
    expect(
      exposureOf({ metadata: { annotations: { [ANNOTATION_EXPOSURE]: "{not json" } } }),
    ).toBeUndefined();
  });
});
