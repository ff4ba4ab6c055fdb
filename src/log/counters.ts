/**
 * One counter per outcome. The admin API exports these as Prometheus
 * metrics; tests read them to check that every outcome was counted.
 *
 * @module
 */

/** A set of monotonically increasing counters keyed by name and labels. */
export class Counters {
  #values = new Map<string, number>();

  /** Adds `by` (default 1) to the counter `name` with the given labels. */
  inc(name: string, labels: Record<string, string> = {}, by = 1): void {
    const key = counterKey(name, labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }

  /** The current value of a counter, 0 when it was never incremented. */
  get(name: string, labels: Record<string, string> = {}): number {
    return this.#values.get(counterKey(name, labels)) ?? 0;
  }

  /** All counters as `name{label="v"}` → value, sorted by key. */
  snapshot(): Array<[string, number]> {
    return [...this.#values.entries()].sort(([a], [b]) => a.localeCompare(b));
  }
}

function counterKey(name: string, labels: Record<string, string>): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return name;
  const inner = entries.sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) =>
    `${k}=${JSON.stringify(v)}`
  ).join(",");
  return `${name}{${inner}}`;
}
