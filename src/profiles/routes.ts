import * as z from "zod";
import { invalidField } from "../errors.js";
import { PAGE_PARAMS, pageQuery, type Route } from "../http/route.js";
import { isPlainObject } from "../wire/proto-json.js";
import { ProfileTemplateInputSchema, ProfileTemplateWireSchema, toWireProfile } from "./profile.js";
import type { ProfileService } from "./profile-service.js";

const BASE = "/v1beta2/sandbox/profile-templates";
const Wrapped = z.strictObject({ profileTemplate: ProfileTemplateWireSchema });

/** `{"profileTemplate": {...}}` (snake_case `profile_template` too). */
function unwrap(body: unknown): unknown {
  if (!isPlainObject(body))
    throw invalidField("profileTemplate", 'required: the body is {"profileTemplate": {...}}');
  const keys = Object.keys(body);
  const extra = keys.find((k) => k !== "profileTemplate" && k !== "profile_template");
  if (extra) throw invalidField(extra, "unknown field");
  const inner = body.profileTemplate ?? body.profile_template;
  if (inner === undefined)
    throw invalidField("profileTemplate", 'required: the body is {"profileTemplate": {...}}');
  if ("profileTemplate" in body && "profile_template" in body) {
    throw invalidField("profileTemplate", "given twice (as profileTemplate and profile_template)");
  }
  return inner;
}

export function profileRoutes(profiles: ProfileService): Route[] {
  const RequestBody = z.strictObject({ profileTemplate: ProfileTemplateInputSchema });
  return [
    {
      method: "post",
      path: BASE,
      tag: "profiles",
      summary: "Create a profile template (SANDBOX_ADMIN)",
      request: RequestBody,
      response: Wrapped,
      async handle(ctx) {
        const created = await profiles.create(ctx.principal, unwrap(await ctx.body()));
        return { profileTemplate: toWireProfile(created) };
      },
    },
    {
      method: "get",
      path: BASE,
      tag: "profiles",
      summary: "List profile templates",
      queryParams: PAGE_PARAMS,
      response: z.strictObject({
        profileTemplates: z.array(ProfileTemplateWireSchema),
        nextPageToken: z.string(),
      }),
      async handle(ctx) {
        const page = await profiles.list(ctx.principal, pageQuery(ctx.query));
        return {
          profileTemplates: page.items.map(toWireProfile),
          nextPageToken: page.nextPageToken,
        };
      },
    },
    {
      method: "get",
      path: `${BASE}/{id}`,
      tag: "profiles",
      summary: "Get a profile template by id (or display name)",
      response: Wrapped,
      async handle(ctx) {
        return {
          profileTemplate: toWireProfile(await profiles.get(ctx.principal, ctx.params.id ?? "")),
        };
      },
    },
    {
      method: "patch",
      path: `${BASE}/{id}`,
      tag: "profiles",
      summary:
        "Edit a profile template: replaces displayName, description, labels and spec (SANDBOX_ADMIN)",
      request: RequestBody,
      response: Wrapped,
      async handle(ctx) {
        const updated = await profiles.edit(
          ctx.principal,
          ctx.params.id ?? "",
          unwrap(await ctx.body()),
        );
        return { profileTemplate: toWireProfile(updated) };
      },
    },
    {
      method: "delete",
      path: `${BASE}/{id}`,
      tag: "profiles",
      summary: "Delete a profile template that no runner binds (SANDBOX_ADMIN)",
      response: z.strictObject({}),
      async handle(ctx) {
        await profiles.delete(ctx.principal, ctx.params.id ?? "");
        return {};
      },
    },
  ];
}
