import { describe, expect, it } from "vitest";
import {
  type BwrapLayout,
  bwrapArgs,
  etcFiles,
  HELPER_DIR,
  HOST_ETC_ENTRIES,
  sandboxEnv,
  WORKDIR,
} from "./bwrap.js";

const DATA_DIR = "/srv/paddock-data";
const STATE = "/var/lib/paddock/local/inst/sandboxes/sb1";

function layout(overrides: Partial<BwrapLayout> = {}): BwrapLayout {
  return {
    imageRoot: undefined,
    dirs: {
      tmp: `${STATE}/tmp`,
      home: `${STATE}/home`,
      workspace: `${STATE}/workspace`,
      etc: `${STATE}/etc`,
      upper: `${STATE}/upper`,
      work: `${STATE}/work`,
    },
    helperDir: "/opt/paddock/dist/native",
    hostname: "sandbox-sb1",
    ownNetwork: false,
    env: {},
    mountedFiles: [],
    command: ["python3", "-c", "print(1)"],
    statusFd: 3,
    networkFiles: [],
    ...overrides,
  };
}

/** Runs bwrapArgs with a host where everything exists, recording the paths bound through fds. */
function build(l: BwrapLayout, exists: (p: string) => boolean = () => true) {
  const fds = new Map<number, string>();
  const args = bwrapArgs(l, exists, (hostPath) => {
    const fd = 4 + fds.size;
    fds.set(fd, hostPath);
    return fd;
  });
  const end = args.indexOf("--");
  return { args, options: args.slice(0, end), command: args.slice(end + 1), fds };
}

/** Every option occurrence with its values, as bubblewrap reads them (before `--`). */
const ARITY: Record<string, number> = {
  "--uid": 1,
  "--gid": 1,
  "--hostname": 1,
  "--cap-drop": 1,
  "--cap-add": 1,
  "--chdir": 1,
  "--setenv": 2,
  "--unsetenv": 1,
  "--bind": 2,
  "--bind-try": 2,
  "--ro-bind": 2,
  "--ro-bind-try": 2,
  "--dev-bind": 2,
  "--dev-bind-try": 2,
  "--bind-fd": 2,
  "--ro-bind-fd": 2,
  "--symlink": 2,
  "--dir": 1,
  "--proc": 1,
  "--dev": 1,
  "--tmpfs": 1,
  "--mqueue": 1,
  "--remount-ro": 1,
  "--json-status-fd": 1,
  "--overlay-src": 1,
  "--overlay": 3,
  "--tmp-overlay": 1,
  "--ro-overlay": 1,
  "--chmod": 2,
  "--perms": 1,
  "--size": 1,
  "--file": 2,
  "--bind-data": 2,
  "--ro-bind-data": 2,
};

function parse(options: string[]): { name: string; values: string[] }[] {
  const out: { name: string; values: string[] }[] = [];
  for (let i = 0; i < options.length; i++) {
    const name = options[i] as string;
    expect(name.startsWith("--"), `option expected at ${i}: ${name}`).toBe(true);
    const n = ARITY[name] ?? 0;
    out.push({ name, values: options.slice(i + 1, i + 1 + n) });
    i += n;
  }
  return out;
}

const HOST_BINDS = [
  "--bind",
  "--bind-try",
  "--ro-bind",
  "--ro-bind-try",
  "--dev-bind",
  "--dev-bind-try",
];

