import { randomUUID } from "node:crypto";
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Clock } from "./clock.js";
import { IdentityRepo } from "./identity/identity-repo.js";
import { hashToken, newTokenId, newTokenSecret } from "./identity/tokens.js";
import { parseProfileTemplate } from "./profiles/profile.js";
import { ProfileRepo } from "./profiles/profile-repo.js";
import { RunnerRepo } from "./runners/runner-repo.js";
import { type Db, PG_UNIQUE_VIOLATION, pgErrorCode } from "./store/database.js";

export const DEFAULT_ORG = "default";
export const ADMIN_USER = "admin";
export const LOCAL_RUNNER = "local";
export const STARTER_PROFILE = "default";

/** The starter profile: small, no network unless asked for, so that a first sandbox starts at once. */
export const STARTER_PROFILE_BODY = {
  displayName: STARTER_PROFILE,
  description: "Starter profile: modest resources, no egress by default (internet on request)",
  labels: {},
  spec: {
    resourceDefaults: {
      cpuRequest: "250m",
      memoryRequest: "256Mi",
      cpuLimit: "1",
      memoryLimit: "1Gi",
    },
    network: {
      egress: {
        default: "none",
        modes: { none: { type: "none" }, internet: { type: "internet" } },
      },
    },
  },
};

export interface BootstrapOptions {
  localRunner: boolean;
  /** PADDOCK_BOOTSTRAP_TOKEN: becomes the admin token verbatim. */
  bootstrapToken: string | undefined;
  dataDir: string;
  clock: Clock;
}

export interface BootstrapResult {
  created: boolean;
  tokenFile?: string;
}

/**
 * First start on an empty store: organization `default`, platform admin
 * `admin` with a token, runner `local` and the starter profile as its
 * default binding. All or nothing, in one transaction; a concurrent replica
 * doing the same loses the race harmlessly.
 */
export async function bootstrap(db: Db, options: BootstrapOptions): Promise<BootstrapResult> {
  if ((await new IdentityRepo(db).countOrganizations()) > 0) return { created: false };
  const token = options.bootstrapToken || newTokenSecret();
  const tokenFile = join(options.dataDir, "admin.token");
  let wroteToken = false;
  const now = options.clock.now();
  try {
    await db.transaction().execute(async (trx) => {
      const identity = new IdentityRepo(trx);
      await identity.insertOrganization({
        organizationId: DEFAULT_ORG,
        displayName: "Default",
        maxCpu: "",
        maxMemory: "",
        createdAt: now,
        updatedAt: now,
      });
      await identity.insertUser({
        organizationId: DEFAULT_ORG,
        userId: ADMIN_USER,
        role: "SANDBOX_ADMIN",
        platformAdmin: true,
        createdAt: now,
      });
      await identity.insertToken({
        tokenId: newTokenId(),
        tokenHash: hashToken(token),
        organizationId: DEFAULT_ORG,
        userId: ADMIN_USER,
        createdAt: now,
      });
      const profile = {
        id: randomUUID(),
        organizationId: DEFAULT_ORG,
        ...parseProfileTemplate(STARTER_PROFILE_BODY, { kind: "create" }),
        createdAt: now,
        updatedAt: now,
      };
      await new ProfileRepo(trx).insert(profile);
      if (options.localRunner) {
        await new RunnerRepo(trx).insert({
          organizationId: DEFAULT_ORG,
          runnerId: LOCAL_RUNNER,
          displayName: "Local runner (embedded)",
          zone: "local",
          clusterId: "",
          releaseChannel: "RELEASE_CHANNEL_STABLE",
          bindings: [
            {
              profileTemplateId: profile.id,
              profileName: "",
              isDefault: true,
              overridesJson: "",
              overrides: {},
            },
          ],
          zoneDefaults: {},
          connectionStatus: "DISCONNECTED",
          lastHeartbeatAt: null,
          backend: "",
          agentVersion: "",
          createdAt: now,
          updatedAt: now,
        });
      }
      // Written before the commit: a store whose admin token nobody knows is
      // worse than a stale file, which the catch below removes.
      writeTokenFile(tokenFile, token);
      wroteToken = true;
    });
  } catch (error) {
    if (wroteToken) rmSync(tokenFile, { force: true });
    if (pgErrorCode(error) === PG_UNIQUE_VIOLATION) return { created: false };
    throw error;
  }
  return { created: true, tokenFile };
}

function writeTokenFile(path: string, token: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, `${token}\n`, { mode: 0o600 });
    renameSync(temporary, path);
  } finally {
    rmSync(temporary, { force: true });
  }
}
