import * as z from "zod";
import { PAGE_PARAMS, pageQuery, type Route } from "../http/route.js";
import { parseMessage } from "../wire/proto-json.js";
import {
  CreateOrganizationRequestSchema,
  CreateUserRequestSchema,
  OrganizationWireSchema,
  TokenInfoWireSchema,
  toWireOrganization,
  toWireTokenInfo,
  toWireUser,
  UpdateOrganizationRequestSchema,
  UserWireSchema,
} from "./identity.js";
import type { IdentityService } from "./identity-service.js";

const ORGS = "/v1beta2/admin/organizations";
const USERS = `${ORGS}/{org}/users`;
const TOKENS = `${USERS}/{user}/tokens`;

export function identityRoutes(identity: IdentityService): Route[] {
  const org = z.strictObject({ organization: OrganizationWireSchema });
  return [
    {
      method: "post",
      path: ORGS,
      tag: "admin",
      summary: "Create an organization (platform admin)",
      request: CreateOrganizationRequestSchema,
      response: org,
      async handle(ctx) {
        const body = parseMessage(CreateOrganizationRequestSchema, await ctx.body());
        return {
          organization: toWireOrganization(await identity.createOrganization(ctx.principal, body)),
        };
      },
    },
    {
      method: "get",
      path: ORGS,
      tag: "admin",
      summary: "List organizations (platform admin)",
      queryParams: PAGE_PARAMS,
      response: z.strictObject({
        organizations: z.array(OrganizationWireSchema),
        nextPageToken: z.string(),
      }),
      async handle(ctx) {
        const page = await identity.listOrganizations(ctx.principal, pageQuery(ctx.query));
        return {
          organizations: page.items.map(toWireOrganization),
          nextPageToken: page.nextPageToken,
        };
      },
    },
    {
      method: "get",
      path: `${ORGS}/{org}`,
      tag: "admin",
      summary: "Get an organization (its members, or a platform admin)",
      response: org,
      async handle(ctx) {
        return {
          organization: toWireOrganization(
            await identity.getOrganization(ctx.principal, ctx.params.org ?? ""),
          ),
        };
      },
    },
    {
      method: "patch",
      path: `${ORGS}/{org}`,
      tag: "admin",
      summary: "Edit an organization: fields present replace the stored ones (platform admin)",
      request: UpdateOrganizationRequestSchema,
      response: org,
      async handle(ctx) {
        const body = parseMessage(UpdateOrganizationRequestSchema, await ctx.body());
        const updated = await identity.updateOrganization(
          ctx.principal,
          ctx.params.org ?? "",
          body.organization,
        );
        return { organization: toWireOrganization(updated) };
      },
    },
    {
      method: "post",
      path: USERS,
      tag: "admin",
      summary: "Create a user and its first API token (shown once)",
      request: CreateUserRequestSchema,
      response: z.strictObject({ user: UserWireSchema, token: z.string() }),
      async handle(ctx) {
        const body = parseMessage(CreateUserRequestSchema, await ctx.body());
        const { user, token } = await identity.createUser(
          ctx.principal,
          ctx.params.org ?? "",
          body,
        );
        return { user: toWireUser(user), token };
      },
    },
    {
      method: "get",
      path: USERS,
      tag: "admin",
      summary: "List an organization's users",
      queryParams: PAGE_PARAMS,
      response: z.strictObject({ users: z.array(UserWireSchema), nextPageToken: z.string() }),
      async handle(ctx) {
        const page = await identity.listUsers(
          ctx.principal,
          ctx.params.org ?? "",
          pageQuery(ctx.query),
        );
        return { users: page.items.map(toWireUser), nextPageToken: page.nextPageToken };
      },
    },
    {
      method: "post",
      path: TOKENS,
      tag: "admin",
      summary: "Issue another API token for a user (shown once)",
      request: z.strictObject({}),
      response: z.strictObject({ tokenId: z.string(), token: z.string() }),
      async handle(ctx) {
        parseMessage(z.strictObject({}), await ctx.body());
        return identity.createToken(ctx.principal, ctx.params.org ?? "", ctx.params.user ?? "");
      },
    },
    {
      method: "get",
      path: TOKENS,
      tag: "admin",
      summary: "List a user's tokens (ids and times, never the secret)",
      response: z.strictObject({ tokens: z.array(TokenInfoWireSchema) }),
      async handle(ctx) {
        const tokens = await identity.listTokens(
          ctx.principal,
          ctx.params.org ?? "",
          ctx.params.user ?? "",
        );
        return { tokens: tokens.map(toWireTokenInfo) };
      },
    },
    {
      method: "delete",
      path: `${TOKENS}/{tokenId}`,
      tag: "admin",
      summary: "Revoke a token, effective on the next call",
      response: z.strictObject({}),
      async handle(ctx) {
        await identity.revokeToken(
          ctx.principal,
          ctx.params.org ?? "",
          ctx.params.user ?? "",
          ctx.params.tokenId ?? "",
        );
        return {};
      },
    },
  ];
}
