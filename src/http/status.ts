import { AppError, ERROR_CODES, type ErrorCode } from "../errors.js";

/** gRPC code → HTTP status, as grpc-gateway maps them. The only place that knows HTTP statuses. */
const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  DEADLINE_EXCEEDED: 504,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  UNIMPLEMENTED: 501,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  UNAUTHENTICATED: 401,
};

export const ERROR_DOMAIN = "paddock.dev";

export interface RpcStatus {
  code: number;
  message: string;
  details: Record<string, unknown>[];
}

/** Renders an error as google.rpc.Status with its ErrorInfo and BadRequest details. */
export function toRpcStatus(error: AppError): { httpStatus: number; body: RpcStatus } {
  const details: Record<string, unknown>[] = [];
  if (error.reason) {
    details.push({
      "@type": "type.googleapis.com/google.rpc.ErrorInfo",
      reason: error.reason,
      domain: ERROR_DOMAIN,
      metadata: error.metadata,
    });
  }
  if (error.fieldViolations.length > 0) {
    details.push({
      "@type": "type.googleapis.com/google.rpc.BadRequest",
      fieldViolations: error.fieldViolations,
    });
  }
  return {
    httpStatus: HTTP_STATUS[error.code],
    body: { code: ERROR_CODES[error.code], message: error.message, details },
  };
}

export function internalError(): AppError {
  return new AppError("INTERNAL", "internal error; the server log has the details", {
    reason: "INTERNAL",
  });
}
