import { type SpiffeError, WorkloadApiError } from '../errors.js';
import { GrpcStatus } from './status.js';

/**
 * Default time limit, in ms, for a Workload API answer: a source's first update (`create()`, `ready()`) and
 * each one-shot client call. Long enough for an agent that is still attesting or a registration entry that
 * is still syncing (SPIRE agents sync every 5 s), short enough that a wrong socket fails a deploy visibly.
 */
export const DEFAULT_WORKLOAD_API_TIMEOUT_MS = 30_000;

/**
 * Validates a `timeoutMs` option: a positive number of ms, or `Infinity` to wait forever (the one explicit
 * way; 0 is refused because it reads as both "no wait" and "no limit").
 */
export function resolveTimeoutMs(value: number | undefined, what: string): number {
  if (value === undefined) return DEFAULT_WORKLOAD_API_TIMEOUT_MS;
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) {
    throw new TypeError(`${what}: timeoutMs must be a positive number of ms, or Infinity to wait forever`);
  }
  // Timers cannot wait longer than 2^31-1 ms (a longer delay fires at once): such a limit is no limit.
  return value > MAX_TIMER_MS ? Number.POSITIVE_INFINITY : value;
}

const MAX_TIMER_MS = 2_147_483_647;

/** Why a source is still waiting, as a stable reason and a sentence saying what to check. */
export interface WaitDiagnosis {
  /** NO_SOCKET | AGENT_NOT_ANSWERING | SOCKET_ACCESS_DENIED | NOT_REGISTERED | NO_ANSWER | WORKLOAD_API_ERROR */
  readonly reason: string;
  /** What is wrong and what to check. */
  readonly hint: string;
}

/** Reads a Workload API failure (or none yet) as the reason a source has no material. */
export function diagnoseWait(error: SpiffeError | undefined, target: string): WaitDiagnosis {
  if (!error) {
    return {
      reason: 'NO_ANSWER',
      hint: `no answer from the Workload API at ${target} (connected, but the agent sent nothing yet)`,
    };
  }
  const text = `${error.message} ${String((error.cause as Error | undefined)?.message ?? '')}`;
  if (error instanceof WorkloadApiError && error.grpcCode === GrpcStatus.PERMISSION_DENIED) {
    return {
      reason: 'NOT_REGISTERED',
      hint:
        'the agent issued no identity to this workload (PERMISSION_DENIED "no identity issued"): it is not ' +
        'registered yet, or no registration entry matches its selectors',
    };
  }
  if (/\bENOENT\b/.test(text)) {
    return {
      reason: 'NO_SOCKET',
      hint: `no socket at ${target}: check SPIFFE_ENDPOINT_SOCKET (or the address option) and that the agent runs and its socket is mounted`,
    };
  }
  if (/\bECONNREFUSED\b/.test(text)) {
    return {
      reason: 'AGENT_NOT_ANSWERING',
      hint: `nothing accepts connections at ${target}: the agent is not running or is restarting`,
    };
  }
  if (/\bEACCES\b|\bEPERM\b/.test(text)) {
    return {
      reason: 'SOCKET_ACCESS_DENIED',
      hint: `this process may not open ${target} (file permissions of the socket or its directory)`,
    };
  }
  return { reason: 'WORKLOAD_API_ERROR', hint: `${error.code}: ${error.message}` };
}
