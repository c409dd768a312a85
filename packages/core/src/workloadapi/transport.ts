import net from 'node:net';
import { Http2Connection, type StreamEvents } from './h2.js';
import { encodeLiterals, type HeaderList } from './hpack.js';

/**
 * A minimal gRPC client transport (the HTTP/2 protocol in grpc/doc/PROTOCOL-HTTP2.md) over our own HTTP/2
 * connection (h2.ts), for the five calls of the Workload API. A general-purpose gRPC stack (name resolution,
 * load balancing, service config, retries, channelz) costs a round trip several times what the socket does;
 * the Workload API needs none of it: one local endpoint, plaintext, identity-free requests. Reconnecting and
 * backoff live in the client, not here: a call on a broken connection fails UNAVAILABLE and the next call
 * connects again.
 */

/** gRPC status codes (grpc/doc/statuscodes.md). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** A call's non-OK outcome: the server's status, or the transport failure mapped to a status. */
export class GrpcCallError extends Error {
  readonly code: number;
  readonly details: string;
  /**
   * The call failed on a connection that had been established (reset, GOAWAY, closed under the call), not
   * while connecting: retrying at once on a fresh connection is expected to work.
   */
  readonly connectionLost: boolean;
  constructor(code: number, details: string, connectionLost = false) {
    super(details);
    this.name = 'GrpcCallError';
    this.code = code;
    this.details = details;
    this.connectionLost = connectionLost;
  }
}

export interface CallHandlers {
  /** One response message (its protobuf bytes). */
  onMessage(message: Buffer): void;
  /** The call ended: `undefined` for status OK. Called exactly once, also after `cancel()`. */
  onEnd(error: GrpcCallError | undefined): void;
}

export interface TransportOptions {
  /** Largest response message accepted (default 4 MiB, as in gRPC). */
  maxMessageBytes?: number;
  /** The request header every call carries (the Workload API's security header). */
  headers?: Readonly<Record<string, string>>;
}

// One shared value: a one-shot fetch cancels its stream after the first message, on every call, and an
// Error per call (with its captured stack) is measurable in the tail latency.
const CANCELLED = new GrpcCallError(GrpcStatus.CANCELLED, 'call cancelled');
const ignore = (): void => {};
const DONE: CallHandlers = { onMessage: ignore, onEnd: ignore };

/** HTTP status → gRPC status for responses that are not gRPC (grpc/doc/http-grpc-status-mapping.md). */
function fromHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** The value of a field (several joined with ","), or undefined. */
function field(fields: HeaderList, name: string): string | undefined {
  let value: string | undefined;
  for (const [n, v] of fields) if (n === name) value = value === undefined ? v : `${value},${v}`;
  return value;
}

function decodeGrpcMessage(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // not percent-encoded as it should be: show it as sent
  }
}

/** Encodes one length-prefixed, uncompressed gRPC message (what `call` sends). */
export function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

export class GrpcTransport {
  readonly #connect: () => net.Socket;
  readonly #authority: string;
  readonly #maxMessageBytes: number;
  readonly #headers: Readonly<Record<string, string>>;
  // Request headers of each method, HPACK-encoded once and again only when a call's grpc-timeout differs from
  // the previous call's (rarely: it is the client's time limit, in whole milliseconds).
  readonly #blocks = new Map<string, { timeout: string | undefined; block: Buffer }>();
  #connection: Http2Connection | undefined;
  // Connections that may still have calls: the current one, and older ones finishing after a GOAWAY.
  readonly #connections = new Set<Http2Connection>();
  // Deadlines of open calls, enforced by one timer armed for the earliest: a timer per call would create,
  // schedule and tear down a timer list on every fetch (they all share one timeout, so one fire covers them).
  readonly #deadlines = new Map<() => void, number>();
  #deadlineTimer: NodeJS.Timeout | undefined;
  #armedFor = Number.POSITIVE_INFINITY;
  #closed = false;

