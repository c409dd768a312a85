import type * as grpc from '@grpc/grpc-js';
import { JwtBundleSet, X509BundleSet } from '../bundle/set.js';
import { SpiffeError, WorkloadApiError } from '../errors.js';
import { SpiffeId, toSpiffeId } from '../spiffeid/id.js';
import { JwtSvid } from '../svid/jwt.js';
import { X509Svid } from '../svid/x509.js';
import { noop, onAbort } from './abort.js';
import { resolveAddress } from './address.js';
import { Backoff, type BackoffOptions, sleep } from './backoff.js';
import {
  freezeContext,
  LastResponse,
  parseJwtBundlesResponse,
  parseJwtSvidResponse,
  parseX509BundlesResponse,
  parseX509SvidResponse,
  type X509Context,
} from './parse.js';
import type { WorkloadApiMessages, WorkloadApiServiceDefinition } from './proto.js';
import { resolveTimeoutMs } from './startup.js';
import { GrpcStatus, mapGrpcError, statusError } from './status.js';

/** Options of `new WorkloadApiClient()`. */
export interface WorkloadApiClientOptions {
  /** `unix:///path` or `tcp://IP:port`; default: SPIFFE_ENDPOINT_SOCKET. */
  address?: string;
  /** Reconnect backoff for watches and retried calls. */
  backoff?: BackoffOptions;
  /**
   * Default time limit in ms for one-shot calls, which wait for an unavailable agent (default
   * `DEFAULT_WORKLOAD_API_TIMEOUT_MS`, 30 s; `Infinity`: no limit).
   */
  timeoutMs?: number;
  /** Largest response message accepted, in bytes (default 4 MiB, as in gRPC). */
  maxMessageBytes?: number;
}

/** Options of one Workload API call. */
export interface CallOptions {
  /** Aborts the call (and any waiting for the agent). */
  signal?: AbortSignal;
  /** Overrides the client's default time limit for this call (`Infinity`: no limit). */
  timeoutMs?: number;
}

/** What to ask for in a JWT-SVID fetch. */
export interface JwtSvidParams {
  /** One or more audiences (required). */
  audience: string | readonly string[];
  /** Ask for the SVID of this ID, when the workload has several. */
  subject?: SpiffeId | string;
  /**
   * Pick the SVID whose operator-set `hint` is this (Workload API `hint`), when the workload has several;
   * no SVID with that hint is a WORKLOADAPI_BAD_RESPONSE error.
   */
  hint?: string;
}

/** Receives updates from a Workload API stream. */
export interface Watcher<T> {
  /** Called with each update, the first one included; a handler that throws is reported to `onError`. */
  onUpdate(value: T): void;
  /** Called for each failure; the watch keeps retrying unless the error is fatal (InvalidArgument). */
  onError?(error: WorkloadApiError): void;
}

/** A running watch (stream with reconnects), from a client's `watch…` methods. */
export interface Watch {
  /** Stops the watch; idempotent. */
  stop(): void;
  /** Settles when the watch has stopped. */
  readonly done: Promise<void>;
}

const ignoreCancel = (_cancel: () => void): void => {};

type Method = keyof WorkloadApiMessages;

type Request<M extends Method> = WorkloadApiMessages[M]['request'];

type Response<M extends Method> = WorkloadApiMessages[M]['response'];

/** What a client needs from gRPC and protobuf, loaded on the first call of any client in the process. */
interface Runtime {
  readonly grpc: typeof grpc;
  readonly proto: typeof import('./proto.js');
  readonly definitions: WorkloadApiServiceDefinition;
}

// @grpc/grpc-js and protobufjs take tens of milliseconds to load: an application that never calls the Workload
// API (static or file sources, JWT validation with its own bundles) does not pay for them at start-up.
let runtime: Runtime | undefined;
let runtimeLoading: Promise<Runtime> | undefined;

