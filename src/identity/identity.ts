import * as z from "zod";
import { type AppError, notFound, permissionDenied } from "../errors.js";

import { ROLES, type Role } from "./roles.js";

export { ROLES, type Role };

/** Who is calling: a user (through an API token) or a runner agent (through a runner token). */
export type Principal =
  | {
      kind: "user";
      organizationId: string;
      userId: string;
      role: Role;
      platformAdmin: boolean;
      tokenId: string;
    }
  | { kind: "runner"; organizationId: string; runnerId: string; tokenId: string };

export type UserPrincipal = Extract<Principal, { kind: "user" }>;

export interface Organization {
  organizationId: string;
  displayName: string;
  maxCpu: string;
  maxMemory: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface User {
  organizationId: string;
  userId: string;
  role: Role;
  platformAdmin: boolean;
  createdAt: Date;
}

export interface TokenInfo {
  tokenId: string;
  createdAt: Date;
  lastUsedAt: Date | null;
}

export const OrganizationWireSchema = z
  .strictObject({
    organizationId: z.string(),
    displayName: z.string(),
    maxCpu: z.string(),
    maxMemory: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: "Organization" });

export const UserWireSchema = z
  .strictObject({
    organizationId: z.string(),
    userId: z.string(),
    role: z.enum(ROLES),
    platformAdmin: z.boolean(),
    createdAt: z.string(),
  })
  .meta({ id: "User" });

export const TokenInfoWireSchema = z
  .strictObject({ tokenId: z.string(), createdAt: z.string(), lastUsedAt: z.string().nullable() })
  .meta({ id: "TokenInfo" });

export const CreateOrganizationRequestSchema = z
  .strictObject({ organizationId: z.string(), displayName: z.string().optional() })
  .meta({ id: "CreateOrganizationRequest" });

export const UpdateOrganizationRequestSchema = z
  .strictObject({
    organization: z.strictObject({
      organizationId: z.string().optional(),
      displayName: z.string().optional(),
      maxCpu: z.string().optional(),
      maxMemory: z.string().optional(),
      createdAt: z.string().optional(),
      updatedAt: z.string().optional(),
    }),
  })
  .meta({ id: "UpdateOrganizationRequest" });

export const CreateUserRequestSchema = z
  .strictObject({ userId: z.string(), role: z.enum(ROLES) })
  .meta({ id: "CreateUserRequest" });

export function toWireOrganization(o: Organization): z.infer<typeof OrganizationWireSchema> {
  return {
    organizationId: o.organizationId,
    displayName: o.displayName,
    maxCpu: o.maxCpu,
    maxMemory: o.maxMemory,
    createdAt: o.createdAt.toISOString(),
    updatedAt: o.updatedAt.toISOString(),
  };
}

export function toWireUser(u: User): z.infer<typeof UserWireSchema> {
  return {
    organizationId: u.organizationId,
    userId: u.userId,
    role: u.role,
    platformAdmin: u.platformAdmin,
    createdAt: u.createdAt.toISOString(),
  };
}

export function toWireTokenInfo(t: TokenInfo): z.infer<typeof TokenInfoWireSchema> {
  return {
    tokenId: t.tokenId,
    createdAt: t.createdAt.toISOString(),
    lastUsedAt: t.lastUsedAt ? t.lastUsedAt.toISOString() : null,
  };
}

// Access rules, pure. Another tenant's objects answer NOT_FOUND, never 403,
// so that ids of other organizations cannot be probed.

export function requireUser(p: Principal): UserPrincipal {
  if (p.kind !== "user") throw permissionDenied("runner tokens may only be used by a runner agent");
  return p;
}

export function requirePlatformAdmin(p: Principal): UserPrincipal {
  const user = requireUser(p);
  if (!user.platformAdmin) throw permissionDenied("managing organizations needs a platform admin");
  return user;
}

/** Writing profiles and runners needs SANDBOX_ADMIN in the caller's organization. */
export function requireSandboxAdmin(p: Principal): UserPrincipal {
  const user = requireUser(p);
  if (user.role !== "SANDBOX_ADMIN") {
    throw permissionDenied(
      `this call needs role SANDBOX_ADMIN; user '${user.userId}' has ${user.role}`,
    );
  }
  return user;
}

/** Managing an organization's users: a platform admin, or a SANDBOX_ADMIN of that organization. */
export function requireOrgAdmin(p: Principal, organizationId: string): UserPrincipal {
  const user = requireUser(p);
  if (user.platformAdmin) return user;
  if (user.organizationId !== organizationId) throw orgNotFound(organizationId);
  return requireSandboxAdmin(user);
}

/** Managing a user's tokens: an admin as above, or that user for their own tokens. */
export function requireTokenManager(
  p: Principal,
  organizationId: string,
  userId: string,
): UserPrincipal {
  const user = requireUser(p);
  if (!user.platformAdmin && user.organizationId === organizationId && user.userId === userId)
    return user;
  return requireOrgAdmin(user, organizationId);
}

export function orgNotFound(id: string): AppError {
  return notFound("organization", id, "ORGANIZATION_NOT_FOUND");
}

export function userNotFound(organizationId: string, userId: string): AppError {
  return notFound("user", `${organizationId}/${userId}`, "USER_NOT_FOUND");
}
