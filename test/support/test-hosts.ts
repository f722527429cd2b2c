import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";

/**
 * Hosts a test builds in its own network namespaces, each running a TCP
 * server that answers "hello from NAME". Egress tests aim at them; nothing
 * leaves this machine.
 */
export interface TestNetwork {
  hosts: Record<string, { address: string; port: number }>;
  /** Host-side address of a test link (the host, seen from a test host). */
  hostSide: Record<string, string>;
  /** Network namespace of each test host, to run a command "from outside". */
  namespaces: Record<string, string>;
  close(): void;
}

const SERVER = `
const net = require("node:net");
const [name, address, port] = process.argv.slice(1);
net.createServer((s) => s.end("hello from " + name + "\\n")).listen(Number(port), address);
`;

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: "pipe" });
}

/**
 * - `allowed`: 198.51.100.10 on a link of its own (a network the host is directly connected to)
 * - `outside`: 203.0.113.10, likewise
 * - `internet`: 198.18.0.10, one router away (as the internet is: not a directly connected network)
 */
export function startTestNetwork(port = 8080): TestNetwork {
  const tag = randomBytes(3).toString("hex");
  const namespaces: string[] = [];
  const links: string[] = [];
  const servers: ChildProcess[] = [];
  const netns = (suffix: string) => {
    const name = `tst-${tag}-${suffix}`;
    ip("netns", "add", name);
    ip("-n", name, "link", "set", "lo", "up");
    namespaces.push(name);
    return name;
  };
  const link = (
    ns: string,
    hostIf: string,
    hostCidr: string,
    innerCidr: string,
    gateway: string,
  ) => {
    ip("link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns);
    links.push(hostIf);
    ip("addr", "add", hostCidr, "dev", hostIf);
    ip("link", "set", hostIf, "up");
    ip("-n", ns, "addr", "add", innerCidr, "dev", "eth0");
    ip("-n", ns, "link", "set", "eth0", "up");
    ip("-n", ns, "route", "add", "default", "via", gateway);
  };
  const serve = (ns: string, name: string, address: string) => {
    servers.push(
      spawn(
        "ip",
        ["netns", "exec", ns, process.execPath, "-e", SERVER, name, address, String(port)],
        { stdio: "ignore" },
      ),
    );
  };
  try {
    const allowed = netns("a");
    link(allowed, `tst${tag}a`, "198.51.100.1/24", "198.51.100.10/24", "198.51.100.1");
    serve(allowed, "allowed", "198.51.100.10");
    const outside = netns("b");
    link(outside, `tst${tag}b`, "203.0.113.1/24", "203.0.113.10/24", "203.0.113.1");
    serve(outside, "outside", "203.0.113.10");
    const router = netns("r");
    link(router, `tst${tag}r`, "100.64.77.1/30", "100.64.77.2/30", "100.64.77.1");
    execFileSync("ip", ["netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const internet = netns("i");
    ip(
      "link",
      "add",
      "up0",
      "netns",
      router,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      internet,
    );
    ip("-n", router, "addr", "add", "198.18.0.1/24", "dev", "up0");
    ip("-n", router, "link", "set", "up0", "up");
    ip("-n", internet, "addr", "add", "198.18.0.10/24", "dev", "eth0");
    ip("-n", internet, "link", "set", "eth0", "up");
    ip("-n", internet, "route", "add", "default", "via", "198.18.0.1");
    ip("route", "add", "198.18.0.0/24", "via", "100.64.77.2");
    serve(internet, "internet", "198.18.0.10");
  } catch (error) {
    cleanup();
    throw error;
  }
  function cleanup(): void {
    for (const s of servers) s.kill("SIGKILL");
    try {
      ip("route", "del", "198.18.0.0/24");
    } catch {}
    for (const l of links) {
      try {
        ip("link", "del", l);
      } catch {}
    }
    for (const n of namespaces) {
      try {
        ip("netns", "del", n);
      } catch {}
    }
  }
  return {
    hosts: {
      allowed: { address: "198.51.100.10", port },
      outside: { address: "203.0.113.10", port },
      internet: { address: "198.18.0.10", port },
    },
    hostSide: { allowed: "198.51.100.1" },
    namespaces: { allowed: `tst-${tag}-a`, outside: `tst-${tag}-b`, internet: `tst-${tag}-i` },
    close: cleanup,
  };
}
