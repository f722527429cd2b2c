import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { NOT_INTERNET_V4, NOT_INTERNET_V6 } from "../not-internet.js";
import { SlotClaims } from "./claims.js";

const run = promisify(execFile);

/**
 * Per-sandbox networking for the local backend: a network namespace, a veth
 * pair with a private /30, and rules in this runner's own nftables table.
 * The plans (ip batch and nft scripts) are pure functions; `LocalNetwork`
 * runs them.
 */

/** Sandboxes get /30s from here: host side .1, sandbox side .2. */
const POOL_BASE = (10 << 24) | (213 << 16); // 10.213.0.0/16
const POOL_SLOTS = 16384;

export type Scope = "org" | "user" | "profile";

export interface SandboxNetworkSpec {
  sandboxId: string;
  egress: { type: string; cidrs: string[] } | null;
  /** Group keys this sandbox belongs to, for org/user/profile egress and ingress scopes. */
  groups: Record<Scope, string>;
  ingress: { scope: string; serviceType: string; ports: number[]; hostPorts: number[] } | null;
}

export interface SandboxAddress {
  slot: number;
  hostIp: string;
  sandboxIp: string;
  netns: string;
  hostIf: string;
}

export function ipv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
}

export function addressFor(instance: string, sandboxId: string, slot: number): SandboxAddress {
  const base = POOL_BASE + slot * 4;
  const tag = createHash("sha256").update(`${instance}/${sandboxId}`).digest("hex").slice(0, 11);
  return {
    slot,
    hostIp: ipv4(base + 1),
    sandboxIp: ipv4(base + 2),
    netns: `pdk-${tag}`,
    hostIf: `pd${tag}`,
  };
}

/**
 * `ip -batch` commands that create the namespace and its link: on the host,
 * then inside the namespace. Without a link the namespace has loopback only
 * (a warm shell for a sandbox without egress).
 */
export function setupCommands(
  a: SandboxAddress,
  link = true,
): { host: string[]; inside: string[] } {
  if (!link) return { host: [`netns add ${a.netns}`], inside: ["link set lo up"] };
  return {
    host: [
      `netns add ${a.netns}`,
      `link add ${a.hostIf} type veth peer name eth0 netns ${a.netns}`,
      `addr add ${a.hostIp}/30 dev ${a.hostIf}`,
      `link set ${a.hostIf} up`,
    ],
    inside: [
      `addr add ${a.sandboxIp}/30 dev eth0`,
      "link set lo up",
      "link set eth0 up",
      `route add default via ${a.hostIp}`,
    ],
  };
}

export function tableName(instance: string): string {
  return `paddock_${instance}`;
}

const groupSet = (scope: Scope, key: string) =>
  `g_${scope}_${createHash("sha256").update(`${scope}/${key}`).digest("hex").slice(0, 12)}`;
const chainOf = (a: SandboxAddress) => `sb_${a.hostIf}`;
const inChainOf = (a: SandboxAddress) => `in_${a.hostIf}`;

/** The runner's table: base chains that send each sandbox's traffic to its own chains. */
export function baseTableScript(
  table: string,
  hostAddresses: string[],
  connected: string[],
): string {
  const quoted = (list: string[]) => (list.length > 0 ? list.join(", ") : "");
  const v4Host = hostAddresses.filter((a) => !a.includes(":"));
  const v6Host = hostAddresses.filter((a) => a.includes(":"));
  return [
    `table inet ${table} {`,
    "  set sandbox_ifs { type ifname; }",
    "  set masquerade_v4 { type ipv4_addr; }",
    `  set blocked_v4 { type ipv4_addr; flags interval; auto-merge; elements = { ${quoted([...NOT_INTERNET_V4, ...connected.filter((c) => !c.includes(":"))])} } }`,
    `  set blocked_v6 { type ipv6_addr; flags interval; auto-merge; elements = { ${quoted(NOT_INTERNET_V6)} } }`,
    `  set host_v4 { type ipv4_addr; ${v4Host.length ? `elements = { ${quoted(v4Host)} }` : ""} }`,
    `  set host_v6 { type ipv6_addr; ${v6Host.length ? `elements = { ${quoted(v6Host)} }` : ""} }`,
    "  map out_chains { type ifname : verdict; }",
    "  map in_chains { type ifname : verdict; }",
    // The host itself is never a destination, whatever the egress mode.
    "  chain input { type filter hook input priority -10; policy accept;",
    "    iifname @sandbox_ifs ct state established,related accept",
    "    iifname @sandbox_ifs drop",
    "  }",
    // What a sandbox's egress lets out still meets the receiving sandbox's ingress rules.
    "  chain deliver {",
    "    oifname @sandbox_ifs oifname vmap @in_chains",
    "    accept",
    "  }",
    "  chain forward { type filter hook forward priority -10; policy accept;",
    "    iifname @sandbox_ifs iifname vmap @out_chains",
    "    oifname @sandbox_ifs oifname vmap @in_chains",
    "    iifname @sandbox_ifs drop",
    "    oifname @sandbox_ifs drop",
    "  }",
    "  chain prerouting { type nat hook prerouting priority -100; policy accept; }",
    "  chain output_nat { type nat hook output priority -100; policy accept; }",
    "  chain postrouting { type nat hook postrouting priority 100; policy accept;",
    "    ip saddr @masquerade_v4 oifname != @sandbox_ifs masquerade",
    "  }",
    "}",
  ].join("\n");
}