  /** `target` as returned by `targetFromAddress`: `unix:///path`, `ipv4:IP:port` or `ipv6:[IP]:port`. */
  constructor(target: string, options: TransportOptions = {}) {
    if (target.startsWith('unix://')) {
      const path = target.slice('unix://'.length);
      this.#connect = () => net.connect(path);
      // :authority for a unix socket is "localhost", as grpc-go and grpc-js send.
      this.#authority = 'localhost';
    } else {
      const hostPort = target.slice(target.indexOf(':') + 1); // "IP:port" or "[IPv6]:port"
      const colon = hostPort.lastIndexOf(':');
      const host = hostPort.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
      const port = Number(hostPort.slice(colon + 1));
      this.#connect = () => net.connect({ host, port });
      this.#authority = hostPort;
    }
    this.#maxMessageBytes = options.maxMessageBytes ?? 4 * 1024 * 1024;
    this.#headers = options.headers ?? {};
  }

  #block(method: string, timeout: string | undefined): Buffer {
    const cached = this.#blocks.get(method);
    if (cached && cached.timeout === timeout) return cached.block;
    const block = encodeLiterals([
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', `/SpiffeWorkloadAPI/${method}`],
      [':authority', this.#authority],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ['user-agent', 'spiffe-ts'],
      ...Object.entries(this.#headers).map(([k, v]) => [k.toLowerCase(), v] as const),
      ...(timeout === undefined ? [] : [['grpc-timeout', timeout] as const]),
    ]);
    this.#blocks.set(method, { timeout, block });
    return block;
  }

  #usableConnection(): Http2Connection {
    const current = this.#connection;
    if (current?.usable) return current;
    const connection: Http2Connection = new Http2Connection(this.#connect, {
      onGone: () => {
        if (this.#connection === connection) this.#connection = undefined;
      },
      onClosed: () => this.#connections.delete(connection),
    });
    this.#connection = connection;
    this.#connections.add(connection);
    return connection;
  }

  #watchDeadline(expire: () => void, deadline: number): void {
    this.#deadlines.set(expire, deadline);
    if (deadline < this.#armedFor) this.#arm(deadline);
  }