describe("bwrapArgs isolation", () => {
  it("unshares every namespace, drops every capability and dies with its parent", () => {
    const { options } = build(layout());
    const names = parse(options).map((o) => o.name);
    for (const flag of [
      "--unshare-user",
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--unshare-net",
      "--die-with-parent",
      "--new-session",
      "--clearenv",
    ])
      expect(names, flag).toContain(flag);
    const opts = parse(options);
    expect(opts.find((o) => o.name === "--cap-drop")?.values).toEqual(["ALL"]);
    expect(names).not.toContain("--cap-add");
    expect(names).not.toContain("--share-net");
    // Root inside, mapped by the uid nsexec gives bubblewrap (never host root).
    expect(opts.find((o) => o.name === "--uid")?.values).toEqual(["0"]);
    expect(opts.find((o) => o.name === "--gid")?.values).toEqual(["0"]);
    // A fresh /proc and a minimal /dev, never the host's devices.
    expect(opts.find((o) => o.name === "--proc")?.values).toEqual(["/proc"]);
    expect(opts.find((o) => o.name === "--dev")?.values).toEqual(["/dev"]);
    expect(names.filter((n) => n.startsWith("--dev-bind"))).toEqual([]);
    expect(opts.find((o) => o.name === "--json-status-fd")?.values).toEqual(["3"]);
  });

  it("joins a prepared network namespace instead of a new one only when it has one", () => {
    expect(parse(build(layout({ ownNetwork: true })).options).map((o) => o.name)).not.toContain(
      "--unshare-net",
    );
    expect(parse(build(layout({ ownNetwork: false })).options).map((o) => o.name)).toContain(
      "--unshare-net",
    );
  });

  it("never binds /, /root, /home, /etc as a whole, the data dir or the state dir by path", () => {
    for (const l of [
      layout(),
      layout({
        networkFiles: ["/etc/resolv.conf"],
        mountedFiles: [{ hostPath: `${STATE}/mounted-0`, sandboxPath: "/config/app.json" }],
      }),
    ]) {
      const { options } = build(l);
      const sources = parse(options)
        .filter((o) => HOST_BINDS.includes(o.name))
        .map((o) => o.values[0] as string);
      expect(sources.length).toBeGreaterThan(0);
      for (const src of sources) {
        expect([
          "/",
          "/root",
          "/home",
          "/etc",
          "/var",
          "/tmp",
          "/proc",
          "/sys",
          "/dev",
        ]).not.toContain(src.replace(/\/+$/, "") || "/");
        expect(src.startsWith("/home/")).toBe(false);
        expect(src.startsWith("/root/")).toBe(false);
        expect(src.startsWith(DATA_DIR)).toBe(false);
        expect(src.startsWith("/var/lib/paddock")).toBe(false);
        // Only /usr and named /etc entries come from the host by path, each read-only.
        expect(src === "/usr" || src.startsWith("/etc/"), src).toBe(true);
      }
      for (const o of parse(options).filter((o) => HOST_BINDS.includes(o.name)))
        expect(o.name, o.values.join(" ")).toMatch(/^--ro-bind/);
      for (const secret of ["shadow", "gshadow", "sudoers", "ssh", "passwd", "group"])
        expect(options).not.toContain(`/etc/${secret}`);
      // No host path of the sandbox's own state appears in the arguments at all.
      expect(options.join("\n")).not.toContain(STATE);
      expect(options.join("\n")).not.toContain(l.helperDir);
    }
  });

  it("binds the sandbox's private directories through fds, each on its place", () => {
    const l = layout({
      mountedFiles: [{ hostPath: `${STATE}/mounted-0`, sandboxPath: "/config/app.json" }],
    });
    const { options, fds } = build(l);
    const byDest = new Map<string, { rw: boolean; host: string | undefined }>();
    for (const o of parse(options)) {
      if (o.name !== "--bind-fd" && o.name !== "--ro-bind-fd") continue;
      byDest.set(o.values[1] as string, {
        rw: o.name === "--bind-fd",
        host: fds.get(Number(o.values[0])),
      });
    }
    expect(byDest.get("/etc")).toEqual({ rw: true, host: l.dirs.etc });
    expect(byDest.get("/root")).toEqual({ rw: true, host: l.dirs.home });
    expect(byDest.get("/tmp")).toEqual({ rw: true, host: l.dirs.tmp });
    expect(byDest.get(WORKDIR)).toEqual({ rw: true, host: l.dirs.workspace });
    expect(byDest.get(HELPER_DIR)).toEqual({ rw: false, host: l.helperDir });
    expect(byDest.get("/config/app.json")).toEqual({ rw: false, host: `${STATE}/mounted-0` });
    // Every fd handed out is used exactly once.
    const used = parse(options)
      .filter((o) => o.name.endsWith("-fd") && o.name !== "--json-status-fd")
      .map((o) => Number(o.values[0]));
    expect(used.sort()).toEqual([...fds.keys()].sort());
  });

  it("binds only the /etc entries the host has, from the fixed list", () => {
    const present = new Set(["/usr/bin", "/usr/lib", "/etc/ssl", "/etc/ld.so.cache"]);
    const { options } = build(layout(), (p) => present.has(p));
    const etc = parse(options)
      .filter((o) => o.name === "--ro-bind" && (o.values[0] as string).startsWith("/etc/"))
      .map((o) => o.values[0]);
    expect(etc.sort()).toEqual(["/etc/ld.so.cache", "/etc/ssl"]);
    for (const e of HOST_ETC_ENTRIES)
      expect(["passwd", "shadow", "group", "sudoers"]).not.toContain(e);
    const links = parse(options)
      .filter((o) => o.name === "--symlink")
      .map((o) => o.values.join(" "));
    expect(links.sort()).toEqual(["usr/bin /bin", "usr/lib /lib"]);
  });

  it("with an image, the host's /usr is not used and the image is never bound writable", () => {
    const image = "/var/lib/paddock/images/abc/rootfs";
    const { options, fds } = build(layout({ imageRoot: image }));
    const opts = parse(options);
    // Nothing of the host's file system by path, the image included.
    expect(opts.filter((o) => HOST_BINDS.includes(o.name))).toEqual([]);
    const imageBinds = opts.filter(
      (o) => o.name.endsWith("-fd") && fds.get(Number(o.values[0])) === image,
    );
    expect(imageBinds.map((o) => [o.name, o.values[1]])).toEqual([["--ro-bind-fd", "/"]]);
    // The sandbox's own directories stay writable on top of it.
    const rw = opts
      .filter((o) => o.name === "--bind-fd")
      .map((o) => [o.values[1], fds.get(Number(o.values[0]))]);
    expect(rw).toEqual(
      expect.arrayContaining([
        ["/tmp", `${STATE}/tmp`],
        ["/root", `${STATE}/home`],
        [WORKDIR, `${STATE}/workspace`],
      ]),
    );
    expect(options.join("\n")).not.toContain(image);
    expect(opts.map((o) => o.name)).toContain("--unshare-user");
    expect(opts.find((o) => o.name === "--cap-drop")?.values).toEqual(["ALL"]);
  });
});

