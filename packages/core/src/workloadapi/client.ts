import * as grpc from '@grpc/grpc-js';
import { JwtBundle, JwtBundleSet, X509Bundle, X509BundleSet } from '../bundle.js';
import { SpiffeError, WorkloadApiError } from '../errors.js';
import { insecureParseJwtSvid, JwtSvid } from '../jwtsvid.js';
import { type SpiffeId, TrustDomain, toSpiffeId } from '../spiffeid.js';
import { X509Svid } from '../x509svid.js';
import { partsKey } from '../x509util.js';
import { resolveAddress } from './address.js';
import { Backoff, type BackoffOptions, sleep } from './backoff.js';
import {
  type JWTBundlesResponseMessage,
  type JWTSVIDResponseMessage,
  structToJson,
  type ValidateJWTSVIDResponseMessage,
  WORKLOAD_API_HEADER,
  workloadApiServiceDefinition,
  type X509BundlesResponseMessage,
  type X509SVIDResponseMessage,
} from './proto.js';

/** What FetchX509SVID delivers: every SVID of the workload and the bundles it trusts. */
export interface X509Context {
  /** All SVIDs, in the order the Workload API sent them (the first one is the default). */
  readonly svids: readonly X509Svid[];
  /** The workload's trust domain bundle plus federated bundles. */
  readonly bundles: X509BundleSet;
}

export interface WorkloadApiClientOptions {
  /** `unix:///path` or `tcp://IP:port`; default: SPIFFE_ENDPOINT_SOCKET. */
  address?: string;
  /** Reconnect backoff for watches and retried calls. */
  backoff?: BackoffOptions;
  /** Default time limit in ms for one-shot calls, which wait for an unavailable agent (default 10_000; 0 = none). */
  timeoutMs?: number;
  /** Extra @grpc/grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

export interface CallOptions {
  /** Aborts the call (and any waiting for the agent). */
  signal?: AbortSignal;
  /** Overrides the client's default time limit for this call (0 = none). */
  timeoutMs?: number;
}

export interface JwtSvidParams {
  /** One or more audiences (required). */
  audience: string | readonly string[];
  /** Ask for the SVID of this ID, when the workload has several. */
  subject?: SpiffeId | string;
}

/** Receives updates from a Workload API stream. */
export interface Watcher<T> {
  onUpdate(value: T): void;
  /** Called for each failure; the watch keeps retrying unless the error is fatal (InvalidArgument). */
  onError?(error: WorkloadApiError): void;
}

export interface Watch {
  /** Stops the watch; idempotent. */
  stop(): void;
  /** Settles when the watch has stopped. */
  readonly done: Promise<void>;
}

type Raw = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

function mapGrpcError(err: unknown, what: string): WorkloadApiError {
  if (err instanceof WorkloadApiError) return err;
  if (err instanceof SpiffeError) {
    return new WorkloadApiError('WORKLOADAPI_BAD_RESPONSE', `${what}: invalid response: ${err.message}`, {
      cause: err,
    });
  }
  const e = err as grpc.ServiceError;
  const details = e?.details || e?.message || String(err);
  switch (e?.code) {
    case grpc.status.UNAVAILABLE:
      return new WorkloadApiError('WORKLOADAPI_UNAVAILABLE', `${what}: Workload API unavailable: ${details}`, {
        cause: err,
        grpcCode: e.code,
      });
    case grpc.status.DEADLINE_EXCEEDED:
      return new WorkloadApiError(
        'WORKLOADAPI_UNAVAILABLE',
        `${what}: timed out waiting for the Workload API: ${details}`,
        { cause: err, grpcCode: e.code },
      );
    case grpc.status.PERMISSION_DENIED:
      return new WorkloadApiError(
        'WORKLOADAPI_PERMISSION_DENIED',
        `${what}: the Workload API has no identity for this workload (PermissionDenied: ${details})`,
        { cause: err, grpcCode: e.code },
      );
    case grpc.status.INVALID_ARGUMENT:
      return new WorkloadApiError('WORKLOADAPI_INVALID_ARGUMENT', `${what}: ${details}`, {
        cause: err,
        grpcCode: e.code,
      });
    default:
      return new WorkloadApiError('WORKLOADAPI_ERROR', `${what}: ${details}`, { cause: err, grpcCode: e?.code });
  }
}