function loadRuntime(): Promise<Runtime> {
  runtimeLoading ??= Promise.all([import('@grpc/grpc-js'), import('./proto.js')]).then(
    ([grpcModule, proto]) => {
      runtime = { grpc: grpcModule, proto, definitions: proto.workloadApiServiceDefinition() };
      return runtime;
    },
    (err: unknown) => {
      runtimeLoading = undefined; // a later call tries again
      throw err;
    },
  );
  return runtimeLoading;
}

/** Decodes a response message of `method`; throws on bytes that are not one. */
function decode<M extends Method>(method: M, bytes: Buffer): Response<M> {
  // Bytes only come from a call, made once the definitions were loaded.
  if (runtime === undefined) throw new Error('Workload API definitions are not loaded');
  return runtime.definitions[method].responseDeserialize(bytes) as Response<M>;
}

// Responses arrive as bytes (decoded by the client, not by grpc-js): undecodable bytes are then our typed
// BAD_RESPONSE rather than grpc-js's INTERNAL status, and an unchanged response is recognised by its bytes.
const asBytes = (bytes: Buffer): Buffer => bytes;

const closedError = (): WorkloadApiError => new WorkloadApiError('WORKLOADAPI_ERROR', 'Workload API client is closed');

type StreamMethod = 'FetchX509SVID' | 'FetchX509Bundles' | 'FetchJWTBundles';

/** A client's channel, with the loaded modules it was made from. */
interface Connection {
  readonly channel: grpc.Client;
  readonly runtime: Runtime;
}

/** The Workload API's security header, on every call (a new object: grpc-js may add to it). */
function metadata(loaded: Runtime): grpc.Metadata {
  const md = new loaded.grpc.Metadata();
  md.set(loaded.proto.WORKLOAD_API_HEADER, 'true');
  return md;
}

type Run<T> = (deadline: number | undefined, onCancel: (cancel: () => void) => void) => Promise<T>;

/**
 * A SPIFFE Workload API client over gRPC (@grpc/grpc-js; unix socket or TCP). One-shot calls wait for an
 * unavailable agent up to their time limit; watches reconnect forever with capped, jittered exponential
 * backoff.
 */
