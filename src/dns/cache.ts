/**
 * A bounded cache of lookup outcomes with per-entry expiry. Least recently
 * used entries go first when it is full, so a flood of one-off names (say,
 * SPF macros with the client's address) cannot push out the busy ones for
 * long.
 *
 * @module
 */

/** A size-bounded map whose entries expire. */
export class TtlCache<V> {
  #entries = new Map<string, { value: V; expires: number }>();
  #max: number;
  #now: () => number;

  /**
   * Creates a cache of at most `maxEntries` entries (0 disables it). `now`
   * is the clock, in milliseconds; tests pass their own.
   */
  constructor(maxEntries: number, now: () => number = Date.now) {
    this.#max = Math.max(0, Math.floor(maxEntries));
    this.#now = now;
  }

  /** The value for `key`, or undefined when absent or expired. */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expires <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    // Re-inserting moves the key to the end: Map keeps insertion order.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry.value;
  }

  /**
   * Milliseconds `key` has left, or undefined when absent or expired. Does
   * not count as a use.
   */
  remainingMs(key: string): number | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    const left = entry.expires - this.#now();
    return left > 0 ? left : undefined;
  }

  /** Stores `value` for `ttlMs` milliseconds; a TTL of 0 or less stores nothing. */
  set(key: string, value: V, ttlMs: number): void {
    if (this.#max === 0 || !(ttlMs > 0)) return;
    this.#entries.delete(key);
    while (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { value, expires: this.#now() + ttlMs });
  }

  /** Number of entries held, expired ones included until they are touched. */
  get size(): number {
    return this.#entries.size;
  }

  /** Drops every entry. */
  clear(): void {
    this.#entries.clear();
  }
}