/** Rules for one sandbox: where its traffic may go, and who may reach its exposed ports. */
export function sandboxScript(table: string, a: SandboxAddress, spec: SandboxNetworkSpec): string {
  const out: string[] = [];
  const chain = chainOf(a);
  const inChain = inChainOf(a);
  const groupSets = (Object.keys(spec.groups) as Scope[]).map((scope) =>
    groupSet(scope, spec.groups[scope]),
  );
  for (const set of groupSets) {
    out.push(`add set inet ${table} ${set} { type ipv4_addr; }`);
    out.push(`add element inet ${table} ${set} { ${a.sandboxIp} }`);
  }
  out.push(`add chain inet ${table} ${chain}`);
  out.push(`add rule inet ${table} ${chain} ct state established,related accept`);
  const egress = spec.egress;
  if (egress?.type === "allowlist") {
    const v4 = egress.cidrs.filter((c) => !c.includes(":"));
    const v6 = egress.cidrs.filter((c) => c.includes(":"));
    out.push(
      `add set inet ${table} allow4_${a.hostIf} { type ipv4_addr; flags interval; auto-merge; }`,
    );
    out.push(
      `add set inet ${table} allow6_${a.hostIf} { type ipv6_addr; flags interval; auto-merge; }`,
    );
    if (v4.length) out.push(`add element inet ${table} allow4_${a.hostIf} { ${v4.join(", ")} }`);
    if (v6.length) out.push(`add element inet ${table} allow6_${a.hostIf} { ${v6.join(", ")} }`);
    out.push(`add rule inet ${table} ${chain} ip daddr @allow4_${a.hostIf} goto deliver`);
    out.push(`add rule inet ${table} ${chain} ip6 daddr @allow6_${a.hostIf} goto deliver`);
  } else if (egress?.type === "internet") {
    out.push(`add rule inet ${table} ${chain} ip daddr @blocked_v4 drop`);
    out.push(`add rule inet ${table} ${chain} ip6 daddr @blocked_v6 drop`);
    out.push(`add rule inet ${table} ${chain} goto deliver`);
  } else if (
    egress &&
    (egress.type === "org" || egress.type === "user" || egress.type === "profile")
  ) {
    const scope = egress.type as Scope;
    out.push(
      `add rule inet ${table} ${chain} ip daddr @${groupSet(scope, spec.groups[scope])} goto deliver`,
    );
  }
  out.push(`add rule inet ${table} ${chain} drop`);

  // Inbound, as Kubernetes would with its NetworkPolicies: without an exposure, any
  // sandbox whose own egress let the packet out may connect, nothing else; with
  // one, only the exposure's scope, on its ports.
  out.push(`add chain inet ${table} ${inChain}`);
  out.push(`add rule inet ${table} ${inChain} ct state established,related accept`);
  const ingress = spec.ingress;
  if (ingress && ingress.ports.length > 0) {
    const ports = `{ ${ingress.ports.join(", ")} }`;
    if (ingress.serviceType === "NodePort" || ingress.serviceType === "LoadBalancer") {
      // Published on the host: DNAT host ports to the sandbox, for outside callers and the host itself.
      ingress.ports.forEach((port, i) => {
        const hostPort = ingress.hostPorts[i];
        for (const natChain of ["prerouting", "output_nat"]) {
          out.push(
            `add rule inet ${table} ${natChain} fib daddr type local tcp dport ${hostPort} dnat ip to ${a.sandboxIp}:${port} comment "${a.hostIf}"`,
          );
        }
      });
    }
    if (ingress.scope === "any")
      out.push(`add rule inet ${table} ${inChain} tcp dport ${ports} accept`);
    else {
      const set = groupSet(ingress.scope as Scope, spec.groups[ingress.scope as Scope]);
      out.push(`add rule inet ${table} ${inChain} ip saddr @${set} tcp dport ${ports} accept`);
    }
  } else {
    out.push(`add rule inet ${table} ${inChain} iifname @sandbox_ifs accept`);
  }
  out.push(`add rule inet ${table} ${inChain} drop`);
  out.push(`add element inet ${table} out_chains { ${a.hostIf} : goto ${chain} }`);
  out.push(`add element inet ${table} in_chains { ${a.hostIf} : goto ${inChain} }`);
  if (egress?.type === "internet" || egress?.type === "allowlist") {
    out.push(`add element inet ${table} masquerade_v4 { ${a.sandboxIp} }`);
  }
  out.push(`add element inet ${table} sandbox_ifs { ${a.hostIf} }`);
  return out.join("\n");
}

