/** Does nothing: the unsubscribe when there is nothing to unsubscribe from. */
export const noop = (): void => {};

const abortListeners = new WeakMap<AbortSignal, { fns: Set<() => void>; listener: () => void }>();

/**
 * Runs `fn` (a function of its own per subscription) when `signal` aborts; returns the unsubscribe. One
 * listener per signal however many calls share it (a service's shutdown signal, say): Node warns of a leak
 * past 10 listeners on one signal.
 */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  let entry = abortListeners.get(signal);
  if (!entry) {
    const fns = new Set<() => void>();
    const listener = () => {
      abortListeners.delete(signal);
      for (const f of fns) f();
    };
    entry = { fns, listener };
    abortListeners.set(signal, entry);
    signal.addEventListener('abort', listener, { once: true });
  }
  const { fns, listener } = entry;
  fns.add(fn);
  return () => {
    fns.delete(fn);
    if (fns.size === 0 && abortListeners.get(signal)?.fns === fns) {
      abortListeners.delete(signal);
      signal.removeEventListener('abort', listener);
    }
  };
}
