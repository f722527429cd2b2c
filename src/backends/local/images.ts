import { execFile } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Where imported images live on this host, shared by every Paddock runner on it. */
export const DEFAULT_IMAGE_ROOT = "/var/lib/paddock/images";

const REFERENCE =
  /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/;

/** `name[:tag]` with the tag defaulting to `latest`, as Docker reads references. */
export function parseReference(reference: string): { name: string; tag: string } | undefined {
  if (!REFERENCE.test(reference)) return undefined;
  const at = reference.indexOf("@");
  const base = at >= 0 ? reference.slice(0, at) : reference;
  const slash = base.lastIndexOf("/");
  const colon = base.lastIndexOf(":");
  if (colon > slash) return { name: base.slice(0, colon), tag: base.slice(colon + 1) };
  return { name: base, tag: at >= 0 ? reference.slice(at + 1).replace(":", "-") : "latest" };
}

/** A directory name for a reference: readable, and unambiguous. */
export function storeKey(reference: string): string {
  const parsed = parseReference(reference);
  if (!parsed)
    throw new Error(
      `'${reference}' is not an image reference such as busybox:1.36 or ghcr.io/org/app:tag`,
    );
  return `${parsed.name.replace(/[/:]/g, "_")}@${parsed.tag}`;
}

/**
 * The local image store: each image is an unpacked root filesystem that
 * sandboxes see read-only (with private writable /tmp, /root, /workspace).
 */
export class ImageStore {
  constructor(readonly root = DEFAULT_IMAGE_ROOT) {}

  rootfs(reference: string): string | undefined {
    const dir = join(this.root, storeKey(reference), "rootfs");
    return existsSync(dir) ? dir : undefined;
  }

  list(): string[] {
    if (!existsSync(this.root)) return [];
    return readdirSync(this.root).map((key) => key.replace("@", ":").replace(/_/g, "/"));
  }

  /**
   * Imports a root filesystem tarball (plain or compressed) or an OCI image
   * layout (a directory, or a tarball of one; unpacked with umoci).
   */
  async import(reference: string, file: string): Promise<string> {
    const key = storeKey(reference);
    mkdirSync(this.root, { recursive: true, mode: 0o755 });
    chmodSync(this.root, 0o755);
    const staging = mkdtempSync(join(this.root, `.import-${key}-`));
    try {
      const rootfs = join(staging, "rootfs");
      const layout = await ociLayout(file, staging);
      if (layout) {
        const tag = await onlyTag(layout);
        await run("umoci", [
          "raw",
          "unpack",
          "--rootless",
          "--image",
          `${layout}:${tag}`,
          rootfs,
        ]).catch((error: unknown) => {
          throw new Error(
            `cannot unpack OCI layout ${file} (needs umoci): ${(error as Error).message}`,
          );
        });
      } else {
        mkdirSync(rootfs, { mode: 0o755 });
        await run("tar", ["-xf", file, "-C", rootfs, "--numeric-owner"]).catch((error: unknown) => {
          throw new Error(
            `cannot extract ${file} as a root filesystem tarball: ${(error as Error).message}`,
          );
        });
      }
      // Mount points a sandbox needs: the image root is bound read-only, so they must exist beforehand.
      for (const dir of ["tmp", "root", "workspace", "proc", "dev", "etc", ".paddock"]) {
        mkdirSync(join(rootfs, dir), { recursive: true, mode: 0o755 });
      }
      chmodSync(join(rootfs, "tmp"), 0o1777);
      // Sandboxes' unprivileged uids must be able to reach the image (bubblewrap resolves it as them).
      chmodSync(staging, 0o755);
      chmodSync(rootfs, 0o755);
      if (!existsSync(join(rootfs, "etc", "resolv.conf")))
        writeFileSync(join(rootfs, "etc", "resolv.conf"), "");
      const target = join(this.root, key);
      rmSync(target, { recursive: true, force: true });
      renameSync(staging, target);
      return target;
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      throw error;
    }
  }

  /** Pulls with skopeo where a registry is reachable; the error names the image when not. */
  async pull(reference: string): Promise<string> {
    const staging = mkdtempSync(join(this.root, ".pull-"));
    try {
      await run("skopeo", ["copy", `docker://${reference}`, `oci:${join(staging, "oci")}:pulled`], {
        timeout: 300_000,
      });
      return await this.import(reference, join(staging, "oci"));
    } catch (error) {
      throw new Error(
        `image '${reference}' is not in the local image store and could not be pulled: ${(error as Error).message.split("\n")[0]}`,
      );
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
}

/** The OCI layout directory `file` is or holds, or undefined when it is a plain tarball. */
async function ociLayout(file: string, staging: string): Promise<string | undefined> {
  if (existsSync(join(file, "oci-layout"))) return file;
  const listing = await run("tar", ["-tf", file], { maxBuffer: 64 * 1024 * 1024 }).catch(
    () => undefined,
  );
  if (!listing?.stdout.split("\n").some((entry) => entry.replace(/^\.\//, "") === "oci-layout"))
    return undefined;
  const dir = join(staging, "oci");
  mkdirSync(dir);
  await run("tar", ["-xf", file, "-C", dir]);
  return dir;
}

async function onlyTag(layout: string): Promise<string> {
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as {
    manifests?: { annotations?: Record<string, string> }[];
  };
  const tags = (index.manifests ?? [])
    .map((m) => m.annotations?.["org.opencontainers.image.ref.name"])
    .filter(Boolean);
  if (tags.length === 0)
    throw new Error("the OCI layout names no image (no org.opencontainers.image.ref.name)");
  return tags[0] as string;
}