// The Workload API resends unchanged SVIDs and bundles (on every fetch, and on every stream update that
// changes anything else). Parsing is deterministic and the results are immutable, so identical bytes reuse
// the previous result: keyed by a SHA-256 of the exact bytes, bounded, most recent kept.
class ParseCache<T> {
  readonly #entries = new Map<string, T>();
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  get(parts: ReadonlyArray<Uint8Array | string>, parse: () => T): T {
    const key = partsKey(parts);
    const hit = this.#entries.get(key);
    if (hit !== undefined) return hit;
    const value = parse(); // throws on bad input: nothing is cached
    if (this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value as string);
    this.#entries.set(key, value);
    return value;
  }
}
const svidCache = new ParseCache<X509Svid>(64);
const bundleCache = new ParseCache<X509Bundle>(64);
const jwtBundleCache = new ParseCache<JwtBundle>(64);
const bytes = (b: Uint8Array | null | undefined): Uint8Array => b ?? new Uint8Array(0);

function cachedBundle(td: TrustDomain, der: Uint8Array): X509Bundle {
  return bundleCache.get([td.name, der], () => X509Bundle.parse(td, der));
}

/**
 * A transport failure grpc-js reports as INTERNAL: the HTTP/2 session was torn down under the call (e.g. a
 * server's rapid-reset protection closing a session after many cancelled streams). The channel reconnects,
 * so the call is safe to retry like UNAVAILABLE.
 */
function transportReset(err: unknown): boolean {
  const e = err as { code?: number; details?: string };
  return e?.code === grpc.status.INTERNAL && /RST_STREAM|Session closed|GOAWAY/i.test(e.details ?? '');
}

/** Parses a FetchX509SVID response into SVIDs and bundles. */
export function parseX509SvidResponse(resp: X509SVIDResponseMessage): X509Context {
  if (!resp.svids || resp.svids.length === 0) {
    throw new WorkloadApiError('WORKLOADAPI_BAD_RESPONSE', 'no SVIDs in X509SVIDResponse');
  }
  const bundles: X509Bundle[] = [];
  const svids = resp.svids.map((m) => {
    const svid = svidCache.get([bytes(m.x509_svid), bytes(m.x509_svid_key), m.hint ?? ''], () =>
      X509Svid.parse(m.x509_svid, m.x509_svid_key, { hint: m.hint }),
    );
    if (m.spiffe_id && m.spiffe_id !== svid.id.toString()) {
      throw new WorkloadApiError(
        'WORKLOADAPI_BAD_RESPONSE',
        `SVID spiffe_id "${m.spiffe_id}" does not match its certificate (${svid.id})`,
      );
    }
    if (m.bundle && m.bundle.length > 0) bundles.push(cachedBundle(svid.id.trustDomain, m.bundle));
    return svid;
  });
  for (const [td, der] of Object.entries(resp.federated_bundles ?? {})) {
    bundles.push(cachedBundle(TrustDomain.parse(td), der));
  }
  return { svids, bundles: new X509BundleSet(bundles) };
}

export function parseX509BundlesResponse(resp: X509BundlesResponseMessage): X509BundleSet {
  return new X509BundleSet(
    Object.entries(resp.bundles ?? {}).map(([td, der]) => cachedBundle(TrustDomain.parse(td), der)),
  );
}

export function parseJwtBundlesResponse(resp: JWTBundlesResponseMessage): JwtBundleSet {
  return new JwtBundleSet(
    Object.entries(resp.bundles ?? {}).map(([td, jwks]) =>
      jwtBundleCache.get([td, jwks], () => JwtBundle.parse(TrustDomain.parse(td), jwks)),
    ),
  );
}

/**
 * A SPIFFE Workload API client over gRPC (unix socket or TCP). One-shot calls wait for an unavailable
 * agent up to their time limit; watches reconnect forever with capped, jittered exponential backoff.
 */
export class WorkloadApiClient {
  readonly target: string;
  readonly #client: Raw;
  readonly #backoff: BackoffOptions;
  readonly #timeoutMs: number;
  #closed = false;
  readonly #watches = new Set<Watch>();

