import type { Context } from "hono";
import type * as z from "zod";
import type { Principal } from "../identity/identity.js";

export type HttpMethod = "get" | "post" | "patch" | "delete";

export interface RouteContext {
  /** The authenticated caller; public routes get none. */
  principal: Principal;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The request body as strict JSON (duplicate keys refused); `{}` when empty. */
  body(): Promise<unknown>;
  hono: Context;
}

/**
 * One HTTP route, as data: the app registers it and the OpenAPI document is
 * generated from the same schemas, so the two cannot drift apart.
 */
export interface Route {
  method: HttpMethod;
  /** OpenAPI-style path, `{name}` for parameters. */
  path: string;
  summary: string;
  tag: string;
  public?: boolean;
  request?: z.ZodType;
  response: z.ZodType;
  queryParams?: Record<string, string>;
  /** The last path parameter takes the rest of the path, slashes included. */
  greedyLastParam?: boolean;
  handle(ctx: RouteContext): Promise<unknown>;
}

export function pageQuery(query: URLSearchParams): { pageSize?: number; pageToken?: string } {
  const size = query.get("pageSize") ?? query.get("page_size");
  const token = query.get("pageToken") ?? query.get("page_token");
  const out: { pageSize?: number; pageToken?: string } = {};
  if (size !== null && size !== "") out.pageSize = Number(size);
  if (token !== null && token !== "") out.pageToken = token;
  return out;
}

export const PAGE_PARAMS: Record<string, string> = {
  pageSize: "Items per page (default 50, at most 1000).",
  pageToken: "nextPageToken of the previous page.",
};