export class WorkloadApiClient {
  /** The gRPC target the client connects to (`unix:///path` or `ipv4:…`/`ipv6:…`), from `address`. */
  readonly target: string;
  readonly #channelOptions: grpc.ChannelOptions;
  /** Made on the first call: grpc-js is loaded then, not when the client is constructed. */
  #connection: Connection | undefined;
  readonly #backoff: BackoffOptions;
  readonly #timeoutMs: number;
  #closed = false;
  readonly #watches = new Set<Watch>();
  /** Cancels each one-shot call in flight: `close()` ends them at once. */
  readonly #inFlight = new Set<() => void>();
  // The agent answers every fetch with the same bytes until something rotates: the same bytes give the
  // same (immutable) context without decoding them again.
  readonly #x509Memo = new LastResponse((bytes) =>
    freezeContext(parseX509SvidResponse(decode('FetchX509SVID', bytes))),
  );
  // SPIRE also answers FetchJWTSVID from its cache until the token nears expiry.
  readonly #jwtMemo = new LastResponse((bytes) => parseJwtSvidResponse(decode('FetchJWTSVID', bytes)));

  constructor(options: WorkloadApiClientOptions = {}) {
    this.target = resolveAddress(options.address);
    this.#backoff = options.backoff ?? {};
    this.#timeoutMs = resolveTimeoutMs(options.timeoutMs, 'WorkloadApiClient');
    this.#channelOptions = {
      // The agent is local: an HTTP proxy from the environment must never carry its traffic.
      'grpc.enable_http_proxy': 0,
      'grpc.max_receive_message_length': options.maxMessageBytes ?? 4 * 1024 * 1024,
      // grpc-js waits up to 120 s between connection attempts by default, and fails calls at once meanwhile:
      // an agent that comes back would go unseen for that long. Its waits follow ours instead.
      'grpc.initial_reconnect_backoff_ms': this.#backoff.initialMs ?? 100,
      'grpc.max_reconnect_backoff_ms': this.#backoff.maxMs ?? 10_000,
      // HTTP/2's default receive window is 64 KiB: an update carrying a thousand federated bundles then
      // arrives in several window round trips through both event loops (bench/README.md, "Rotation latency").
      // A window as large as the largest accepted message lets the agent send it at once; it is a permission,
      // not a buffer.
      'grpc-node.flow_control_window': options.maxMessageBytes ?? 4 * 1024 * 1024,
      // A connection of its own: closing this client closes it, whatever other clients of the address do.
      'grpc.use_local_subchannel_pool': 1,
      // Nothing reads channelz: no per-call bookkeeping, no entry in its process-wide registry.
      'grpc.enable_channelz': 0,
    };
  }

  #ensureOpen(): void {
    if (this.#closed) throw closedError();
  }

  /**
   * The client's channel, made on first use; undefined while grpc-js is not loaded yet. Callers check that
   * the client is open first: a closed client makes no channel.
   */
  #connect(): Connection | undefined {
    if (this.#connection !== undefined) return this.#connection;
    if (runtime === undefined) return undefined;
    const { Client, credentials } = runtime.grpc;
    this.#connection = {
      channel: new Client(this.target, credentials.createInsecure(), this.#channelOptions),
      runtime,
    };
    return this.#connection;
  }

  /** Runs a call, retrying UNAVAILABLE with backoff until the time limit or abort (the agent may be starting). */
  #oneShot<T>(what: string, options: CallOptions, run: Run<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    let timeoutMs: number;
    try {
      timeoutMs = options.timeoutMs === undefined ? this.#timeoutMs : resolveTimeoutMs(options.timeoutMs, what);
    } catch (err) {
      return Promise.reject(err);
    }
    const deadline = Number.isFinite(timeoutMs) ? Date.now() + timeoutMs : undefined;
    const signal = options.signal;
    if (signal) return this.#retrying(what, signal, deadline, run, undefined);
    // Nearly every call succeeds at once: no async frame, abort wiring or backoff state unless it fails.
    return run(deadline, ignoreCancel).catch((error: unknown) =>
      this.#retrying(what, undefined, deadline, run, { error }),
    );
  }

  async #retrying<T>(
    what: string,
    signal: AbortSignal | undefined,
    deadline: number | undefined,
    run: Run<T>,
    failed: { error: unknown } | undefined,
  ): Promise<T> {
    let backoff: Backoff | undefined;
    let failure = failed;
    // Cancels the call in flight, or ends the wait before the next attempt.
    let interrupt: (() => void) | undefined;
    const onCancel = (cancel: () => void) => {
      interrupt = cancel;
    };
    const unsubscribe = signal ? onAbort(signal, () => interrupt?.()) : noop;
    try {
      for (;;) {
        if (signal?.aborted) throw signal.reason;
        if (failure) {
          const mapped = mapGrpcError(failure.error, what);
          failure = undefined;
          const remaining = deadline === undefined ? Number.POSITIVE_INFINITY : deadline - Date.now();
          if (mapped.grpcCode !== GrpcStatus.UNAVAILABLE || this.#closed || remaining <= 5) throw mapped;
          // Keep trying until the time limit: the last wait is clamped so the final attempt lands on it.
          backoff ??= new Backoff(this.#backoff);
          const ms = Math.min(backoff.next(), remaining - 5);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, ms);
            interrupt = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          interrupt = undefined;
          continue; // checks the signal first
        }
        try {
          return await run(deadline, signal ? onCancel : ignoreCancel);
        } catch (error) {
          if (signal?.aborted) throw signal.reason;
          failure = { error };
        } finally {
          interrupt = undefined;
        }
      }
    } finally {
      unsubscribe();
    }
  }

  /**
   * The first response message, read by `read`: of a server stream (which is then cancelled, as go-spiffe
   * does), or of a unary call (a message then an error status is an error).
   */
  #first<M extends Method, T>(
    method: M,
    request: Request<M>,
    deadline: number | undefined,
    onCancel: (cancel: () => void) => void,
    read: (bytes: Buffer) => T,
  ): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    const connection = this.#connect();
    if (connection === undefined) return this.#firstAfterLoad(method, request, deadline, onCancel, read);
    const { channel, runtime } = connection;
    return new Promise<T>((resolve, reject) => {
      const def = runtime.definitions[method];
      let settled = false;
      const done = (error: unknown, bytes: Buffer | undefined): void => {
        if (settled) return;
        settled = true;
        this.#inFlight.delete(cancel);
        if (error !== undefined || bytes === undefined) {
          reject(this.#closed ? closedError() : error);
          return;
        }
        try {
          resolve(read(bytes));
        } catch (err) {
          reject(
            err instanceof SpiffeError
              ? err
              : new WorkloadApiError('WORKLOADAPI_BAD_RESPONSE', `${method}: undecodable response`, { cause: err }),
          );
        }
      };
      const options: grpc.CallOptions = deadline === undefined ? {} : { deadline };
      let call: grpc.ClientUnaryCall;
      if (def.responseStream) {
        const stream = channel.makeServerStreamRequest(
          def.path,
          def.requestSerialize,
          asBytes,
          request,
          metadata(runtime),
          options,
        );
        stream.on('data', (bytes: Buffer) => {
          if (settled) return;
          done(undefined, bytes);
          stream.cancel();
        });
        stream.on('error', (err: Error) => done(err, undefined));
        stream.on('status', (status: grpc.StatusObject) => {
          if (status.code === GrpcStatus.OK) {
            done(statusError(GrpcStatus.UNAVAILABLE, `${method} ended before any message`), undefined);
          }
        });
        call = stream;
      } else {
        call = channel.makeUnaryRequest(
          def.path,
          def.requestSerialize,
          asBytes,
          request,
          metadata(runtime),
          options,
          (err, bytes) => done(err ?? undefined, bytes),
        );
      }
      const cancel = () => call.cancel();
      if (!settled) {
        this.#inFlight.add(cancel);
        onCancel(cancel);
      }
    });
  }

  /**
   * `#first` for the first call of the process: once grpc-js and the definitions are loaded (one load shared
   * by concurrent calls). Cancelling meanwhile (abort) ends the wait; a client closed meanwhile fails as closed.
   */
  #firstAfterLoad<M extends Method, T>(
    method: M,
    request: Request<M>,
    deadline: number | undefined,
    onCancel: (cancel: () => void) => void,
    read: (bytes: Buffer) => T,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let cancelled = false;
      onCancel(() => {
        cancelled = true;
        reject(statusError(GrpcStatus.CANCELLED, `${method} cancelled before it started`));
      });
      loadRuntime().then(() => {
        if (!cancelled) this.#first(method, request, deadline, onCancel, read).then(resolve, reject);
      }, reject);
    });
  }

  /** Fetches the workload's X.509-SVIDs and bundles once. */
  fetchX509Context(options: CallOptions = {}): Promise<X509Context> {
    return this.#oneShot('FetchX509SVID', options, (deadline, onCancel) =>
      this.#first('FetchX509SVID', {}, deadline, onCancel, (bytes) => this.#x509Memo.read(bytes)),
    );
  }

  /** Fetches the default (first) X.509-SVID. */
  async fetchX509Svid(options: CallOptions = {}): Promise<X509Svid> {
    return (await this.fetchX509Context(options)).svids[0] as X509Svid;
  }

  /** Fetches all of the workload's X.509-SVIDs (the first one is the default). */
  async fetchX509Svids(options: CallOptions = {}): Promise<readonly X509Svid[]> {
    return (await this.fetchX509Context(options)).svids;
  }

  /** Fetches the X.509 bundles (local and federated) once. */
  fetchX509Bundles(options: CallOptions = {}): Promise<X509BundleSet> {
    return this.#oneShot('FetchX509Bundles', options, (deadline, onCancel) =>
      this.#first('FetchX509Bundles', {}, deadline, onCancel, (bytes) =>
        parseX509BundlesResponse(decode('FetchX509Bundles', bytes)),
      ),
    );
  }

  /** Fetches the JWT bundles once. */
  fetchJwtBundles(options: CallOptions = {}): Promise<JwtBundleSet> {
    return this.#oneShot('FetchJWTBundles', options, (deadline, onCancel) =>
      this.#first('FetchJWTBundles', {}, deadline, onCancel, (bytes) =>
        parseJwtBundlesResponse(decode('FetchJWTBundles', bytes)),
      ),
    );
  }

  /** Fetches JWT-SVIDs for the audience (all of the workload's identities, or the one asked for). */
  fetchJwtSvids(params: JwtSvidParams, options: CallOptions = {}): Promise<JwtSvid[]> {
    // a new array each time: the SVIDs in it are immutable and shared, the array is the caller's
    return this.#fetchJwt(params, options, (svids) => [...svids]);
  }

  /** Fetches one JWT-SVID (the first / default identity unless `subject` or `hint` is given). */
  fetchJwtSvid(params: JwtSvidParams, options: CallOptions = {}): Promise<JwtSvid> {
    const { hint } = params;
    return this.#fetchJwt(params, options, (svids) => {
      if (hint === undefined) return svids[0] as JwtSvid;
      const svid = svids.find((s) => s.hint === hint);
      if (!svid) throw new WorkloadApiError('WORKLOADAPI_BAD_RESPONSE', `no JWT-SVID with hint "${hint}"`);
      return svid;
    });
  }

  #fetchJwt<T>(params: JwtSvidParams, options: CallOptions, pick: (svids: readonly JwtSvid[]) => T): Promise<T> {
    const audience = typeof params.audience === 'string' ? [params.audience] : [...params.audience];
    if (audience.length === 0 || audience.some((a) => typeof a !== 'string' || a === '')) {
      return Promise.reject(new WorkloadApiError('WORKLOADAPI_INVALID_ARGUMENT', 'audience must be specified'));
    }
    let subject: string;
    try {
      subject = params.subject === undefined ? '' : toSpiffeId(params.subject).toString();
    } catch (err) {
      return Promise.reject(err);
    }
    const request: Request<'FetchJWTSVID'> = { audience, spiffe_id: subject };
    return this.#oneShot('FetchJWTSVID', options, (deadline, onCancel) =>
      this.#first('FetchJWTSVID', request, deadline, onCancel, (b) => pick(this.#jwtMemo.read(b))),
    );
  }

  /** Asks the Workload API to validate a JWT-SVID for an audience. */
  validateJwtSvid(token: string, audience: string, options: CallOptions = {}): Promise<JwtSvid> {
    const request: Request<'ValidateJWTSVID'> = { audience, svid: token };
    return this.#oneShot('ValidateJWTSVID', options, (deadline, onCancel) =>
      this.#first('ValidateJWTSVID', request, deadline, onCancel, (bytes) => {
        const res = decode('ValidateJWTSVID', bytes);
        // Bytes came from a call: the definitions are loaded.
        const claims = (runtime as Runtime).proto.structToJson(res.claims);
        const aud = claims.aud;
        const exp = typeof claims.exp === 'number' ? claims.exp : 0;
        return new JwtSvid({
          id: toSpiffeId(res.spiffe_id),
          audience: typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.map(String) : [],
          expiresAt: new Date(exp * 1000),
          claims,
          token,
        });
      }),
    );
  }

  #watch<M extends StreamMethod, T>(
    method: M,
    parse: (m: Response<M>) => T,
    watcher: Watcher<T>,
    options: { signal?: AbortSignal } = {},
  ): Watch {
    this.#ensureOpen();
    const stopper = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stopper.signal]) : stopper.signal;
    const backoff = new Backoff(this.#backoff);
    const report = (err: WorkloadApiError) => {
      try {
        watcher.onError?.(err);
      } catch {
        // a throwing error handler must not kill the watch
      }
    };
    const onMessage = (bytes: Buffer): void => {
      let value: T;
      try {
        value = parse(decode(method, bytes));
      } catch (err) {
        report(
          err instanceof SpiffeError
            ? mapGrpcError(err, method)
            : new WorkloadApiError('WORKLOADAPI_BAD_RESPONSE', `${method}: undecodable response`, { cause: err }),
        );
        return;
      }
      backoff.reset();
      try {
        watcher.onUpdate(value);
      } catch (err) {
        report(new WorkloadApiError('WORKLOADAPI_ERROR', `${method}: update handler threw`, { cause: err }));
      }
    };
    /** One stream, until it ends: resolves with why. */
    const stream = ({ channel, runtime }: Connection) =>
      new Promise<unknown>((resolve) => {
        const def = runtime.definitions[method];
        const call = channel.makeServerStreamRequest(def.path, def.requestSerialize, asBytes, {}, metadata(runtime));
        const cancel = () => call.cancel();
        const end = (why: unknown) => {
          signal.removeEventListener('abort', cancel);
          resolve(why);
        };
        signal.addEventListener('abort', cancel, { once: true });
        call.on('data', onMessage);
        call.on('error', end);
        call.on('status', (status: grpc.StatusObject) => {
          // A stream the server ends with OK is still a lost watch: reconnect.
          if (status.code === GrpcStatus.OK) end(statusError(GrpcStatus.UNAVAILABLE, 'stream closed by the server'));
        });
      });
    /** A stream, once grpc-js is loaded (the first call of the process loads it): resolves with why it ended. */
    const runOnce = async (): Promise<unknown> => {
      let connection = this.#connect();
      if (connection === undefined) {
        try {
          await loadRuntime();
        } catch (err) {
          return err;
        }
        // Stopped, or the client closed, while loading: no channel is made.
        if (signal.aborted || this.#closed) return undefined;
        connection = this.#connect() as Connection;
      }
      return stream(connection);
    };
    const done = (async () => {
      while (!signal.aborted) {
        const err = await runOnce();
        if (signal.aborted) break;
        const mapped = mapGrpcError(err, method);
        report(mapped);
        if (mapped.grpcCode === GrpcStatus.INVALID_ARGUMENT) break; // fatal, as in go-spiffe
        try {
          await sleep(backoff.next(), signal);
        } catch {
          break;
        }
      }
    })();
    const watch: Watch = {
      stop: () => stopper.abort(),
      done: done.finally(() => this.#watches.delete(watch)),
    };
    this.#watches.add(watch);
    return watch;
  }

  /** Streams X.509 context updates (SVID rotation, bundle changes) until stopped. */
  watchX509Context(watcher: Watcher<X509Context>, options: { signal?: AbortSignal } = {}): Watch {
    return this.#watch('FetchX509SVID', parseX509SvidResponse, watcher, options);
  }

  /** Streams X.509 bundle updates until stopped. */
  watchX509Bundles(watcher: Watcher<X509BundleSet>, options: { signal?: AbortSignal } = {}): Watch {
    return this.#watch('FetchX509Bundles', parseX509BundlesResponse, watcher, options);
  }

  /** Streams JWT bundle updates until stopped. */
  watchJwtBundles(watcher: Watcher<JwtBundleSet>, options: { signal?: AbortSignal } = {}): Watch {
    return this.#watch('FetchJWTBundles', parseJwtBundlesResponse, watcher, options);
  }

  /** Stops all watches, ends the calls in flight (they fail as closed) and closes the channel. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const watches = [...this.#watches];
    for (const w of watches) w.stop();
    for (const cancel of [...this.#inFlight]) cancel();
    await Promise.all(watches.map((w) => w.done));
    // No channel if no call was ever made.
    this.#connection?.channel.close();
  }
}
