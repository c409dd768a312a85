/** Listener registry shared by the sources. */
export class UpdateListeners {
  readonly #listeners = new Set<() => void>();
  #onError: ((err: unknown) => void) | undefined;

  constructor(onError?: (err: unknown) => void) {
    this.#onError = onError;
  }

  add(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(): void {
    for (const l of [...this.#listeners]) {
      try {
        l();
      } catch (err) {
        this.#onError?.(err);
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
    this.#onError = undefined;
  }
}
