import { request as httpRequest, type IncomingMessage } from "node:http";
import { buffer as readBody } from "node:stream/consumers";

/** A small HTTP client for Paddock's API, used by the CLI and by tests. */

export interface RpcStatusBody {
  code: number;
  message: string;
  details: Record<string, unknown>[];
}

export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly httpStatus: number,
    readonly status: RpcStatusBody,
  ) {
    super(status.message);
  }

  get reason(): string | undefined {
    const info = this.status.details.find((d) =>
      String(d["@type"]).endsWith("google.rpc.ErrorInfo"),
    );
    return info?.reason as string | undefined;
  }

  get fieldViolations(): { field: string; description: string }[] {
    const bad = this.status.details.find((d) =>
      String(d["@type"]).endsWith("google.rpc.BadRequest"),
    );
    return (bad?.fieldViolations as { field: string; description: string }[] | undefined) ?? [];
  }
}

export class PaddockClient {
  constructor(
    readonly server: string,
    readonly token: string | undefined,
  ) {}

  /** A JSON call: the parsed answer, or an ApiError carrying the server's google.rpc.Status. */
  async call<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<T> {
    const text = (await readBody(await this.request(method, path, body, signal))).toString("utf8");
    return (text === "" ? {} : JSON.parse(text)) as T;
  }

  get<T = Record<string, unknown>>(path: string): Promise<T> {
    return this.call<T>("GET", path);
  }
  post<T = Record<string, unknown>>(path: string, body: unknown = {}): Promise<T> {
    return this.call<T>("POST", path, body);
  }
  patch<T = Record<string, unknown>>(path: string, body: unknown): Promise<T> {
    return this.call<T>("PATCH", path, body);
  }
  delete<T = Record<string, unknown>>(path: string): Promise<T> {
    return this.call<T>("DELETE", path);
  }

  /** A raw answer (file bytes). */
  async bytes(path: string): Promise<Buffer> {
    return readBody(await this.request("GET", path));
  }

  /** A streamed answer (logs), chunk by chunk. */
  async *stream(path: string): AsyncGenerator<Buffer> {
    for await (const chunk of await this.request("GET", path)) yield chunk as Buffer;
  }

  // node:http, not fetch: loading fetch (undici) costs a CLI command about 40 ms.
  private async request(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<IncomingMessage> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const payload = body !== undefined ? Buffer.from(JSON.stringify(body)) : undefined;
    if (payload) headers["content-type"] = "application/json";
    const url = new URL(path, this.server);
    // node:https loads only for an https server (a few ms of every command otherwise).
    const requestFn =
      url.protocol === "https:" ? (await import("node:https")).request : httpRequest;
    const send = () =>
      new Promise<IncomingMessage>((resolve, reject) => {
        const request = requestFn(url, {
          method,
          headers,
          ...(signal ? { signal } : {}),
        });
        request.once("response", resolve);
        request.once("error", reject);
        request.end(payload);
      });
    let response: IncomingMessage;
    try {
      response = await send().catch((error: unknown) => {
        // A kept-alive connection the server closed as it was reused: a
        // request that may be repeated goes again, once, on a new one.
        if (!IDEMPOTENT.has(method) || errorCode(error) !== "ECONNRESET") throw error;
        return send();
      });
    } catch (error) {
      if ((error as Error).name === "AbortError") throw error;
      throw unreachable(this.server, error);
    }
    const status = response.statusCode ?? 0;
    if (status >= 200 && status < 300) return response;
    const text = (await readBody(response)).toString("utf8");
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    throw new ApiError(
      status,
      isStatus(parsed)
        ? parsed
        : { code: 2, message: `HTTP ${status}: ${text.slice(0, 200)}`, details: [] },
    );
  }
}

const IDEMPOTENT = new Set(["GET", "PUT", "DELETE"]);

function errorCode(error: unknown): string | undefined {
  const e = error as { code?: string; cause?: { code?: string } };
  return e.code ?? e.cause?.code;
}

function unreachable(server: string, error: unknown): ApiError {
  const cause = errorCode(error) ?? (error as Error).message;
  return new ApiError(0, {
    code: 14,
    message: `cannot reach the Paddock server at ${server} (${cause}); is 'paddock serve' running?`,
    details: [],
  });
}

function isStatus(value: unknown): value is RpcStatusBody {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as RpcStatusBody).message === "string"
  );
}

/** Every item of a list route, following nextPageToken to the end; `filters` are kept on every page. */
export async function listAll<T>(
  client: PaddockClient,
  path: string,
  field: string,
  filters: URLSearchParams = new URLSearchParams(),
): Promise<T[]> {
  const items: T[] = [];
  let pageToken = "";
  do {
    const query = new URLSearchParams(filters);
    query.set("pageSize", "1000");
    if (pageToken) query.set("pageToken", pageToken);
    const page = await client.get<Record<string, unknown>>(`${path}?${query}`);
    items.push(...((page[field] as T[] | undefined) ?? []));
    pageToken = (page.nextPageToken as string | undefined) ?? "";
  } while (pageToken);
  return items;
}