  #arm(at: number): void {
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    this.#armedFor = at;
    this.#deadlineTimer = setTimeout(() => this.#expireDue(), Math.max(1, at - Date.now()));
    // Open calls keep the process alive through their connection's ref, not through this timer.
    this.#deadlineTimer.unref();
  }

  #expireDue(): void {
    this.#deadlineTimer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const [expire, at] of this.#deadlines) {
      if (at <= now) expire();
      else if (at < next) next = at;
    }
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
  }

  /**
   * Starts a call: sends `request` (one message, already framed with `frame`) and delivers each response
   * message until the server's status, a transport failure, the deadline (epoch ms) or `cancel()`.
   * Returns `cancel`.
   */
  call(method: string, request: Uint8Array, deadline: number | undefined, callHandlers: CallHandlers): () => void {
    let handlers = callHandlers;
    let ended = false;
    let resetStream: (() => void) | undefined;
    // Message framing: a 1-byte compressed flag, a 4-byte big-endian length, then the message.
    let chunks: Buffer[] = [];
    let have = 0;
    let need = 5;
    let inMessage = false;
    // Ends the call once. Resetting the stream is safe after the server's status too: the connection never
    // resets a stream the server has ended (see h2.ts).
    const finish = (error: GrpcCallError | undefined) => {
      if (ended) return;
      ended = true;
      if (deadline !== undefined) this.#deadlines.delete(expire);
      resetStream?.();
      const h = handlers;
      handlers = DONE;
      chunks = [];
      h.onEnd(error);
    };
    const cancel = () => finish(CANCELLED);
    const expire = () => finish(new GrpcCallError(GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded'));
    if (this.#closed) {
      queueMicrotask(() => finish(new GrpcCallError(GrpcStatus.UNAVAILABLE, 'client is closed')));
      return cancel;
    }

    let timeout: string | undefined;
    if (deadline !== undefined) {
      timeout = `${Math.max(1, Math.ceil(deadline - Date.now()))}m`;
      this.#watchDeadline(expire, deadline);
    }

    let responseHeaders: HeaderList | undefined;
    // The call's outcome from the block that carries its status (trailers, or a trailers-only response).
    const settle = (status: HeaderList): void => {
      const code = Number(field(status, 'grpc-status') ?? Number.NaN);
      if (!Number.isInteger(code)) {
        finish(new GrpcCallError(GrpcStatus.UNKNOWN, 'response ended without a grpc-status'));
      } else if (code === GrpcStatus.OK && have > 0) {
        finish(new GrpcCallError(GrpcStatus.INTERNAL, 'response ended inside a message'));
      } else {
        const error =
          code === GrpcStatus.OK
            ? undefined
            : new GrpcCallError(code, decodeGrpcMessage(field(status, 'grpc-message') ?? ''));
        finish(error);
      }
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      have += chunk.length;
      while (have >= need && !ended) {
        const buf = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, have);
        if (!inMessage) {
          if (buf[0] !== 0) {
            finish(new GrpcCallError(GrpcStatus.INTERNAL, 'compressed message, but no compression was negotiated'));
            return;
          }
          const len = buf.readUInt32BE(1);
          if (len > this.#maxMessageBytes) {
            finish(
              new GrpcCallError(
                GrpcStatus.RESOURCE_EXHAUSTED,
                `response message of ${len} bytes is larger than the limit (${this.#maxMessageBytes})`,
              ),
            );
            return;
          }
          inMessage = true;
          need = 5 + len;
          chunks = [buf];
          continue;
        }
        const message = buf.subarray(5, need);
        const rest = buf.subarray(need);
        chunks = rest.length > 0 ? [rest] : [];
        have = rest.length;
        need = 5;
        inMessage = false;
        handlers.onMessage(message);
      }
    };
    const events: StreamEvents = {
      onHeaders: (fields, endStream) => {
        if (ended) return;
        if (responseHeaders !== undefined) {
          // Trailers: the status. A second block that does not end the stream is not gRPC.
          if (endStream) settle(fields);
          else finish(new GrpcCallError(GrpcStatus.INTERNAL, 'unexpected second header block'));
          return;
        }
        responseHeaders = fields;
        const status = Number(field(fields, ':status'));
        if (status !== 200) {
          finish(new GrpcCallError(fromHttpStatus(status), `unexpected HTTP status ${status} from the Workload API`));
          return;
        }
        const ct = field(fields, 'content-type') ?? '';
        if (!ct.startsWith('application/grpc')) {
          finish(new GrpcCallError(GrpcStatus.UNKNOWN, `unexpected content-type "${ct}" from the Workload API`));
          return;
        }
        if (endStream) settle(fields); // trailers-only
      },
      onData: (chunk, endStream) => {
        if (ended) return;
        if (responseHeaders === undefined) {
          finish(new GrpcCallError(GrpcStatus.INTERNAL, 'response data before its headers'));
          return;
        }
        if (chunk.length > 0) onData(chunk);
        // Ending on DATA leaves no trailers, so no status.
        if (endStream && !ended) finish(new GrpcCallError(GrpcStatus.UNKNOWN, 'response ended without a grpc-status'));
      },
      // Every Workload API call is a read, so a stream lost without a status is UNAVAILABLE (retried),
      // whatever the point at which it happened.
      onAbort: (why, connectionLost) => finish(new GrpcCallError(GrpcStatus.UNAVAILABLE, why, connectionLost)),
    };
    const body = Buffer.from(request.buffer, request.byteOffset, request.length);
    resetStream = this.#usableConnection().request(this.#block(method, timeout), body, events);
    return cancel;
  }

  /** Closes the connection; calls still open fail UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    this.#connection = undefined;
    for (const c of [...this.#connections]) c.destroy('client is closed');
  }
}
