import { debuglog } from 'node:util';
import { BundleError, SourceError, SpiffeError } from '../errors.js';
import { UpdateListeners } from '../internal/listeners.js';
import { type SourceHealth } from '../observability/health.js';
import { logEvent, type SpiffeLogger } from '../observability/logger.js';
import { countWorkloadApiError, trackSvidExpiry } from '../observability/metrics.js';
import { TrustDomain } from '../spiffeid/id.js';
import { type UpdatableSource } from '../svid/source.js';
import { type Watch, WorkloadApiClient, type WorkloadApiClientOptions } from './client.js';
import { diagnoseWait, resolveTimeoutMs } from './startup.js';

const debug = debuglog('spiffe');

/** How long a source waits in silence before saying that the agent has not answered yet. */
const SILENCE_NOTICE_MS = 5000;

/** Options of every Workload API source (X509Source, JwtSource, BundleSource): the client's, plus these. */
export interface SourceOptions extends WorkloadApiClientOptions {
  /** Use this client instead of creating one (the source will not close it). */
  client?: WorkloadApiClient;
  /** Called with every Workload API failure while the source keeps retrying. */
  onError?: (error: SpiffeError) => void;
  /**
   * How long `create()` and `ready()` wait for the first update before failing with SOURCE_TIMEOUT, in ms;
   * also the client's limit for one-shot calls. Default `DEFAULT_WORKLOAD_API_TIMEOUT_MS` (30 s);
   * `Infinity` waits forever.
   */
  timeoutMs?: number;
  /**
   * Where the source says why it is still waiting for its first update (no socket, agent not answering,
   * workload not registered), as warnings. Without it the first such notice is a process warning
   * (`process.emitWarning`, code SPIFFE_SOURCE_WAITING). NODE_DEBUG=spiffe shows every one.
   */
  logger?: SpiffeLogger;
}

/** Options of a source's `ready()` and `create()`. */
export interface ReadyOptions {
  /** Stop waiting when aborted (rejects with the signal's reason). */
  signal?: AbortSignal;
  /** Give up after this many ms (default: the source's `timeoutMs`, 30 s unless set; `Infinity`: never). */
  timeoutMs?: number;
}

/** Common machinery: owns (or borrows) a client, a readiness promise, update listeners and close. */
export abstract class WorkloadApiSource implements UpdatableSource {
  /** For subclasses: the Workload API client (the source's own, or the one given in `client`). */
  protected readonly client: WorkloadApiClient;
  readonly #ownsClient: boolean;
  readonly #listeners: UpdateListeners;
  /** For subclasses: the streams to stop on close(). */
  protected readonly watches: Watch[] = [];
  /** For subclasses: true once close() was called. */
  protected closed = false;
  #lastError: SpiffeError | undefined;
  #lastErrorAt: Date | undefined;
  #lastUpdate: Date | undefined;
  readonly #onError: ((e: SpiffeError) => void) | undefined;
  readonly #logger: SpiffeLogger | undefined;
  readonly #timeoutMs: number;
  #readyResolve!: () => void;
  readonly #readyPromise: Promise<void>;
  #isReady = false;
  // Start-up notices: the last reason told (told again only when it changes), whether the one process
  // warning went out, and the timer that notices an agent that accepts the connection but never answers.
  #toldReason: string | undefined;
  #warned = false;
  #silenceTimer: NodeJS.Timeout | undefined;
  readonly #untrack: () => void;

