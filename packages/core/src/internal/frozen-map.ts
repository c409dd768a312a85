/** A Map that refuses changes once built, so bundles documented as immutable really are. */
export class FrozenMap<K, V> extends Map<K, V> {
  #frozen = false;
  constructor(entries: Iterable<readonly [K, V]>) {
    super();
    for (const [k, v] of entries) super.set(k, v);
    this.#frozen = true;
  }
  override set(key: K, value: V): this {
    if (this.#frozen) throw new TypeError('bundle authorities are immutable');
    return super.set(key, value);
  }
  override delete(_key: K): boolean {
    throw new TypeError('bundle authorities are immutable');
  }
  override clear(): void {
    throw new TypeError('bundle authorities are immutable');
  }
}
