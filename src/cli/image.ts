import type { Command } from "commander";
import { CliError } from "./context.js";

/** Local image store commands: they act on this host's store directly (as root), not through the API. */
export function registerImageCommands(program: Command): void {
  const image = program.command("image").description("The local runner's image store on this host");
  const storeRoot = () => process.env.PADDOCK_IMAGE_ROOT || undefined;
  image
    .command("import")
    .description(
      "Import NAME:TAG from an OCI image layout (directory or tarball) or a root filesystem tarball",
    )
    .argument("<reference>", "name:tag sandboxes will use as containerImage")
    .argument("<file>", "OCI layout or rootfs tarball (.tar, .tar.gz)")
    .action(async (reference: string, file: string) => {
      const { ImageStore } = await import("../backends/local/images.js");
      try {
        const dir = await new ImageStore(storeRoot()).import(reference, file);
        process.stdout.write(`imported ${reference} into ${dir}\n`);
      } catch (error) {
        throw new CliError((error as Error).message);
      }
    });
  image
    .command("ls")
    .description("List imported images")
    .action(async () => {
      const { ImageStore } = await import("../backends/local/images.js");
      for (const name of new ImageStore(storeRoot()).list()) process.stdout.write(`${name}\n`);
    });
}
