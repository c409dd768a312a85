import { onAbort } from './abort.js';

/** Capped exponential backoff with full jitter, as recommended for reconnect storms. */
export interface BackoffOptions {
  /** First delay in ms (default 100). */
  initialMs?: number;
  /** Cap in ms (default 10_000). */
  maxMs?: number;
  /** Growth factor (default 2). */
  multiplier?: number;
  /** Fraction of the delay that is randomized, 0..1 (default 0.5). */
  jitter?: number;
}

/** The delays of one reconnect sequence: `next()` for each wait, `reset()` after a success. */
export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #mult: number;
  readonly #jitter: number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.#initial = options.initialMs ?? 100;
    this.#max = options.maxMs ?? 10_000;
    this.#mult = options.multiplier ?? 2;
    this.#jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
  }

  next(): number {
    const base = Math.min(this.#max, this.#initial * this.#mult ** this.#attempt);
    this.#attempt++;
    return Math.round(base * (1 - this.#jitter * Math.random()));
  }

  reset(): void {
    this.#attempt = 0;
  }
}

/** Resolves after `ms`, or rejects with the signal's reason when aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
