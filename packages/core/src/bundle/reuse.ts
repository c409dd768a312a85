/**
 * Bundles read from the Workload API, reused while their bytes are unchanged.
 *
 * An agent resends every bundle in every update, e.g. a thousand federated bundles each time only the SVID
 * rotated. Keyed by the trust domain as the message names it, an entry is reused only when the new bytes are
 * byte for byte the ones it was parsed from: one memcmp of a few hundred bytes, where hashing every entry to
 * look it up cost more than the rest of the update (bench/README.md, "Rotation latency"). Parsing is
 * deterministic and its results are immutable, so identical key and bytes give the identical result; changed
 * bytes are parsed again (and an error leaves the entry as it was). A trust domain absent from an update is
 * simply not asked for, so it is not in the set built from that update.
 */
export class BundleReuse<B> {
  // Per key, the last few byte strings seen (most recent first): two sources of one agent may briefly hold
  // different versions of a bundle, e.g. during a CA rotation, without evicting each other.
  readonly #entries = new Map<string, { bytes: Buffer; value: B }[]>();
  readonly #maxKeys: number;
  readonly #variants: number;

  constructor(maxKeys: number, variants = 2) {
    this.#maxKeys = maxKeys;
    this.#variants = variants;
  }

  /** The value parsed from exactly these bytes under this key: reused if seen, else `parse()` (may throw). */
  get(key: string, bytes: Uint8Array, parse: () => B): B {
    const list = this.#entries.get(key);
    if (list) {
      const hit = list.find((e) => e.bytes.length === bytes.length && e.bytes.equals(bytes));
      if (hit) {
        // Least recently used keys go first: an update that resends every bundle keeps them all.
        this.#entries.delete(key);
        this.#entries.set(key, list);
        return hit.value;
      }
    }
    const value = parse(); // throws on bad input: nothing is kept
    // A copy: the message's bytes are views into the whole (possibly half-megabyte) response buffer.
    const entry = { bytes: Buffer.from(bytes), value };
    const next = [entry, ...(list ?? [])].slice(0, this.#variants);
    this.#entries.delete(key);
    if (this.#entries.size >= this.#maxKeys) this.#entries.delete(this.#entries.keys().next().value as string);
    this.#entries.set(key, next);
    return value;
  }
}
