/**
 * The closed set of error codes Paddock raises. Names and numbers are gRPC's,
 * because the wire format is google.rpc.Status; only http/ maps them to HTTP.
 */
export const ERROR_CODES = {
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface FieldViolation {
  /** Path of the offending field, e.g. `spec.network.egress.modes.allow.cidrs[0]`. */
  field: string;
  description: string;
}

export interface AppErrorOptions {
  /** google.rpc.ErrorInfo reason, e.g. PROFILE_BOUND. */
  reason?: string;
  metadata?: Record<string, string>;
  fieldViolations?: FieldViolation[];
}

export class AppError extends Error {
  override readonly name = "AppError";
  readonly reason: string | undefined;
  readonly metadata: Record<string, string>;
  readonly fieldViolations: FieldViolation[];

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: AppErrorOptions = {},
  ) {
    super(message);
    this.reason = options.reason;
    this.metadata = options.metadata ?? {};
    this.fieldViolations = options.fieldViolations ?? [];
  }
}

/** One or more validation failures as a single INVALID_ARGUMENT, message naming the first field. */
export function invalidArgument(violations: FieldViolation[]): AppError {
  const [first, ...rest] = violations;
  if (!first) return new AppError("INVALID_ARGUMENT", "invalid request");
  const more = rest.length > 0 ? ` (and ${rest.length} more)` : "";
  return new AppError("INVALID_ARGUMENT", `${first.field}: ${first.description}${more}`, {
    fieldViolations: violations,
  });
}

export function invalidField(field: string, description: string): AppError {
  return invalidArgument([{ field, description }]);
}

export function notFound(what: string, id: string, reason: string): AppError {
  return new AppError("NOT_FOUND", `${what} '${id}' not found`, {
    reason,
    metadata: { id },
  });
}

export function permissionDenied(message: string): AppError {
  return new AppError("PERMISSION_DENIED", message, { reason: "PERMISSION_DENIED" });
}
