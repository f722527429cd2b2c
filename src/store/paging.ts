import { invalidField } from "../errors.js";

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;

export interface PageRequest {
  pageSize?: number | undefined;
  pageToken?: string | undefined;
}

export interface Page {
  limit: number;
  /** Sort key of the last row already returned, or undefined for the first page. */
  after: string[] | undefined;
}

/** Reads `pageSize`/`pageToken`; the token is the opaque, base64url-encoded sort key of the last row. */
export function readPage(request: PageRequest): Page {
  const size = request.pageSize ?? 0;
  if (!Number.isInteger(size) || size < 0) {
    throw invalidField(
      "pageSize",
      `must be a whole number from 0 to ${MAX_PAGE_SIZE}, found ${size}`,
    );
  }
  const limit = size === 0 ? DEFAULT_PAGE_SIZE : Math.min(size, MAX_PAGE_SIZE);
  if (!request.pageToken) return { limit, after: undefined };
  try {
    const after = JSON.parse(
      Buffer.from(request.pageToken, "base64url").toString("utf8"),
    ) as unknown;
    if (Array.isArray(after) && after.every((k) => typeof k === "string")) return { limit, after };
  } catch {
    // fall through to the error below
  }
  throw invalidField("pageToken", "is not a token returned by a previous list call");
}

/** Given limit+1 fetched rows, returns the page and the token for the next one. */
export function finishPage<T>(
  rows: T[],
  page: Page,
  keyOf: (row: T) => string[],
): { items: T[]; nextPageToken: string } {
  if (rows.length <= page.limit) return { items: rows, nextPageToken: "" };
  const items = rows.slice(0, page.limit);
  const last = items[items.length - 1] as T;
  return { items, nextPageToken: Buffer.from(JSON.stringify(keyOf(last))).toString("base64url") };
}
