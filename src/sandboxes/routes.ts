import { stream } from "hono/streaming";
import * as z from "zod";
import { invalidField } from "../errors.js";
import { PAGE_PARAMS, pageQuery, type Route } from "../http/route.js";
import { SandboxWireSchema, StartSandboxRequestSchema, toWireSandbox } from "./sandbox.js";
import {
  AddFileRequestSchema,
  ExecRequestSchema,
  ExecResponseSchema,
  type SandboxService,
  StopRequestSchema,
} from "./sandbox-service.js";

const BASE = "/v1beta2/sandboxes";

/** A true/false query parameter; `absent` when it is not given at all. */
function flag(query: URLSearchParams, name: string, absent = false): boolean {
  const value = query.get(name);
  if (value === null) return absent;
  if (value === "" || value === "false" || value === "0") return false;
  if (value === "true" || value === "1") return true;
  throw invalidField(name, `must be true or false, found ${JSON.stringify(value)}`);
}

export function sandboxRoutes(sandboxes: SandboxService): Route[] {
  return [
    {
      method: "post",
      path: BASE,
      tag: "sandboxes",
      summary: "Start a sandbox (?wait=true answers once it runs or has failed)",
      queryParams: { wait: "Answer once the sandbox is RUNNING or has failed." },
      request: StartSandboxRequestSchema,
      response: SandboxWireSchema,
      async handle(ctx) {
        return toWireSandbox(
          await sandboxes.start(ctx.principal, await ctx.body(), flag(ctx.query, "wait")),
        );
      },
    },
    {
      method: "get",
      path: BASE,
      tag: "sandboxes",
      summary: "List sandboxes (a SANDBOX_USER sees their own)",
      queryParams: {
        ...PAGE_PARAMS,
        status: "Only this status.",
        tags: "Only sandboxes with all these tags.",
        runnerId: "Only this runner's.",
      },
      response: z.strictObject({
        sandboxes: z.array(SandboxWireSchema),
        nextPageToken: z.string(),
      }),
      async handle(ctx) {
        const page = await sandboxes.list(ctx.principal, ctx.query, pageQuery(ctx.query));
        return { sandboxes: page.items.map(toWireSandbox), nextPageToken: page.nextPageToken };
      },
    },
    {
      method: "get",
      path: `${BASE}/{id}`,
      tag: "sandboxes",
      summary: "Get a sandbox",
      response: SandboxWireSchema,
      async handle(ctx) {
        return toWireSandbox(await sandboxes.get(ctx.principal, ctx.params.id ?? ""));
      },
    },
    {
      method: "post",
      path: `${BASE}/{id}/stop`,
      tag: "sandboxes",
      summary: "Stop a sandbox: SIGTERM, then SIGKILL after gracefulShutdownSeconds",
      request: StopRequestSchema,
      response: SandboxWireSchema,
      async handle(ctx) {
        return toWireSandbox(
          await sandboxes.stop(ctx.principal, ctx.params.id ?? "", await ctx.body()),
        );
      },
    },
    {
      method: "delete",
      path: `${BASE}/{id}`,
      tag: "sandboxes",
      summary: "Delete a sandbox (stopping it first if needed)",
      queryParams: {
        wait: "Answer once the runner has removed it (the default), or with false once the deletion is recorded.",
      },
      response: z.strictObject({}),
      async handle(ctx) {
        await sandboxes.delete(ctx.principal, ctx.params.id ?? "", flag(ctx.query, "wait", true));
        return {};
      },
    },
    {
      method: "post",
      path: `${BASE}/{id}/exec`,
      tag: "sandboxes",
      summary: "Run a command in a running sandbox and answer with its output",
      request: ExecRequestSchema,
      response: ExecResponseSchema,
      async handle(ctx) {
        return sandboxes.exec(ctx.principal, ctx.params.id ?? "", await ctx.body());
      },
    },
    {
      method: "post",
      path: `${BASE}/{id}/files`,
      tag: "sandboxes",
      summary: "Write a file (base64 content, at most 32 MiB)",
      request: AddFileRequestSchema,
      response: z.strictObject({}),
      async handle(ctx) {
        await sandboxes.writeFile(ctx.principal, ctx.params.id ?? "", await ctx.body());
        return {};
      },
    },
    {
      method: "get",
      path: `${BASE}/{id}/files/{path}`,
      tag: "sandboxes",
      summary: "Read a file: the raw bytes; {path} is the absolute path without its leading /",
      greedyLastParam: true,
      response: z.string(),
      async handle(ctx) {
        const prefix = `${BASE}/${ctx.params.id}/files/`;
        const raw = new URL(ctx.hono.req.url).pathname;
        const encoded = raw.slice(raw.indexOf(prefix) + prefix.length);
        let path: string;
        try {
          path = `/${encoded.split("/").map(decodeURIComponent).join("/")}`;
        } catch {
          throw invalidField(
            "path",
            `must be URL path segments with valid percent-encoding, found ${JSON.stringify(encoded)}`,
          );
        }
        const content = await sandboxes.readFile(ctx.principal, ctx.params.id ?? "", path);
        return new Response(content, {
          status: 200,
          headers: { "content-type": "application/octet-stream" },
        });
      },
    },
    {
      method: "get",
      path: `${BASE}/{id}/logs`,
      tag: "sandboxes",
      summary: "The main process's output; streamed while follow=true",
      queryParams: {
        follow: "Keep streaming until the sandbox ends.",
        tailLines: "Only the last N lines.",
        timestamps: "Prefix each line with its time.",
      },
      response: z.string(),
      async handle(ctx) {
        const tailText = ctx.query.get("tailLines") ?? ctx.query.get("tail_lines");
        const tailLines = tailText === null || tailText === "" ? undefined : Number(tailText);
        if (tailLines !== undefined && (!Number.isInteger(tailLines) || tailLines < 0)) {
          throw invalidField(
            "tailLines",
            `must be a whole number, found ${JSON.stringify(tailText)}`,
          );
        }
        const chunks: Buffer[] = [];
        let push: (chunk: Buffer) => void = (c) => chunks.push(c);
        const logs = await sandboxes.logs(
          ctx.principal,
          ctx.params.id ?? "",
          {
            follow: flag(ctx.query, "follow"),
            timestamps: flag(ctx.query, "timestamps"),
            tailLines,
          },
          (c) => push(c),
        );
        ctx.hono.header("content-type", "text/plain; charset=utf-8");
        return stream(ctx.hono, async (out) => {
          out.onAbort(() => logs.cancel());
          for (const c of chunks.splice(0)) await out.write(c);
          let writing = Promise.resolve();
          push = (c) => {
            writing = writing.then(() => out.write(c).then(() => undefined));
          };
          await logs.done.catch(() => undefined);
          await writing;
        });
      },
    },
  ];
}
