import http2 from 'node:http2';
import net from 'node:net';

/**
 * A minimal gRPC client transport (the HTTP/2 protocol in grpc/doc/PROTOCOL-HTTP2.md) over node:http2, for
 * the five calls of the Workload API. A general-purpose gRPC stack (name resolution, load balancing, service
 * config, retries, channelz) costs a round trip several times what the socket does; the Workload API needs
 * none of it: one local endpoint, plaintext, identity-free requests. Reconnecting and backoff live in the
 * client, not here: a call on a broken connection fails UNAVAILABLE and the next call connects again.
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

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;

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

function decodeGrpcMessage(value: string | string[] | undefined): string {
  const s = Array.isArray(value) ? value.join(',') : (value ?? '');
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
  readonly #target: string;
  readonly #maxMessageBytes: number;
  readonly #headers: Readonly<Record<string, string>>;
  #session: http2.ClientHttp2Session | undefined;
  readonly #active = new Map<http2.ClientHttp2Session, number>();
  // Deadlines of open calls, enforced by one timer armed for the earliest: a timer per call would create,
  // schedule and tear down a timer list on every fetch (they all share one timeout, so one fire covers them).
  readonly #deadlines = new Map<() => void, number>();
  #deadlineTimer: NodeJS.Timeout | undefined;
  #armedFor = Number.POSITIVE_INFINITY;
  #closed = false;

  /** `target` as returned by `targetFromAddress`: `unix:///path`, `ipv4:IP:port` or `ipv6:[IP]:port`. */
  constructor(target: string, options: TransportOptions = {}) {
    this.#target = target;
    this.#maxMessageBytes = options.maxMessageBytes ?? 4 * 1024 * 1024;
    this.#headers = options.headers ?? {};
  }

  #connect(): http2.ClientHttp2Session {
    const t = this.#target;
    const settings = { enablePush: false };
    let session: http2.ClientHttp2Session;
    if (t.startsWith('unix://')) {
      const path = t.slice('unix://'.length);
      // :authority for a unix socket is "localhost", as grpc-go and grpc-js send.
      session = http2.connect('http://localhost', { settings, createConnection: () => net.connect(path) });
    } else {
      session = http2.connect(`http://${t.slice(t.indexOf(':') + 1)}`, { settings });
    }
    // Failures reach every open stream as its own error; an 'error' without a listener would throw.
    session.on('error', () => {});
    const forget = () => {
      if (this.#session === session) this.#session = undefined;
    };
    session.on('goaway', forget); // streams in flight may finish; new ones go to a new connection
    session.on('close', () => {
      forget();
      this.#active.delete(session);
    });
    // An idle client must not keep the process alive; open calls do (ref'd while any is active).
    session.unref();
    return session;
  }

  #use(session: http2.ClientHttp2Session, delta: 1 | -1): void {
    const n = (this.#active.get(session) ?? 0) + delta;
    if (n > 0) this.#active.set(session, n);
    else this.#active.delete(session);
    if (session.destroyed) return;
    if (delta === 1 && n === 1) session.ref();
    if (n === 0) session.unref();
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
    let stream: http2.ClientHttp2Stream | undefined;
    let session: http2.ClientHttp2Session | undefined;
    // Message framing: a 1-byte compressed flag, a 4-byte big-endian length, then the message.
    let chunks: Buffer[] = [];
    let have = 0;
    let need = 5;
    let inMessage = false;
    // `reset`: stop the stream (cancel, deadline, a bad response). Never after the server's status: the
    // server has ended the stream, and a node:http2 server (grpc-js, the dev server) counts a reset of an
    // ended stream as an invalid frame and drops the connection after 1,000 of them.
    const finish = (error: GrpcCallError | undefined, reset = true) => {
      if (ended) return;
      ended = true;
      if (deadline !== undefined) this.#deadlines.delete(expire);
      if (reset && stream && !stream.closed) stream.close(NGHTTP2_CANCEL);
      if (session) this.#use(session, -1);
      // node:http2 streams outlive the call (their native handle keeps them through minor GCs), and with
      // them our listeners: let go of the caller's handlers and buffers so those can die young.
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

    const headers: http2.OutgoingHttpHeaders = {
      ':method': 'POST',
      ':path': `/SpiffeWorkloadAPI/${method}`,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'spiffe-ts',
      ...this.#headers,
    };
    if (deadline !== undefined) {
      const ms = Math.max(1, Math.ceil(deadline - Date.now()));
      headers['grpc-timeout'] = `${ms}m`;
      this.#watchDeadline(expire, deadline);
    }
    try {
      session = this.#session ?? this.#connect();
      this.#session = session;
      stream = session.request(headers);
    } catch (err) {
      // e.g. the session was destroyed between the check and the request
      const s = session;
      session = undefined;
      if (s && this.#session === s) this.#session = undefined;
      queueMicrotask(() =>
        finish(new GrpcCallError(GrpcStatus.UNAVAILABLE, `connection failed: ${(err as Error).message}`, true)),
      );
      return cancel;
    }
    this.#use(session, 1);
    const s = session;
    const st = stream;
    let connected = !s.connecting;
    if (!connected) s.once('connect', () => (connected = true));

    let responseHeaders: http2.IncomingHttpHeaders | undefined;
    let trailersOnly = false;
    let trailers: http2.IncomingHttpHeaders | undefined;
    let streamError: Error | undefined;

    st.on('response', (h, flags) => {
      responseHeaders = h;
      trailersOnly = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      const status = Number(h[':status']);
      if (status !== 200) {
        finish(new GrpcCallError(fromHttpStatus(status), `unexpected HTTP status ${status} from the Workload API`));
        return;
      }
      const ct = String(h['content-type'] ?? '');
      if (!ct.startsWith('application/grpc')) {
        finish(new GrpcCallError(GrpcStatus.UNKNOWN, `unexpected content-type "${ct}" from the Workload API`));
      }
    });
    st.on('data', (chunk: Buffer) => {
      if (ended) return;
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
    });
    st.on('trailers', (t) => {
      trailers = t;
    });
    st.on('error', (err) => {
      streamError = err;
    });
    // The call's outcome, once the status has arrived (trailers, or a trailers-only response).
    const settle = (): boolean => {
      const status = trailers ?? (trailersOnly ? responseHeaders : undefined);
      if (!status) return false;
      const code = Number(status['grpc-status']);
      if (!Number.isInteger(code)) {
        finish(new GrpcCallError(GrpcStatus.UNKNOWN, 'response ended without a grpc-status'), false);
      } else if (code === GrpcStatus.OK && have > 0) {
        finish(new GrpcCallError(GrpcStatus.INTERNAL, 'response ended inside a message'), false);
      } else {
        const error =
          code === GrpcStatus.OK ? undefined : new GrpcCallError(code, decodeGrpcMessage(status['grpc-message']));
        finish(error, false);
      }
      return true;
    };
    // The response has been read to its end: with the status in hand the call is over, without waiting for
    // 'close' (which node:http2 emits after tearing the stream down, a few microseconds later).
    st.on('end', () => {
      if (!ended) settle();
    });
    st.on('close', () => {
      if (ended || settle()) return;
      // No status: the stream was reset or the connection went away. Every Workload API call is a read, so
      // this is reported as UNAVAILABLE (retried) whatever the point at which it happened.
      const why =
        st.rstCode === NGHTTP2_REFUSED_STREAM
          ? 'stream refused'
          : streamError
            ? streamError.message
            : `stream closed without a status (HTTP/2 code ${st.rstCode})`;
      finish(new GrpcCallError(GrpcStatus.UNAVAILABLE, why, connected));
    });
    st.end(request);
    return cancel;
  }

  /** Closes the connection; calls still open fail UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    const s = this.#session;
    this.#session = undefined;
    s?.close();
    for (const open of [...this.#active.keys()]) open.destroy();
  }
}