/** Undoes sandboxScript (group-set membership included). */
export function removeScript(table: string, a: SandboxAddress, groups: string[]): string[] {
  return [
    `delete element inet ${table} sandbox_ifs { ${a.hostIf} }`,
    `delete element inet ${table} out_chains { ${a.hostIf} }`,
    `delete element inet ${table} in_chains { ${a.hostIf} }`,
    `delete element inet ${table} masquerade_v4 { ${a.sandboxIp} }`,
    ...groups.map((set) => `delete element inet ${table} ${set} { ${a.sandboxIp} }`),
    `flush chain inet ${table} ${chainOf(a)}`,
    `delete chain inet ${table} ${chainOf(a)}`,
    `flush chain inet ${table} ${inChainOf(a)}`,
    `delete chain inet ${table} ${inChainOf(a)}`,
    `delete set inet ${table} allow4_${a.hostIf}`,
    `delete set inet ${table} allow6_${a.hostIf}`,
  ];
}

export function groupSetsOf(spec: SandboxNetworkSpec): string[] {
  return (Object.keys(spec.groups) as Scope[]).map((scope) => groupSet(scope, spec.groups[scope]));
}

export class LocalNetwork {
  private readonly table: string;
  private readonly slots: SlotClaims;
  private tableReady: Promise<void> | undefined;

  constructor(
    private readonly instance: string,
    stateRoot: string,
  ) {
    this.table = tableName(instance);
    this.slots = new SlotClaims(join(stateRoot, "net-slots"), POOL_SLOTS, "network address");
  }

  private ensureTable(): Promise<void> {
    this.tableReady ??= (async () => {
      await writeSysctl("/proc/sys/net/ipv4/ip_forward", "1");
      const { hostAddresses, connected } = await hostNetworks();
      // A table left by an earlier run of this instance holds only dead sandboxes: start afresh.
      await nft(
        `add table inet ${this.table}\ndelete table inet ${this.table}\n${baseTableScript(this.table, hostAddresses, connected)}\n`,
      );
    })().catch((error: unknown) => {
      this.tableReady = undefined;
      throw error;
    });
    return this.tableReady;
  }

  /** Creates the sandbox's namespace and rules; returns its addresses. */
  async create(spec: SandboxNetworkSpec): Promise<SandboxAddress> {
    const address = await this.prepare(spec.sandboxId, true);
    try {
      await this.applyRules(address, spec);
    } catch (error) {
      await this.destroy(address, groupSetsOf(spec));
      throw error;
    }
    return address;
  }

  /**
   * A namespace named after `owner` (a sandbox, or a warm shell), with a
   * veth link and address when `link`, else loopback only. No rules yet:
   * until applyRules, nothing it sends is forwarded.
   */
  async prepare(owner: string, link: boolean): Promise<SandboxAddress> {
    if (link) await this.ensureTable();
    const preferred =
      Number.parseInt(createHash("sha256").update(owner).digest("hex").slice(0, 6), 16) %
      POOL_SLOTS;
    const slot = this.slots.claim(`${this.instance}/${owner}`, preferred);
    const address = addressFor(this.instance, owner, slot);
    try {
      const commands = setupCommands(address, link);
      await ipBatch([], commands.host);
      await ipBatch(["-n", address.netns], commands.inside);
      return address;
    } catch (error) {
      await this.destroy(address, [], false);
      throw error;
    }
  }

