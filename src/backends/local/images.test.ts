import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../../test/support/app.js";
import { runCli, tempDir } from "../../../test/support/process.js";
import { parseReference, storeKey } from "./images.js";

describe("image references", () => {
  it.each([
    ["busybox", { name: "busybox", tag: "latest" }],
    ["busybox:1.36", { name: "busybox", tag: "1.36" }],
    ["ghcr.io/org/app:v2", { name: "ghcr.io/org/app", tag: "v2" }],
    ["localhost:5000/app", { name: "localhost:5000/app", tag: "latest" }],
  ])("%s", (reference, expected) => {
    expect(parseReference(reference)).toEqual(expected);
  });
  it("refuses what is not a reference", () => {
    expect(parseReference("Not An Image")).toBeUndefined();
    expect(() => storeKey("UPPER:case")).toThrow(/not an image reference/);
  });
});

/** Images from a local store: a busybox root filesystem built here from Debian's busybox-static. */
describe("local backend images", () => {
  let t: TestApp;
  const imageRoot = tempDir("paddock-images-");
  const previous = process.env.PADDOCK_IMAGE_ROOT;

  beforeAll(async () => {
    const rootfs = tempDir("busybox-rootfs-");
    mkdirSync(join(rootfs, "bin"));
    copyFileSync("/usr/bin/busybox", join(rootfs, "bin", "busybox"));
    for (const applet of ["sh", "echo", "cat", "ls", "id", "sleep"])
      symlinkSync("busybox", join(rootfs, "bin", applet));
    mkdirSync(join(rootfs, "etc"));
    writeFileSync(join(rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    writeFileSync(join(rootfs, "etc", "image-marker"), "from the busybox image\n");
    const tarball = join(tempDir(), "busybox.tar");
    execFileSync("tar", ["-C", rootfs, "-cf", tarball, "."]);
    const imported = await runCli(["image", "import", "busybox:test", tarball], {
      env: { PADDOCK_IMAGE_ROOT: imageRoot },
    });
    expect(imported.code, imported.stderr).toBe(0);
    process.env.PADDOCK_IMAGE_ROOT = imageRoot;
    t = await startTestApp({ kind: "memory" }, { localRunner: true });
  });
  afterAll(async () => {
    await t?.close();
    if (previous === undefined) delete process.env.PADDOCK_IMAGE_ROOT;
    else process.env.PADDOCK_IMAGE_ROOT = previous;
  });

  it("lists imported images", async () => {
    const listed = await runCli(["image", "ls"], { env: { PADDOCK_IMAGE_ROOT: imageRoot } });
    expect(listed.stdout).toContain("busybox:test");
  });

  it("runs a sandbox from an imported image: its files, not the host's", async () => {
    const s = await t.call("POST", "/v1beta2/sandboxes?wait=true", {
      containerImage: "busybox:test",
    });
    expect(s.body.sandboxStatus, JSON.stringify(s.body)).toBe("SANDBOX_STATUS_RUNNING");
    expect(s.body.containerImage).toBe("busybox:test");
    const exec = await t.call("POST", `/v1beta2/sandboxes/${s.body.sandboxId}/exec`, {
      command: [
        "sh",
        "-c",
        "cat /etc/image-marker; ls /usr 2>&1 | head -1; echo data > /tmp/x && cat /tmp/x; touch /bin/new 2>&1 | head -1",
      ],
    });
    const out = Buffer.from(exec.body.stdout, "base64").toString();
    expect(out).toContain("from the busybox image");
    expect(out).toContain("No such file or directory"); // no host /usr in here
    expect(out).toContain("data");
    expect(out).toMatch(/Read-only file system/);
  });

  it("fails a sandbox whose image is missing, naming the image", async () => {
    const s = await t.call("POST", "/v1beta2/sandboxes?wait=true", {
      containerImage: "registry.invalid/nope:1",
    });
    expect(s.body.sandboxStatus).toBe("SANDBOX_STATUS_FAILED");
    expect(s.body.statusReason).toContain("registry.invalid/nope:1");
  });
});
