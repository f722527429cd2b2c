import { type Clock, systemClock } from "../clock.js";
import { AppError, type FieldViolation, invalidArgument, invalidField } from "../errors.js";
import { resourceIdProblem } from "../resources/names.js";
import { isQuantity } from "../resources/quantity.js";
import { type Db, PG_UNIQUE_VIOLATION, pgErrorCode } from "../store/database.js";
import { type PageRequest, readPage } from "../store/paging.js";
import {
  type Organization,
  orgNotFound,
  type Principal,
  type Role,
  requireOrgAdmin,
  requirePlatformAdmin,
  requireTokenManager,
  type TokenInfo,
  type User,
  userNotFound,
} from "./identity.js";
import { IdentityRepo } from "./identity-repo.js";
import { hashToken, newTokenId, newTokenSecret } from "./tokens.js";

/** last_used_at is written at most this often per token, to keep writes off every request. */
const TOUCH_INTERVAL_MS = 60_000;

export class IdentityService {
  private readonly repo: IdentityRepo;
  private readonly lastTouched = new Map<string, number>();

  constructor(
    db: Db,
    private readonly clock: Clock = systemClock,
  ) {
    this.repo = new IdentityRepo(db);
  }

  /** Resolves a bearer secret to its principal; unknown or revoked secrets resolve to nothing. */
  async authenticate(secret: string): Promise<Principal | undefined> {
    const principal = await this.repo.principalForTokenHash(hashToken(secret));
    if (principal) {
      const now = this.clock.now();
      const last = this.lastTouched.get(principal.tokenId) ?? 0;
      if (now.getTime() - last >= TOUCH_INTERVAL_MS) {
        this.lastTouched.set(principal.tokenId, now.getTime());
        await this.repo.touchToken(principal.tokenId, now);
      }
    }
    return principal;
  }

  async createOrganization(
    p: Principal,
    input: { organizationId: string; displayName?: string | undefined },
  ): Promise<Organization> {
    requirePlatformAdmin(p);
    const problem = resourceIdProblem(input.organizationId);
    if (problem) throw invalidField("organizationId", problem);
    const now = this.clock.now();
    const org: Organization = {
      organizationId: input.organizationId,
      displayName: input.displayName || input.organizationId,
      maxCpu: "",
      maxMemory: "",
      createdAt: now,
      updatedAt: now,
    };
    try {
      await this.repo.insertOrganization(org);
    } catch (error) {
      if (pgErrorCode(error) === PG_UNIQUE_VIOLATION) {
        throw new AppError(
          "ALREADY_EXISTS",
          `organization '${org.organizationId}' already exists`,
          {
            reason: "ORGANIZATION_EXISTS",
          },
        );
      }
      throw error;
    }
    return org;
  }

  async getOrganization(p: Principal, id: string): Promise<Organization> {
    requireOrgAdminOrMember(p, id);
    const org = await this.repo.getOrganization(id);
    if (!org) throw orgNotFound(id);
    return org;
  }

  async listOrganizations(p: Principal, page: PageRequest) {
    requirePlatformAdmin(p);
    return this.repo.listOrganizations(readPage(page));
  }

  async updateOrganization(
    p: Principal,
    id: string,
    patch: {
      organizationId?: string | undefined;
      displayName?: string | undefined;
      maxCpu?: string | undefined;
      maxMemory?: string | undefined;
    },
  ): Promise<Organization> {
    requirePlatformAdmin(p);
    const org = await this.repo.getOrganization(id);
    if (!org) throw orgNotFound(id);
    const violations: FieldViolation[] = [];
    if (patch.organizationId && patch.organizationId !== id) {
      violations.push({
        field: "organization.organizationId",
        description: `must be omitted or equal the id in the path (${id}), found ${patch.organizationId}`,
      });
    }
    for (const key of ["maxCpu", "maxMemory"] as const) {
      const value = patch[key];
      if (value !== undefined && value !== "" && !isQuantity(value)) {
        violations.push({
          field: `organization.${key}`,
          description: `must be a Kubernetes quantity such as 8 or 32Gi (empty for no ceiling), found ${JSON.stringify(value)}`,
        });
      }
    }
    if (violations.length > 0) throw invalidArgument(violations);
    const updated: Organization = {
      ...org,
      displayName: patch.displayName ?? org.displayName,
      maxCpu: patch.maxCpu ?? org.maxCpu,
      maxMemory: patch.maxMemory ?? org.maxMemory,
      updatedAt: this.clock.now(),
    };
    await this.repo.updateOrganization(updated);
    return updated;
  }

