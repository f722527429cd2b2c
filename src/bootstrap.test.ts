import { mkdirSync, readFileSync, rmdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "../test/support/process.js";
import { bootstrap } from "./bootstrap.js";
import { systemClock } from "./clock.js";
import { IdentityRepo } from "./identity/identity-repo.js";
import { hashToken } from "./identity/tokens.js";
import { ProfileRepo } from "./profiles/profile-repo.js";
import { RunnerRepo } from "./runners/runner-repo.js";
import { type OpenedStore, openStore } from "./store/database.js";

describe("bootstrap", () => {
  let store: OpenedStore;
  let dataDir: string;
  beforeEach(async () => {
    store = await openStore({ kind: "memory" });
    dataDir = tempDir();
  });
  afterEach(() => store.close());
  const run = (bootstrapToken?: string, localRunner = true) =>
    bootstrap(store.db, { localRunner, bootstrapToken, dataDir, clock: systemClock });

  it("creates org default, platform admin, runner local and the starter profile as its default binding", async () => {
    const result = await run("pdk_given");
    expect(result.created).toBe(true);
    const tokenFile = join(dataDir, "admin.token");
    expect(readFileSync(tokenFile, "utf8").trim()).toBe("pdk_given");
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const principal = await new IdentityRepo(store.db).principalForTokenHash(
      hashToken("pdk_given"),
    );
    expect(principal).toMatchObject({
      kind: "user",
      organizationId: "default",
      userId: "admin",
      role: "SANDBOX_ADMIN",
      platformAdmin: true,
    });
    const profile = await new ProfileRepo(store.db).getByDisplayName("default", "default");
    const runner = await new RunnerRepo(store.db).get("default", "local");
    expect(runner?.bindings).toEqual([
      expect.objectContaining({ profileTemplateId: profile?.id, isDefault: true }),
    ]);
  });

  it("runs once: a second start changes nothing", async () => {
    await run("pdk_first");
    expect((await run("pdk_second")).created).toBe(false);
    expect(readFileSync(join(dataDir, "admin.token"), "utf8").trim()).toBe("pdk_first");
  });

  it("makes a random token when none is given, and no runner with the local runner off", async () => {
    await run(undefined, false);
    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    expect(token).toMatch(/^pdk_[A-Za-z0-9_-]{43}$/);
    expect(await new RunnerRepo(store.db).get("default", "local")).toBeUndefined();
  });

  it("commits nothing when the token file cannot be written, so the next start bootstraps", async () => {
    mkdirSync(join(dataDir, "admin.token"));
    await expect(run("pdk_lost")).rejects.toThrow(/EISDIR/);
    expect(await new IdentityRepo(store.db).countOrganizations()).toBe(0);
    rmdirSync(join(dataDir, "admin.token"));
    expect((await run("pdk_found")).created).toBe(true);
    expect(readFileSync(join(dataDir, "admin.token"), "utf8").trim()).toBe("pdk_found");
  });
});
