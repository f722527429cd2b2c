import type { LaunchSpec, SandboxStatus } from "../sandboxes/sandbox.js";

/** One sandbox as the control plane wants it on this runner. */
export interface SandboxAssignment {
  sandboxId: string;
  organizationId: string;
  userId: string;
  profileId: string;
  desired: "running" | "stopped" | "deleted";
  gracefulShutdownSeconds: number;
  spec: LaunchSpec;
  /** When the sandbox must be stopped, whatever it is doing (ms since the epoch). */
  expiresAtMs: number;
}

/** What a backend reports about one sandbox. */
export interface ObservedSandbox {
  sandboxId: string;
  status: SandboxStatus;
  statusReason: string;
  exitCode: number | null;
  startedAtMs: number | null;
  serviceAddress: string;
  exposedPorts: number[];
}

/** A sandbox the backend has not done anything with yet. */
export function pendingObserved(sandboxId: string): ObservedSandbox {
  return {
    sandboxId,
    status: "SANDBOX_STATUS_PENDING",
    statusReason: "",
    exitCode: null,
    startedAtMs: null,
    serviceAddress: "",
    exposedPorts: [],
  };
}

/** A sandbox that could not be started, and why. */
export function failedObserved(sandboxId: string, reason: string): ObservedSandbox {
  return { ...pendingObserved(sandboxId), status: "SANDBOX_STATUS_FAILED", statusReason: reason };
}

export interface ExecRequest {
  command: string[];
  stdin: Buffer;
  env: Record<string, string>;
  workingDir: string;
  timeoutMs: number;
  /** Per-stream cap; output beyond it is dropped and flagged. */
  maxOutputBytes: number;
}

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

export interface LogRequest {
  follow: boolean;
  tailLines: number | undefined;
  timestamps: boolean;
}

/** An interactive session: bytes in and out, window size, and how it ended. */
export interface InteractiveSession {
  write(data: Buffer): void;
  closeStdin(): void;
  resize(rows: number, cols: number): void;
  onOutput(listener: (data: Buffer) => void): void;
  /** Resolves with the exit code. */
  exited: Promise<number>;
  kill(): void;
}

/**
 * What a runner agent drives: the local backend (bubblewrap) or the
 * Kubernetes one. The agent owns reconciliation; a backend only acts.
 */
export interface Backend {
  readonly kind: "local" | "kubernetes";
  /** Why this backend cannot run sandboxes on this host, or undefined when it can. */
  unavailableReason(): string | undefined;
  /** Starts the sandbox and resolves once it runs (or throws why it cannot). */
  start(
    assignment: SandboxAssignment,
    onChange: (observed: ObservedSandbox) => void,
  ): Promise<ObservedSandbox>;
  /** SIGTERM, then SIGKILL after the grace period; resolves once nothing runs. `reason` becomes the statusReason. */
  stop(sandboxId: string, gracefulShutdownSeconds: number, reason?: string): Promise<void>;
  /** Removes everything the sandbox left (processes, files, cgroups, network). */
  remove(sandboxId: string): Promise<void>;
  /** Sandboxes this backend knows of, e.g. after a restart. */
  observe(): Promise<ObservedSandbox[]>;
  /** Where later changes of a sandbox found by observe() are reported (backends whose sandboxes outlive the runner). */
  adopt?(sandboxId: string, onChange: (observed: ObservedSandbox) => void): void;
  exec(sandboxId: string, request: ExecRequest, signal: AbortSignal): Promise<ExecResult>;
  readFile(sandboxId: string, path: string, maxBytes: number, signal: AbortSignal): Promise<Buffer>;
  writeFile(sandboxId: string, path: string, content: Buffer, signal: AbortSignal): Promise<void>;
  logs(
    sandboxId: string,
    request: LogRequest,
    onData: (chunk: Buffer) => void,
    signal: AbortSignal,
  ): Promise<void>;
  interactive(
    sandboxId: string,
    command: string[],
    env: Record<string, string>,
    tty: boolean,
  ): Promise<InteractiveSession>;
  /** Keeps prepared shells for each bound profile's spec (backends that have warm pools). */
  setWarmPools?(pools: WarmPoolConfig[]): void;
  warmPoolStats?(): WarmPoolStats[];
  /** Releases what the backend holds for itself (not the sandboxes). */
  close(): Promise<void>;
}

/** A binding's warm pool, as the control plane asks for it: the spec its sandboxes start with. */
export interface WarmPoolConfig {
  profileId: string;
  size: number;
  spec: LaunchSpec;
}

export interface WarmPoolStats {
  profileId: string;
  size: number;
  ready: number;
  /** Starts of this profile that took a ready shell, and those that found none. */
  hits: number;
  misses: number;
}
