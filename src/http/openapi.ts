import * as z from "zod";
import type { Route } from "./route.js";

const DEFS = "#/$defs/";
const COMPONENTS = "#/components/schemas/";

/**
 * The OpenAPI 3.1 document, generated from the same zod schemas that
 * validate requests. Named schemas (`.meta({id})`) become components.
 */
export function openApiDocument(routes: Route[], version: string): Record<string, unknown> {
  const components: Record<string, unknown> = {};
  const convert = (schema: z.ZodType, io: "input" | "output") => {
    const json = z.toJSONSchema(schema, { io, reused: "inline", unrepresentable: "any" }) as Record<
      string,
      unknown
    >;
    const defs = (json.$defs ?? {}) as Record<string, unknown>;
    delete json.$defs;
    delete json.$schema;
    for (const [id, def] of Object.entries(defs)) components[id] ??= rewriteRefs(def);
    return rewriteRefs(json);
  };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const parameters = [
      ...[...route.path.matchAll(/\{(\w+)\}/g)].map((m) => ({
        name: m[1],
        in: "path",
        required: true,
        schema: { type: "string" },
      })),
      ...Object.entries(route.queryParams ?? {}).map(([name, description]) => ({
        name,
        in: "query",
        required: false,
        description,
        schema: { type: "string" },
      })),
    ];
    const operation: Record<string, unknown> = {
      summary: route.summary,
      tags: [route.tag],
      parameters,
      responses: {
        "200": {
          description: "OK",
          content: { "application/json": { schema: convert(route.response, "output") } },
        },
        default: {
          description: "google.rpc.Status",
          content: { "application/json": { schema: { $ref: `${COMPONENTS}Status` } } },
        },
      },
    };
    if (route.public) operation.security = [];
    if (route.request) {
      operation.requestBody = {
        required: true,
        content: { "application/json": { schema: convert(route.request, "input") } },
      };
    }
    paths[route.path] ??= {};
    (paths[route.path] as Record<string, unknown>)[route.method] = operation;
  }
  components.Status = {
    type: "object",
    description: "google.rpc.Status; details hold google.rpc.ErrorInfo and google.rpc.BadRequest",
    properties: {
      code: { type: "integer" },
      message: { type: "string" },
      details: { type: "array", items: { type: "object" } },
    },
    required: ["code", "message", "details"],
  };
  return {
    openapi: "3.1.0",
    info: {
      title: "Paddock API",
      version,
      description:
        "CoreWeave Sandboxes v1beta2 wire format. Request field names are accepted in lowerCamelCase and snake_case; answers use lowerCamelCase.",
    },
    components: {
      schemas: components,
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
    },
    security: [{ bearer: [] }],
    paths,
  };
}

function rewriteRefs<T>(value: T): T {
  return JSON.parse(JSON.stringify(value).replaceAll(`"${DEFS}`, `"${COMPONENTS}`)) as T;
}