  async createUser(
    p: Principal,
    organizationId: string,
    input: { userId: string; role: Role },
  ): Promise<{ user: User; token: string }> {
    requireOrgAdmin(p, organizationId);
    const problem = resourceIdProblem(input.userId);
    if (problem) throw invalidField("userId", problem);
    if (!(await this.repo.getOrganization(organizationId))) throw orgNotFound(organizationId);
    const user: User = {
      organizationId,
      userId: input.userId,
      role: input.role,
      platformAdmin: false,
      createdAt: this.clock.now(),
    };
    try {
      await this.repo.insertUser(user);
    } catch (error) {
      if (pgErrorCode(error) === PG_UNIQUE_VIOLATION) {
        throw new AppError(
          "ALREADY_EXISTS",
          `user '${input.userId}' already exists in organization '${organizationId}'`,
          {
            reason: "USER_EXISTS",
          },
        );
      }
      throw error;
    }
    const { token } = await this.issueUserToken(organizationId, input.userId);
    return { user, token };
  }

  async listUsers(p: Principal, organizationId: string, page: PageRequest) {
    requireOrgAdmin(p, organizationId);
    if (!(await this.repo.getOrganization(organizationId))) throw orgNotFound(organizationId);
    return this.repo.listUsers(organizationId, readPage(page));
  }

  async createToken(
    p: Principal,
    organizationId: string,
    userId: string,
  ): Promise<{ tokenId: string; token: string }> {
    requireTokenManager(p, organizationId, userId);
    if (!(await this.repo.getUser(organizationId, userId)))
      throw userNotFound(organizationId, userId);
    return this.issueUserToken(organizationId, userId);
  }

  async listTokens(p: Principal, organizationId: string, userId: string): Promise<TokenInfo[]> {
    requireTokenManager(p, organizationId, userId);
    if (!(await this.repo.getUser(organizationId, userId)))
      throw userNotFound(organizationId, userId);
    return this.repo.listUserTokens(organizationId, userId);
  }

  async revokeToken(
    p: Principal,
    organizationId: string,
    userId: string,
    tokenId: string,
  ): Promise<void> {
    requireTokenManager(p, organizationId, userId);
    if (!(await this.repo.deleteUserToken(organizationId, userId, tokenId))) {
      throw new AppError(
        "NOT_FOUND",
        `token '${tokenId}' of user '${organizationId}/${userId}' not found`,
        {
          reason: "TOKEN_NOT_FOUND",
        },
      );
    }
    this.lastTouched.delete(tokenId);
  }

  /** Issues a user token; `secret` lets the bootstrap honour PADDOCK_BOOTSTRAP_TOKEN. */
  async issueUserToken(
    organizationId: string,
    userId: string,
    secret = newTokenSecret(),
  ): Promise<{ tokenId: string; token: string }> {
    const tokenId = newTokenId();
    await this.repo.insertToken({
      tokenId,
      tokenHash: hashToken(secret),
      organizationId,
      userId,
      createdAt: this.clock.now(),
    });
    return { tokenId, token: secret };
  }

  async issueRunnerToken(
    organizationId: string,
    runnerId: string,
  ): Promise<{ tokenId: string; token: string }> {
    const secret = newTokenSecret();
    const tokenId = newTokenId();
    await this.repo.insertToken({
      tokenId,
      tokenHash: hashToken(secret),
      organizationId,
      runnerId,
      createdAt: this.clock.now(),
    });
    return { tokenId, token: secret };
  }

  get store(): IdentityRepo {
    return this.repo;
  }
}

/** Members may read their own organization; platform admins may read any. */
function requireOrgAdminOrMember(p: Principal, organizationId: string): void {
  if (p.kind === "user" && p.platformAdmin) return;
  if (p.organizationId !== organizationId) throw orgNotFound(organizationId);
}