  protected constructor(options: SourceOptions) {
    this.#timeoutMs = resolveTimeoutMs(options.timeoutMs, this.constructor.name);
    this.#ownsClient = !options.client;
    this.client = options.client ?? new WorkloadApiClient(options);
    this.#onError = options.onError;
    this.#logger = options.logger;
    this.#listeners = new UpdateListeners((err) => debug('update listener threw: %o', err));
    this.#readyPromise = new Promise((resolve) => {
      this.#readyResolve = resolve;
    });
    this.#silenceTimer = setTimeout(() => {
      this.#silenceTimer = undefined;
      if (!this.#isReady && !this.closed && this.#lastError === undefined) this.#tellWaiting();
    }, SILENCE_NOTICE_MS);
    this.#silenceTimer.unref();
    this.#untrack = trackSvidExpiry(this);
  }

  /**
   * For subclasses: records a Workload API failure (health, metrics, start-up notices) and passes it to
   * `onError`; the source keeps retrying.
   */
  protected reportError = (err: SpiffeError): void => {
    this.#lastError = err;
    this.#lastErrorAt = new Date();
    debug('%s: %s', this.constructor.name, err.message);
    countWorkloadApiError({ code: err.code, source: this.constructor.name });
    if (!this.#isReady && !this.closed) this.#tellWaiting();
    try {
      this.#onError?.(err);
    } catch {
      // ignore
    }
  };

  /** Says, once per distinct reason, why the source has no material yet. */
  #tellWaiting(): void {
    const { reason, hint } = diagnoseWait(this.#lastError, this.client.target);
    if (reason === this.#toldReason) return;
    this.#toldReason = reason;
    const name = this.constructor.name;
    const message = `${name}: waiting for the Workload API at ${this.client.target}: ${hint}`;
    const fields = { source: name, address: this.client.target, reason, code: this.#lastError?.code };
    if (this.#logger) {
      logEvent(this.#logger, 'warn', fields, message);
      return;
    }
    logEvent(undefined, 'warn', fields, message);
    if (!this.#warned) {
      this.#warned = true;
      process.emitWarning(message, { code: 'SPIFFE_SOURCE_WAITING' });
    }
  }

  /** Subclasses call this when every stream they need has delivered once. */
  protected markReadyIf(condition: boolean): void {
    if (condition && !this.#isReady) {
      this.#isReady = true;
      this.#clearSilenceTimer();
      if (this.#toldReason !== undefined) {
        logEvent(
          this.#logger,
          'info',
          { source: this.constructor.name, address: this.client.target },
          `${this.constructor.name}: ready`,
        );
      }
      this.#readyResolve();
    }
  }

  #clearSilenceTimer(): void {
    if (this.#silenceTimer) clearTimeout(this.#silenceTimer);
    this.#silenceTimer = undefined;
  }

  /** What the source waits for at start-up, for messages (e.g. "an X.509-SVID"). */
  protected get awaited(): string {
    return 'a first update';
  }

  /** The current X.509-SVID's ID and expiry, for sources that hold one (health, the expiry gauge). */
  svidExpiry(): { id: string; expiresAt: Date } | undefined {
    return undefined;
  }

  /** Whether the material is usable now (subclasses add their own checks, e.g. SVID not expired). */
  protected get usable(): boolean {
    return true;
  }

  /**
   * The source's health: ready (material received, not closed, SVID not expired), SVID expiry, last
   * update, last error. Never throws.
   */
  health(): SourceHealth {
    const expiry = this.svidExpiry();
    const err = this.#lastError;
    return {
      source: this.constructor.name,
      ready: this.#isReady && !this.closed && this.usable,
      ...(expiry ? { svidExpiresAt: expiry.expiresAt } : {}),
      ...(this.#lastUpdate ? { lastUpdate: this.#lastUpdate } : {}),
      ...(err ? { lastError: { code: err.code, message: err.message, at: this.#lastErrorAt as Date } } : {}),
    };
  }

  /** True once the first update has arrived. */
  get isReady(): boolean {
    return this.#isReady;
  }

  /** The last Workload API error seen (useful when ready() times out). */
  get lastError(): SpiffeError | undefined {
    return this.#lastError;
  }

  /**
   * Resolves once the first update arrived; rejects with SOURCE_TIMEOUT (after `timeoutMs`, default the
   * source's: its message names the address and what is wrong), the signal's reason, or SOURCE_CLOSED.
   */
  async ready(options: ReadyOptions = {}): Promise<this> {
    if (this.closed) throw new SourceError('SOURCE_CLOSED', `${this.constructor.name} is closed`);
    if (this.#isReady) return this;
    const { signal } = options;
    const timeoutMs =
      options.timeoutMs === undefined ? this.#timeoutMs : resolveTimeoutMs(options.timeoutMs, 'ready()');
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        cleanup();
        reject(signal?.reason);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          cleanup();
          const last = this.#lastError;
          const { hint } = diagnoseWait(last, this.client.target);
          reject(
            new SourceError(
              'SOURCE_TIMEOUT',
              `${this.constructor.name}: no ${this.awaited} from the Workload API at ${this.client.target} ` +
                `within ${timeoutMs} ms: ${hint}${last ? ` (last error: ${last.message})` : ''}`,
              { cause: last },
            ),
          );
        }, timeoutMs);
      }
      this.#readyPromise.then(() => {
        cleanup();
        resolve();
      });
    });
    return this;
  }

  /** Runs every update listener (subclasses call it after adopting new material). */
  protected emitUpdate(): void {
    this.#lastUpdate = new Date();
    this.#listeners.emit();
  }

  /** Registers a listener called after each adopted update; returns a function that removes it. */
  onUpdate(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Waits for a new source to be ready; closes it if that fails (used by every `create`). */
  protected static async readyOrClose<S extends WorkloadApiSource>(source: S, options: ReadyOptions): Promise<S> {
    try {
      return await source.ready(options);
    } catch (err) {
      await source.close();
      throw err;
    }
  }

  /** For subclasses: throws a SourceError (`SOURCE_CLOSED`) once the source is closed. */
  protected assertOpen(): void {
    if (this.closed) throw new SourceError('SOURCE_CLOSED', `${this.constructor.name} is closed`);
  }

  /** For subclasses: throws a SourceError, `SOURCE_CLOSED` once closed or `SOURCE_NOT_READY` before the first update. */
  protected assertReady(): void {
    this.assertOpen();
    if (!this.#isReady)
      throw new SourceError('SOURCE_NOT_READY', `${this.constructor.name} is not ready yet: await ready()`);
  }

  /**
   * Stops the Workload API streams and waits for them to end, drops the update listeners, and closes the client
   * if the source created it. Calling it again does nothing.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.#clearSilenceTimer();
    this.#untrack();
    for (const w of this.watches) w.stop();
    await Promise.all(this.watches.map((w) => w.done));
    this.#listeners.clear();
    if (this.#ownsClient) await this.client.close();
  }

  /** Same as close(), for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export function bundleOrThrow<B>(
  set: { get(td: TrustDomain): B | undefined } | undefined,
  td: TrustDomain,
  kind: string,
): B {
  const b = set?.get(td);
  if (!b) throw new BundleError('BUNDLE_NOT_FOUND', `no ${kind} bundle for trust domain "${td.name}"`);
  return b;
}
