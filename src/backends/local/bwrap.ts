/**
 * The bubblewrap command line for one sandbox, as a pure function of its
 * layout, so that every isolation flag is unit-tested.
 */

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Where the static helpers appear inside a sandbox. */
export const HELPER_DIR = "/.paddock";
export const WORKDIR = "/workspace";

export interface BwrapLayout {
  /** Extracted image root, or undefined for a read-only view of the host's /usr. */
  imageRoot: string | undefined;
  /** Per-sandbox host directories. */
  dirs: { tmp: string; home: string; workspace: string; etc: string; upper: string; work: string };
  /** The host's static helpers directory (pause, nsexec), bound read-only at HELPER_DIR. */
  helperDir: string;
  hostname: string;
  /** Join a prepared network namespace instead of a new, empty one. */
  ownNetwork: boolean;
  env: Record<string, string>;
  /** Host file → path in the sandbox, bound read-only. */
  mountedFiles: { hostPath: string; sandboxPath: string }[];
  command: string[];
  statusFd: number;
  /** Host paths for /etc/resolv.conf and certificates, when the sandbox has egress. */
  networkFiles: string[];
}

/** Host /etc entries programs need to run; never the whole /etc (no shadow, no keys). */
export const HOST_ETC_ENTRIES = [
  "alternatives",
  "ld.so.cache",
  "localtime",
  "mime.types",
  "ssl",
  "ca-certificates",
];

/**
 * `exists` answers for host system paths; `fdFor` opens a private host path
 * (the sandbox's own directories, the helpers) and returns the fd the child
 * will have it on. Private paths are bound through fds because bubblewrap
 * runs as the sandbox's unprivileged uid, which must not need (or get)
 * search access to the data dir or the checkout.
 */
export function bwrapArgs(
  layout: BwrapLayout,
  exists: (path: string) => boolean,
  fdFor: (hostPath: string) => number,
): string[] {
  const bind = (flag: "--bind" | "--ro-bind", hostPath: string, dest: string) =>
    a.push(`${flag}-fd`, String(fdFor(hostPath)), dest);
  const a: string[] = [
    "--unshare-user",
    // No nested user namespaces: inside one, a sandbox would hold every capability again.
    "--disable-userns",
    "--uid",
    "0",
    "--gid",
    "0",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--hostname",
    layout.hostname,
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
  ];
  if (!layout.ownNetwork) a.push("--unshare-net");

  if (layout.imageRoot) {
    // The image is shared and read-only; the sandbox writes to its own /tmp, /root and workspace.
    bind("--ro-bind", layout.imageRoot, "/");
    bind("--bind", layout.dirs.tmp, "/tmp");
    bind("--bind", layout.dirs.home, "/root");
  } else {
    a.push("--ro-bind", "/usr", "/usr");
    for (const [link, target] of [
      ["/bin", "usr/bin"],
      ["/sbin", "usr/sbin"],
      ["/lib", "usr/lib"],
      ["/lib64", "usr/lib64"],
      ["/lib32", "usr/lib32"],
      ["/libx32", "usr/libx32"],
    ] as const) {
      if (exists(`/usr/${target.slice(4)}`)) a.push("--symlink", target, link);
    }
    bind("--bind", layout.dirs.etc, "/etc");
    for (const entry of HOST_ETC_ENTRIES) {
      if (exists(`/etc/${entry}`)) a.push("--ro-bind", `/etc/${entry}`, `/etc/${entry}`);
    }
    bind("--bind", layout.dirs.home, "/root");
    bind("--bind", layout.dirs.tmp, "/tmp");
    a.push("--dir", "/var");
    bind("--bind", layout.dirs.tmp, "/var/tmp");
  }
  bind("--bind", layout.dirs.workspace, WORKDIR);
  for (const file of layout.networkFiles)
    a.push("--ro-bind", file, `/etc/${file.split("/").pop()}`);
  a.push("--proc", "/proc", "--dev", "/dev");
  bind("--ro-bind", layout.helperDir, HELPER_DIR);
  for (const f of layout.mountedFiles) bind("--ro-bind", f.hostPath, f.sandboxPath);
  a.push("--chdir", WORKDIR, "--clearenv");
  for (const [key, value] of Object.entries(sandboxEnv(layout.env, layout.hostname)))
    a.push("--setenv", key, value);
  a.push("--json-status-fd", String(layout.statusFd), "--");
  a.push(...(layout.command.length > 0 ? layout.command : [`${HELPER_DIR}/paddock-pause`]));
  return a;
}

/** The environment every process of the sandbox sees: defaults, then the request's. */
export function sandboxEnv(env: Record<string, string>, hostname: string): Record<string, string> {
  return { PATH: DEFAULT_PATH, HOME: "/root", HOSTNAME: hostname, ...env };
}

/** Files a host-view sandbox gets in its own (writable) /etc. */
export function etcFiles(hostname: string): Record<string, string> {
  return {
    passwd:
      "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    group: "root:x:0:\nnogroup:x:65534:\n",
    hostname: `${hostname}\n`,
    hosts: `127.0.0.1\tlocalhost ${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
  };
}
