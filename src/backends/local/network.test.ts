import { execFileSync } from "node:child_process";
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../../test/support/app.js";
import { startTestNetwork, type TestNetwork } from "../../../test/support/test-hosts.js";

const PROBE = `
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)
    print(s.recv(100).decode().strip())
except Exception as e:
    print("unreachable:", type(e).__name__)
`;
const ECHO_SERVER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(b"hello from sandbox\\n"); c.close()
`;

const NETWORK = {
  egress: {
    default: "off",
    modes: {
      allow: { type: "allowlist", cidrs: ["198.51.100.0/24"] },
      web: { type: "internet" },
      off: { type: "none" },
      peers: { type: "org" },
      mine: { type: "user" },
      same: { type: "profile" },
    },
  },
  ingress: {
    internal: { scope: "org", service: { serviceType: "ClusterIP" } },
    private: { scope: "user", service: { serviceType: "ClusterIP" } },
    public: { scope: "any", service: { serviceType: "NodePort" } },
  },
};

/** Every egress mode and exposure of the local backend, checked by real traffic to hosts the test builds. */
describe("local backend networking", () => {
  let t: TestApp;
  let net: TestNetwork;
  let hostServer: Server;
  let hostPort = 0;
  let bob: string;
  const hostAddress =
    execFileSync("ip", ["-4", "-o", "route", "get", "1.1.1.1"])
      .toString()
      .match(/src (\S+)/)?.[1] ?? "";

  const start = async (body: Record<string, unknown>, token?: string) => {
    const res = await t.call("POST", "/v1beta2/sandboxes?wait=true", body, token);
    expect(res.body.sandboxStatus, JSON.stringify(res.body)).toBe("SANDBOX_STATUS_RUNNING");
    return res.body as {
      sandboxId: string;
      serviceAddress: string;
      appliedEgressMode: string;
      exposedPorts: number[];
    };
  };
  const sh = async (id: string, script: string, token?: string) => {
    const res = await t.call(
      "POST",
      `/v1beta2/sandboxes/${id}/exec`,
      { command: ["sh", "-c", script], maxTimeoutSeconds: 20 },
      token,
    );
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return Buffer.from(res.body.stdout, "base64").toString().trim();
  };
  const probe = (id: string, address: string, port: number, token?: string) =>
    sh(id, `python3 -c '${PROBE}' ${address} ${port}`, token);
  const ipOf = async (id: string) =>
    (await sh(id, "ip -4 -o addr show eth0")).match(/inet (\S+)\//)?.[1] ?? "";
  const server = async (mode: string, extra: Record<string, unknown> = {}, token?: string) =>
    start(
      { command: "python3", args: ["-c", ECHO_SERVER], network: { egressMode: mode, ...extra } },
      token,
    );

  beforeAll(async () => {
    net = startTestNetwork();
    hostServer = createServer((s) => s.end("hello from the host\n"));
    await new Promise<void>((resolve) => hostServer.listen(0, "0.0.0.0", resolve));
    hostPort = (hostServer.address() as { port: number }).port;
    t = await startTestApp({ kind: "memory" }, { localRunner: true });
    const make = async (displayName: string) =>
      (
        await t.call("POST", "/v1beta2/sandbox/profile-templates", {
          profileTemplate: { displayName, spec: { network: NETWORK } },
        })
      ).body.profileTemplate.id as string;
    const netProfile = await make("net");
    const otherProfile = await make("net-other");
    const bound = await t.call("PATCH", "/v1beta2/sandbox/runners/local", {
      runner: {
        profileBindings: [
          { profileTemplateId: netProfile, isDefault: true },
          { profileTemplateId: otherProfile },
        ],
      },
    });
    expect(bound.status, JSON.stringify(bound.body)).toBe(200);
    bob = (
      await t.call("POST", "/v1beta2/admin/organizations/default/users", {
        userId: "bob",
        role: "SANDBOX_USER",
      })
    ).body.token;
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    hostServer?.close();
    net?.close();
  });

  it("allowlist reaches exactly its CIDRs", async () => {
    const s = await start({ network: { egressMode: "allow" } });
    expect(s.appliedEgressMode).toBe("allow");
    expect(await probe(s.sandboxId, "198.51.100.10", 8080)).toBe("hello from allowed");
    expect(await probe(s.sandboxId, "203.0.113.10", 8080)).toMatch(/^unreachable/);
    expect(await probe(s.sandboxId, "198.18.0.10", 8080)).toMatch(/^unreachable/);
  });

  it("internet reaches the internet, but not the host, its LAN or link-local metadata", async () => {
    const s = await start({ network: { egressMode: "web" } });
    expect(await probe(s.sandboxId, "198.18.0.10", 8080)).toBe("hello from internet");
    // Directly connected networks are "behind the gateway": the host's own neighbourhood.
    expect(await probe(s.sandboxId, "198.51.100.10", 8080)).toMatch(/^unreachable/);
    expect(await probe(s.sandboxId, "203.0.113.10", 8080)).toMatch(/^unreachable/);
    expect(await probe(s.sandboxId, "169.254.169.254", 80)).toMatch(/^unreachable/);
  });

  it.each(["allow", "web", "off"])(
    "mode %s never reaches the host itself (loopback, its addresses, the gateway side of the link)",
    async (mode) => {
      const s = await start({ network: { egressMode: mode } });
      expect(await probe(s.sandboxId, "127.0.0.1", hostPort)).toMatch(/^unreachable/);
      expect(await probe(s.sandboxId, hostAddress, hostPort)).toMatch(/^unreachable/);
      expect(await probe(s.sandboxId, "198.51.100.1", hostPort)).toMatch(/^unreachable/);
      if (mode !== "off") {
        const gateway =
          (await sh(s.sandboxId, "ip -4 route show default")).match(/via (\S+)/)?.[1] ?? "";
        expect(gateway).not.toBe("");
        expect(await probe(s.sandboxId, gateway, hostPort)).toMatch(/^unreachable/);
      }
    },
  );

  it("none has only loopback", async () => {
    const s = await start({ network: { egressMode: "off" } });
    expect(await sh(s.sandboxId, "ip -o link show | cut -d: -f2 | tr -d ' '")).toBe("lo");
    expect(await probe(s.sandboxId, "198.51.100.10", 8080)).toMatch(/^unreachable/);
  });

  it("user reaches the same user's sandboxes only", async () => {
    // A sandbox has an address once it has egress or an exposure; "none" with neither is loopback only.
    const target = await server("mine");
    const address = await ipOf(target.sandboxId);
    const mine = await start({ network: { egressMode: "mine" } });
    expect(await probe(mine.sandboxId, address, 9000)).toBe("hello from sandbox");
    const bobs = await start({ network: { egressMode: "mine" } }, bob);
    expect(await probe(bobs.sandboxId, address, 9000, bob)).toMatch(/^unreachable/);
    const bobsOrg = await start({ network: { egressMode: "peers" } }, bob);
    expect(await probe(bobsOrg.sandboxId, address, 9000, bob)).toBe("hello from sandbox");
    expect(await probe(bobsOrg.sandboxId, "198.51.100.10", 8080, bob)).toMatch(/^unreachable/);
  });

  it("profile reaches sandboxes of the same profile only", async () => {
    const sameProfile = await server("same");
    const otherProfile = await start({
      profileNames: ["net-other"],
      command: "python3",
      args: ["-c", ECHO_SERVER],
      network: { egressMode: "same" },
    });
    const probeFrom = await start({ network: { egressMode: "same" } });
    expect(await probe(probeFrom.sandboxId, await ipOf(sameProfile.sandboxId), 9000)).toBe(
      "hello from sandbox",
    );
    expect(await probe(probeFrom.sandboxId, await ipOf(otherProfile.sandboxId), 9000)).toMatch(
      /^unreachable/,
    );
  });

  it("ClusterIP exposure is reachable from sandboxes in its scope, at the serviceAddress", async () => {
    const exposed = await server("off", { ingressMode: "private", exposedPorts: [9000] });
    expect(exposed.exposedPorts).toEqual([9000]);
    const [address, port] = exposed.serviceAddress.split(":");
    expect(port).toBe("9000");
    const mine = await start({ network: { egressMode: "peers" } });
    expect(await probe(mine.sandboxId, address ?? "", 9000)).toBe("hello from sandbox");
    // Bob's egress would allow it (org), but the exposure's scope is its owner.
    const bobs = await start({ network: { egressMode: "peers" } }, bob);
    expect(await probe(bobs.sandboxId, address ?? "", 9000, bob)).toMatch(/^unreachable/);
  });

  it("NodePort exposure is published on the host, for callers outside and on the host", async () => {
    const exposed = await server("off", { ingressMode: "public", exposedPorts: [9000] });
    const [address, port] = exposed.serviceAddress.split(":");
    expect(address).toBe(hostAddress);
    const reply = execFileSync("python3", ["-c", PROBE, address ?? "", port ?? ""])
      .toString()
      .trim();
    expect(reply).toBe("hello from sandbox");
    // From a test host, through the host's address on its link.
    const fromOutside = execFileSync("ip", [
      "netns",
      "exec",
      net.namespaces.allowed ?? "",
      "python3",
      "-c",
      PROBE,
      net.hostSide.allowed ?? "",
      port ?? "",
    ] as string[])
      .toString()
      .trim();
    expect(fromOutside).toBe("hello from sandbox");
  });
});
