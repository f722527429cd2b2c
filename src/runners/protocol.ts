import * as z from "zod";
import { SANDBOX_STATUSES } from "../sandboxes/sandbox.js";

/**
 * The runner protocol: JSON messages over one connection that the agent
 * opens to the control plane (a WebSocket, or an in-memory pair for the
 * embedded runner). Bytes travel base64-encoded.
 */

export const ObservedSchema = z.object({
  sandboxId: z.string(),
  status: z.enum(SANDBOX_STATUSES),
  statusReason: z.string(),
  exitCode: z.number().nullable(),
  startedAtMs: z.number().nullable(),
  serviceAddress: z.string(),
  exposedPorts: z.array(z.number()),
});

export const AssignmentSchema = z.object({
  sandboxId: z.string(),
  organizationId: z.string(),
  userId: z.string(),
  profileId: z.string(),
  desired: z.enum(["running", "stopped", "deleted"]),
  gracefulShutdownSeconds: z.number(),
  spec: z.record(z.string(), z.unknown()),
  expiresAtMs: z.number(),
  /** The status the control plane has on record: a runner never restarts a sandbox that already ran. */
  recordedStatus: z.enum(SANDBOX_STATUSES),
});

export type WireAssignment = z.infer<typeof AssignmentSchema>;

const ErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  reason: z.string().optional(),
  metadata: z.record(z.string(), z.string()).optional(),
});
export type WireError = z.infer<typeof ErrorSchema>;

export const AgentMessageSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("hello"),
    backend: z.string(),
    agentVersion: z.string(),
    unavailableReason: z.string().optional(),
    observed: z.array(ObservedSchema),
  }),
  z.object({
    type: z.literal("heartbeat"),
    /** How each warm pool stands (backends that have them). */
    warmPools: z
      .array(
        z.object({
          profileId: z.string(),
          size: z.number(),
          ready: z.number(),
          hits: z.number(),
          misses: z.number(),
        }),
      )
      .optional(),
  }),
  z.object({ type: z.literal("status"), observed: ObservedSchema }),
  z.object({ type: z.literal("removed"), sandboxId: z.string() }),
  z.object({
    type: z.literal("reply"),
    id: z.number(),
    result: z.unknown().optional(),
    error: ErrorSchema.optional(),
  }),
  z.object({ type: z.literal("chunk"), id: z.number(), data: z.string() }),
]);
export type AgentMessage = z.infer<typeof AgentMessageSchema>;

export const RequestSchema = z.discriminatedUnion("op", [
  z.object({
    op: z.literal("exec"),
    sandboxId: z.string(),
    command: z.array(z.string()),
    stdin: z.string(),
    env: z.record(z.string(), z.string()),
    workingDir: z.string(),
    timeoutMs: z.number(),
    maxOutputBytes: z.number(),
  }),
  z.object({
    op: z.literal("readFile"),
    sandboxId: z.string(),
    path: z.string(),
    maxBytes: z.number(),
  }),
  z.object({
    op: z.literal("writeFile"),
    sandboxId: z.string(),
    path: z.string(),
    content: z.string(),
  }),
  z.object({
    op: z.literal("logs"),
    sandboxId: z.string(),
    follow: z.boolean(),
    tailLines: z.number().optional(),
    timestamps: z.boolean(),
  }),
  z.object({
    op: z.literal("interactive"),
    sandboxId: z.string(),
    command: z.array(z.string()),
    env: z.record(z.string(), z.string()),
    tty: z.boolean(),
  }),
]);
export type AgentRequest = z.infer<typeof RequestSchema>;

export const ControlMessageSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("sync"), assignments: z.array(AssignmentSchema) }),
  z.object({ type: z.literal("assign"), assignment: AssignmentSchema }),
  /** The warm pools this runner should keep: one per binding that asks for one. */
  z.object({
    type: z.literal("warmPools"),
    pools: z.array(
      z.object({
        profileId: z.string(),
        size: z.number(),
        spec: z.record(z.string(), z.unknown()),
      }),
    ),
  }),
  z.object({ type: z.literal("request"), id: z.number(), request: RequestSchema }),
  z.object({ type: z.literal("input"), id: z.number(), data: z.string() }),
  z.object({ type: z.literal("closeInput"), id: z.number() }),
  z.object({ type: z.literal("resize"), id: z.number(), rows: z.number(), cols: z.number() }),
  z.object({ type: z.literal("cancel"), id: z.number() }),
]);
export type ControlMessage = z.infer<typeof ControlMessageSchema>;

/** One end of a connection between the control plane and an agent. */
export interface Link<Out, In> {
  send(message: Out): void;
  onMessage(listener: (message: In) => void): void;
  onClose(listener: () => void): void;
  close(): void;
}