  /**
   * The sandbox's egress and ingress rules, on a namespace from `prepare`
   * (with a link). On failure the caller destroys the namespace.
   */
  async applyRules(address: SandboxAddress, spec: SandboxNetworkSpec): Promise<void> {
    await this.ensureTable();
    await nft(`${sandboxScript(this.table, address, spec)}\n`);
  }

  /** Removes the namespace, its link and (unless it never had any) its rules. */
  async destroy(address: SandboxAddress, groupSets: string[], rules = true): Promise<void> {
    if (rules) {
      for (const line of removeScript(this.table, address, groupSets))
        await nft(line).catch(() => undefined);
    }
    await run("ip", ["netns", "delete", address.netns]).catch(() => undefined);
    if (rules) {
      await run("ip", ["link", "delete", address.hostIf]).catch(() => undefined);
      await this.deleteNatRules(address);
    }
    this.slots.release(address.slot);
  }

  private async deleteNatRules(address: SandboxAddress): Promise<void> {
    for (const chain of ["prerouting", "output_nat"]) {
      const listing = await run("nft", ["-a", "list", "chain", "inet", this.table, chain]).catch(
        () => undefined,
      );
      for (const match of listing?.stdout.matchAll(
        new RegExp(`comment "${address.hostIf}" # handle (\\d+)`, "g"),
      ) ?? []) {
        await nft(`delete rule inet ${this.table} ${chain} handle ${match[1]}`).catch(
          () => undefined,
        );
      }
    }
  }

  /** Everything this instance left on the host from owners (sandboxes, warm shells) not in `keep`. */
  async cleanupExcept(keep: Set<string>): Promise<void> {
    for (const { slot, owner } of this.slots.owned(`${this.instance}/`)) {
      const name = owner.slice(this.instance.length + 1);
      if (keep.has(name)) continue;
      await this.destroy(addressFor(this.instance, name, slot), []);
    }
  }

  /** Removes this instance's table (once it holds no sandbox). */
  async close(): Promise<void> {
    await nft(`delete table inet ${this.table}`).catch(() => undefined);
    this.tableReady = undefined;
  }
}

async function nft(script: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = execFile("nft", ["-f", "-"], (error, _stdout, stderr) => {
      if (error) reject(new Error(`nft: ${stderr.trim() || error.message}`));
      else resolve();
    });
    child.stdin?.end(script);
  });
}

async function ipBatch(options: string[], commands: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = execFile("ip", [...options, "-batch", "-"], (error, _stdout, stderr) => {
      if (error) reject(new Error(`ip: ${stderr.trim() || error.message}`));
      else resolve();
    });
    child.stdin?.end(`${commands.join("\n")}\n`);
  });
}

async function writeSysctl(path: string, value: string): Promise<void> {
  if (readFileSync(path, "utf8").trim() !== value) writeFileSync(path, value);
}

/** The host's own addresses and its directly connected networks (its LAN, gateway included). */
async function hostNetworks(): Promise<{ hostAddresses: string[]; connected: string[] }> {
  const addrs = JSON.parse((await run("ip", ["-j", "addr", "show"])).stdout) as {
    ifname: string;
    addr_info: { local: string; prefixlen: number; family: string }[];
  }[];
  const hostAddresses: string[] = [];
  const connected: string[] = [];
  for (const link of addrs) {
    if (/^pd[0-9a-f]{11}$/.test(link.ifname)) continue;
    for (const info of link.addr_info ?? []) {
      hostAddresses.push(info.local);
      if (info.family === "inet" && link.ifname !== "lo")
        connected.push(`${networkOf(info.local, info.prefixlen)}/${info.prefixlen}`);
    }
  }
  return { hostAddresses, connected };
}

function networkOf(ip: string, prefix: number): string {
  const n = ip.split(".").reduce((acc, part) => (acc << 8) | Number(part), 0) >>> 0;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return ipv4((n & mask) >>> 0);
}
