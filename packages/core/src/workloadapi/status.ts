// Type only: the values are checked against grpc-js's at compile time, grpc-js is not loaded with this module.
import type * as grpc from '@grpc/grpc-js';
import { SpiffeError, WorkloadApiError } from '../errors.js';

/**
 * gRPC status codes (grpc/doc/statuscodes.md), as found in `WorkloadApiError.grpcCode`:
 * `err.grpcCode === GrpcStatus.PERMISSION_DENIED`. The values are the protocol's and those of
 * @grpc/grpc-js's `status` enum (checked when this package is compiled).
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const satisfies { readonly [K in keyof typeof grpc.status]: (typeof grpc.status)[K] };
/** One of the `GrpcStatus` values. */
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/** A call's non-OK status, as @grpc/grpc-js reports it (a ServiceError) or as the client makes one. */
export type StatusError = Error & { code: number; details: string };

/** A status error made by the client itself (a stream that ended without a message, a lost connection). */
export function statusError(code: GrpcStatus, details: string): StatusError {
  return Object.assign(new Error(details), { code, details });
}

/** Whether `err` carries a gRPC status (code and details). */
export function isStatusError(err: unknown): err is StatusError {
  return (
    err instanceof Error &&
    typeof (err as Partial<StatusError>).code === 'number' &&
    typeof (err as Partial<StatusError>).details === 'string'
  );
}

/**
 * A stream reset without a gRPC status: grpc-js reports INTERNAL "Received RST_STREAM with code N …", also
 * when the connection under the call is closed by the server's GOAWAY with an error (a node:http2 server does
 * that to a client that has reset about 1,000 streams in quick succession, as one-shot fetches of a
 * server-streaming method do). Every Workload API call is a read, so such a loss is UNAVAILABLE: retried.
 */
export function lostWithoutStatus(e: StatusError): boolean {
  return e.code === GrpcStatus.INTERNAL && e.details.startsWith('Received RST_STREAM');
}

/** A call's failure as a typed `WorkloadApiError` (code from the gRPC status), for the method `what`. */
export function mapGrpcError(err: unknown, what: string): WorkloadApiError {
  if (err instanceof WorkloadApiError) return err;
  if (err instanceof SpiffeError) {
    return new WorkloadApiError('WORKLOADAPI_BAD_RESPONSE', `${what}: invalid response: ${err.message}`, {
      cause: err,
    });
  }
  let e = isStatusError(err) ? err : undefined;
  if (e && lostWithoutStatus(e)) e = statusError(GrpcStatus.UNAVAILABLE, `connection lost (${e.details})`);
  const details = e?.details || (err as Error)?.message || String(err);
  switch (e?.code) {
    case GrpcStatus.UNAVAILABLE:
      return new WorkloadApiError('WORKLOADAPI_UNAVAILABLE', `${what}: Workload API unavailable: ${details}`, {
        cause: err,
        grpcCode: e.code,
      });
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new WorkloadApiError(
        'WORKLOADAPI_UNAVAILABLE',
        `${what}: timed out waiting for the Workload API: ${details}`,
        { cause: err, grpcCode: e.code },
      );
    case GrpcStatus.PERMISSION_DENIED:
      return new WorkloadApiError(
        'WORKLOADAPI_PERMISSION_DENIED',
        `${what}: the Workload API has no identity for this workload (PermissionDenied: ${details})`,
        { cause: err, grpcCode: e.code },
      );
    case GrpcStatus.INVALID_ARGUMENT:
      return new WorkloadApiError('WORKLOADAPI_INVALID_ARGUMENT', `${what}: ${details}`, {
        cause: err,
        grpcCode: e.code,
      });
    default:
      return new WorkloadApiError('WORKLOADAPI_ERROR', `${what}: ${details}`, { cause: err, grpcCode: e?.code });
  }
}