describe("bwrapArgs command and environment", () => {
  it("puts the command after --, so its arguments are never bubblewrap options", () => {
    const { command } = build(layout({ command: ["--bind", "/", "/host", "--", "x"] }));
    expect(command).toEqual(["--bind", "/", "/host", "--", "x"]);
  });

  it("idles on the pause helper without a command", () => {
    expect(build(layout({ command: [] })).command).toEqual([`${HELPER_DIR}/paddock-pause`]);
  });

  it("clears the environment, then sets defaults and the request's, in pairs", () => {
    const { options } = build(layout({ env: { FOO: "bar", "--bind": "/", PATH: "/custom" } }));
    const opts = parse(options);
    const setenv = Object.fromEntries(
      opts.filter((o) => o.name === "--setenv").map((o) => [o.values[0], o.values[1]]),
    );
    expect(setenv).toEqual({
      PATH: "/custom",
      HOME: "/root",
      HOSTNAME: "sandbox-sb1",
      FOO: "bar",
      "--bind": "/",
    });
    // The odd variable stays a --setenv value pair, not a bind.
    expect(opts.filter((o) => o.name === "--bind")).toEqual([]);
    expect(options.indexOf("--clearenv")).toBeLessThan(options.indexOf("--setenv"));
    expect(options[options.indexOf("--chdir") + 1]).toBe(WORKDIR);
  });

  it("sandboxEnv and etcFiles give the defaults the sandbox sees", () => {
    expect(sandboxEnv({}, "h").PATH).toContain("/usr/bin");
    expect(sandboxEnv({ HOME: "/w" }, "h").HOME).toBe("/w");
    const etc = etcFiles("sandbox-x");
    expect(etc.passwd).toMatch(/^root:x:0:0:/);
    expect(etc.hostname).toBe("sandbox-x\n");
    expect(Object.keys(etc)).not.toContain("shadow");
  });
});
