import { debuglog } from 'node:util';
import { BundleError, SourceError, SpiffeError } from '../errors.js';
import { UpdateListeners } from '../internal/listeners.js';
import { TrustDomain } from '../spiffeid/id.js';
import { type UpdatableSource } from '../svid/source.js';
import { onAbort } from './abort.js';
import { type Watch, WorkloadApiClient, type WorkloadApiClientOptions } from './client.js';

const debug = debuglog('spiffe');

export interface SourceOptions extends WorkloadApiClientOptions {
  /** Use this client instead of creating one (the source will not close it). */
  client?: WorkloadApiClient;
  /** Called with every Workload API failure while the source keeps retrying. */
  onError?: (error: SpiffeError) => void;
}

export interface ReadyOptions {
  signal?: AbortSignal;
  /** Give up after this many ms (default: wait until the signal aborts). */
  timeoutMs?: number;
}

/** Common machinery: owns (or borrows) a client, a readiness promise, update listeners and close. */
export abstract class WorkloadApiSource implements UpdatableSource {
  protected readonly client: WorkloadApiClient;
  readonly #ownsClient: boolean;
  readonly #listeners: UpdateListeners;
  protected readonly watches: Watch[] = [];
  protected closed = false;
  #lastError: SpiffeError | undefined;
  readonly #onError: ((e: SpiffeError) => void) | undefined;
  #readyResolve!: () => void;
  readonly #readyPromise: Promise<void>;
  #isReady = false;

  protected constructor(options: SourceOptions) {
    this.#ownsClient = !options.client;
    this.client = options.client ?? new WorkloadApiClient(options);
    this.#onError = options.onError;
    this.#listeners = new UpdateListeners((err) => debug('update listener threw: %o', err));
    this.#readyPromise = new Promise((resolve) => {
      this.#readyResolve = resolve;
    });
  }

  protected reportError = (err: SpiffeError): void => {
    this.#lastError = err;
    debug('%s: %s', this.constructor.name, err.message);
    try {
      this.#onError?.(err);
    } catch {
      // ignore
    }
  };

  /** Subclasses call this when every stream they need has delivered once. */
  protected markReadyIf(condition: boolean): void {
    if (condition && !this.#isReady) {
      this.#isReady = true;
      this.#readyResolve();
    }
  }

  get isReady(): boolean {
    return this.#isReady;
  }

  /** The last Workload API error seen (useful when ready() times out). */
  get lastError(): SpiffeError | undefined {
    return this.#lastError;
  }

  /** Resolves once the first update arrived; rejects with SOURCE_TIMEOUT/abort/SOURCE_CLOSED. */
  async ready(options: ReadyOptions = {}): Promise<this> {
    if (this.closed) throw new SourceError('SOURCE_CLOSED', `${this.constructor.name} is closed`);
    if (this.#isReady) return this;
    const { signal, timeoutMs } = options;
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
      if (timeoutMs !== undefined && timeoutMs > 0) {
        timer = setTimeout(() => {
          cleanup();
          const last = this.#lastError;
          reject(
            new SourceError(
              'SOURCE_TIMEOUT',
              `${this.constructor.name} not ready after ${timeoutMs} ms${last ? `: ${last.message}` : ' (no response from the Workload API)'}`,
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
    this.#listeners.emit();
  }

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

  protected assertOpen(): void {
    if (this.closed) throw new SourceError('SOURCE_CLOSED', `${this.constructor.name} is closed`);
  }

  protected assertReady(): void {
    this.assertOpen();
    if (!this.#isReady)
      throw new SourceError('SOURCE_NOT_READY', `${this.constructor.name} is not ready yet: await ready()`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.stop();
    await Promise.all(this.watches.map((w) => w.done));
    this.#listeners.clear();
    if (this.#ownsClient) await this.client.close();
  }

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
