import * as z from "zod";

export const SANDBOX_STATUSES = [
  "SANDBOX_STATUS_PENDING",
  "SANDBOX_STATUS_CREATING",
  "SANDBOX_STATUS_RUNNING",
  "SANDBOX_STATUS_PAUSED",
  "SANDBOX_STATUS_TERMINATING",
  "SANDBOX_STATUS_COMPLETED",
  "SANDBOX_STATUS_FAILED",
  "SANDBOX_STATUS_TERMINATED",
] as const;
export type SandboxStatus = (typeof SANDBOX_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<SandboxStatus> = new Set([
  "SANDBOX_STATUS_COMPLETED",
  "SANDBOX_STATUS_FAILED",
  "SANDBOX_STATUS_TERMINATED",
]);

export function isTerminal(status: SandboxStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

/** Default lifetime when a request names none, and the cap (CoreWeave's 30 days). */
export const DEFAULT_LIFETIME_SECONDS = 24 * 60 * 60;
export const MAX_LIFETIME_SECONDS = 30 * 24 * 60 * 60;

/** proto3 JSON: 64-bit integers may arrive as numbers or as decimal strings. */
const int64 = z.union([
  z.number().int(),
  z
    .string()
    .regex(/^-?\d+$/)
    .transform(Number),
]);
const quantities = z.strictObject({
  cpu: z.string().optional(),
  memory: z.string().optional(),
  gpu: z.string().optional(),
});

export const StartSandboxRequestSchema = z
  .strictObject({
    profileNames: z.array(z.string()).optional(),
    profileIds: z.array(z.string()).optional(),
    runnerIds: z.array(z.string()).optional(),
    containerImage: z.string().optional(),
    command: z.string().optional(),
    args: z.array(z.string()).optional(),
    environmentVariables: z.record(z.string(), z.string()).optional(),
    resources: quantities.optional(),
    resourceRequests: quantities.optional(),
    resourceLimits: quantities.optional(),
    network: z
      .strictObject({
        egressMode: z.string().optional(),
        ingressMode: z.string().optional(),
        exposedPorts: z.array(int64).optional(),
      })
      .optional(),
    ports: z
      .array(
        z.strictObject({
          containerPort: int64,
          name: z.string().optional(),
          protocol: z.string().optional(),
        }),
      )
      .optional(),
    maxLifetimeSeconds: int64.optional(),
    maxTimeoutSeconds: int64.optional(),
    tags: z.array(z.string()).optional(),
    mountedFiles: z
      .array(z.strictObject({ mountPath: z.string(), fileContent: z.string().optional() }))
      .optional(),
    podAnnotations: z.record(z.string(), z.string()).optional(),
  })
  .meta({ id: "StartSandboxRequest" });

export type StartSandboxRequest = z.output<typeof StartSandboxRequestSchema>;

/** What a runner needs to run one sandbox: the layered spec, resolved to concrete values. */
export interface LaunchSpec {
  image: string;
  runtimeClass: string;
  command: string[];
  env: Record<string, string>;
  cpuRequest: string;
  cpuLimit: string;
  memoryRequest: string;
  memoryLimit: string;
  namespace: string;
  /** How the namespace is made (Kubernetes backend). */
  namespaceConfig?: {
    strategy: string;
    autoCreate: boolean;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  };
  egress: { mode: string; type: string; cidrs: string[] } | null;
  ingress: {
    level: string;
    scope: string;
    serviceType: string;
    ports: number[];
    /** Annotations for the Service (address pool, DNS), from the level's annotation pairs. */
    serviceAnnotations?: Record<string, string>;
    /** An Ingress in front of the Service. */
    ingress?: { controllerName: string; template: string };
    expectsExternalAddress?: boolean;
  } | null;
  ports: { containerPort: number; name: string; protocol: string }[];
  mountedFiles: { mountPath: string; fileContentBase64: string }[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  nodeSelector: Record<string, string>;
  instanceTypes: string[];
  /** Partial PodSpec and pod metadata from the profile, for backends that use them. */
  pod: Record<string, unknown>;
  maxLifetimeSeconds: number;
}

export interface Sandbox {
  sandboxId: string;
  organizationId: string;
  userId: string;
  runnerId: string;
  profileId: string;
  profileName: string;
  status: SandboxStatus;
  statusReason: string;
  /** What the user asked for: the runner converges on it. */
  desired: "running" | "stopped" | "deleted";
  gracefulShutdownSeconds: number;
  spec: LaunchSpec;
  tags: string[];
  appliedEgressMode: string;
  appliedIngressMode: string;
  serviceAddress: string;
  exposedPorts: number[];
  exitCode: number | null;
  startedAt: Date | null;
  expiresAt: Date;
  createdAt: Date;
  updatedAt: Date;
}

export const SandboxWireSchema = z
  .strictObject({
    sandboxId: z.string(),
    runnerId: z.string(),
    profileId: z.string(),
    profileName: z.string(),
    namespace: z.string(),
    sandboxStatus: z.enum(SANDBOX_STATUSES),
    statusReason: z.string(),
    appliedEgressMode: z.string(),
    appliedIngressMode: z.string(),
    serviceAddress: z.string(),
    exposedPorts: z.array(z.number()),
    startedAtTime: z.string().nullable(),
    exitCode: z.number(),
    containerImage: z.string(),
    tags: z.array(z.string()),
    userId: z.string(),
    organizationId: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
    expiresAt: z.string(),
  })
  .meta({ id: "Sandbox" });

export type SandboxWire = z.infer<typeof SandboxWireSchema>;

export function toWireSandbox(s: Sandbox): SandboxWire {
  return {
    sandboxId: s.sandboxId,
    runnerId: s.runnerId,
    profileId: s.profileId,
    profileName: s.profileName,
    namespace: s.spec.namespace,
    sandboxStatus: s.status,
    statusReason: s.statusReason,
    appliedEgressMode: s.appliedEgressMode,
    appliedIngressMode: s.appliedIngressMode,
    serviceAddress: s.serviceAddress,
    exposedPorts: s.exposedPorts,
    startedAtTime: s.startedAt ? s.startedAt.toISOString() : null,
    exitCode: s.exitCode ?? 0,
    containerImage: s.spec.image,
    tags: s.tags,
    userId: s.userId,
    organizationId: s.organizationId,
    createdAt: s.createdAt.toISOString(),
    updatedAt: s.updatedAt.toISOString(),
    expiresAt: s.expiresAt.toISOString(),
  };
}

/**
 * Status changes a runner may report, applied in order: terminal states are
 * final, so a late "running" report cannot revive a stopped sandbox.
 */
export function nextStatus(current: SandboxStatus, reported: SandboxStatus): SandboxStatus {
  if (isTerminal(current)) return current;
  return reported;
}