  constructor(options: WorkloadApiClientOptions = {}) {
    this.target = resolveAddress(options.address);
    this.#backoff = options.backoff ?? {};
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    const Ctor = grpc.makeGenericClientConstructor(workloadApiServiceDefinition(), 'SpiffeWorkloadAPI');
    this.#client = new Ctor(this.target, grpc.credentials.createInsecure(), {
      // Reconnect quickly when the agent comes back (grpc-js defaults to 1 s growing to 120 s).
      'grpc.initial_reconnect_backoff_ms': this.#backoff.initialMs ?? 100,
      'grpc.max_reconnect_backoff_ms': this.#backoff.maxMs ?? 10_000,
      'grpc.enable_retries': 0,
      ...options.channelOptions,
    }) as unknown as Raw;
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set(WORKLOAD_API_HEADER, 'true');
    return md;
  }

  #ensureOpen(): void {
    if (this.#closed) throw new WorkloadApiError('WORKLOADAPI_ERROR', 'Workload API client is closed');
  }

  /** Runs a call, retrying UNAVAILABLE with backoff until the time limit or abort. */
  async #oneShot<T>(
    what: string,
    options: CallOptions,
    run: (deadline: Date | undefined, onCancel: (cancel: () => void) => void) => Promise<T>,
  ): Promise<T> {
    this.#ensureOpen();
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const deadlineAt = timeoutMs > 0 ? Date.now() + timeoutMs : undefined;
    const backoff = new Backoff(this.#backoff);
    const signal = options.signal;
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      let cancel: (() => void) | undefined;
      const onAbort = () => cancel?.();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        return await run(deadlineAt === undefined ? undefined : new Date(deadlineAt), (c) => {
          cancel = c;
        });
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const mapped = mapGrpcError(err, what);
        const retriable = mapped.grpcCode === grpc.status.UNAVAILABLE || transportReset(err);
        const remaining = deadlineAt === undefined ? Number.POSITIVE_INFINITY : deadlineAt - Date.now();
        if (!retriable || this.#closed || remaining <= 5) throw mapped;
        // Keep trying until the time limit: the last wait is clamped so the final attempt lands on it.
        await sleep(Math.min(backoff.next(), remaining - 5), signal);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    }
  }

  /** First message of a server stream. */
  #firstOfStream<T>(method: string, deadline: Date | undefined, onCancel: (c: () => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const call = this.#client[method]?.({}, this.#metadata(), {
        deadline,
        waitForReady: true,
      }) as grpc.ClientReadableStream<T>;
      let settled = false;
      onCancel(() => call.cancel());
      call.on('data', (msg: T) => {
        if (settled) return;
        settled = true;
        resolve(msg);
        call.cancel();
      });
      call.on('error', (err) => {
        if (settled) return;
        settled = true;
        reject(err);
      });
      call.on('end', () => {
        if (settled) return;
        settled = true;
        reject(Object.assign(new Error('stream ended before any message'), { code: grpc.status.UNAVAILABLE }));
      });
    });
  }

  #unary<Req, Res>(
    method: string,
    request: Req,
    deadline: Date | undefined,
    onCancel: (c: () => void) => void,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const call = this.#client[method]?.(
        request,
        this.#metadata(),
        { deadline, waitForReady: true },
        (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)),
      ) as grpc.ClientUnaryCall;
      onCancel(() => call.cancel());
    });
  }

  /** Fetches the workload's X.509-SVIDs and bundles once. */
  fetchX509Context(options: CallOptions = {}): Promise<X509Context> {
    return this.#oneShot('FetchX509SVID', options, async (deadline, onCancel) =>
      parseX509SvidResponse(await this.#firstOfStream<X509SVIDResponseMessage>('FetchX509SVID', deadline, onCancel)),
    );
  }

  /** Fetches the default (first) X.509-SVID. */
  async fetchX509Svid(options: CallOptions = {}): Promise<X509Svid> {
    return (await this.fetchX509Context(options)).svids[0] as X509Svid;
  }

  async fetchX509Svids(options: CallOptions = {}): Promise<readonly X509Svid[]> {
    return (await this.fetchX509Context(options)).svids;
  }

  /** Fetches the X.509 bundles (local and federated) once. */
  fetchX509Bundles(options: CallOptions = {}): Promise<X509BundleSet> {
    return this.#oneShot('FetchX509Bundles', options, async (deadline, onCancel) =>
      parseX509BundlesResponse(
        await this.#firstOfStream<X509BundlesResponseMessage>('FetchX509Bundles', deadline, onCancel),
      ),
    );
  }

  /** Fetches the JWT bundles once. */
  fetchJwtBundles(options: CallOptions = {}): Promise<JwtBundleSet> {
    return this.#oneShot('FetchJWTBundles', options, async (deadline, onCancel) =>
      parseJwtBundlesResponse(
        await this.#firstOfStream<JWTBundlesResponseMessage>('FetchJWTBundles', deadline, onCancel),
      ),
    );
  }

  /** Fetches JWT-SVIDs for the audience (all of the workload's identities, or the one asked for). */
  fetchJwtSvids(params: JwtSvidParams, options: CallOptions = {}): Promise<JwtSvid[]> {
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
    return this.#oneShot('FetchJWTSVID', options, async (deadline, onCancel) => {
      const res = await this.#unary<object, JWTSVIDResponseMessage>(
        'FetchJWTSVID',
        { audience, spiffe_id: subject },
        deadline,
        onCancel,
      );
      if (!res.svids || res.svids.length === 0) {
        throw new WorkloadApiError('WORKLOADAPI_BAD_RESPONSE', 'FetchJWTSVID: there were no SVIDs in the response');
      }
      return res.svids.map((s) => {
        const parsed = insecureParseJwtSvid(s.svid);
        return new JwtSvid({
          id: parsed.id,
          audience: parsed.audience,
          expiresAt: parsed.expiresAt,
          claims: parsed.claims,
          token: parsed.token,
          hint: s.hint,
        });
      });
    });
  }

  /** Fetches one JWT-SVID (the first / default identity unless `subject` is given). */
  async fetchJwtSvid(params: JwtSvidParams, options: CallOptions = {}): Promise<JwtSvid> {
    return (await this.fetchJwtSvids(params, options))[0] as JwtSvid;
  }

  /** Asks the Workload API to validate a JWT-SVID for an audience. */
  validateJwtSvid(token: string, audience: string, options: CallOptions = {}): Promise<JwtSvid> {
    return this.#oneShot('ValidateJWTSVID', options, async (deadline, onCancel) => {
      const res = await this.#unary<object, ValidateJWTSVIDResponseMessage>(
        'ValidateJWTSVID',
        { audience, svid: token },
        deadline,
        onCancel,
      );
      const claims = structToJson(res.claims);
      const id = toSpiffeId(res.spiffe_id);
      const aud = claims.aud;
      const exp = typeof claims.exp === 'number' ? claims.exp : 0;
      return new JwtSvid({
        id,
        audience: typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.map(String) : [],
        expiresAt: new Date(exp * 1000),
        claims,
        token,
      });
    });
  }

  #watch<M, T>(method: string, parse: (m: M) => T, watcher: Watcher<T>, options: { signal?: AbortSignal } = {}): Watch {
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
    const runOnce = () =>
      new Promise<grpc.ServiceError | undefined>((resolve) => {
        const call = this.#client[method]?.({}, this.#metadata(), {
          waitForReady: true,
        }) as grpc.ClientReadableStream<M>;
        const onAbort = () => call.cancel();
        signal.addEventListener('abort', onAbort, { once: true });
        let finished = false;
        const finish = (err: grpc.ServiceError | undefined) => {
          if (finished) return;
          finished = true;
          signal.removeEventListener('abort', onAbort);
          resolve(err);
        };
        call.on('data', (msg: M) => {
          let value: T;
          try {
            value = parse(msg);
          } catch (err) {
            report(mapGrpcError(err, method));
            return;
          }
          backoff.reset();
          try {
            watcher.onUpdate(value);
          } catch (err) {
            report(new WorkloadApiError('WORKLOADAPI_ERROR', `${method}: update handler threw`, { cause: err }));
          }
        });
        call.on('error', (err: grpc.ServiceError) => finish(err));
        call.on('end', () =>
          finish(
            Object.assign(new Error('stream closed by the server'), {
              code: grpc.status.UNAVAILABLE,
            }) as grpc.ServiceError,
          ),
        );
      });
    const done = (async () => {
      while (!signal.aborted) {
        const err = await runOnce();
        if (signal.aborted) break;
        const mapped = mapGrpcError(err, method);
        report(mapped);
        if (mapped.grpcCode === grpc.status.INVALID_ARGUMENT) break; // fatal, as in go-spiffe
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

  /** Stops all watches and closes the channel. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const watches = [...this.#watches];
    for (const w of watches) w.stop();
    await Promise.all(watches.map((w) => w.done));
    this.#client.close();
  }
}
