/**
 * One counter per outcome. The admin API exports these as Prometheus
 * metrics; tests read them to check that every outcome was counted.
 *
 * @module
 */

/** A set of monotonically increasing counters keyed by name and labels. */
export class Counters {
  #values = new Map<string, number>();
  #histograms = new Map<string, Histogram>();

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

  /** Records one observation (in seconds) in the histogram `name` with the labels. */
  observe(name: string, labels: Record<string, string>, seconds: number): void {
    const key = counterKey(name, labels);
    let histogram = this.#histograms.get(key);
    if (!histogram) {
      histogram = {
        name,
        labels,
        counts: new Array(HISTOGRAM_BUCKETS.length).fill(0),
        sum: 0,
        count: 0,
      };
      this.#histograms.set(key, histogram);
    }
    for (let i = 0; i < HISTOGRAM_BUCKETS.length; i++) {
      if (seconds <= HISTOGRAM_BUCKETS[i]!) histogram.counts[i]!++;
    }
    histogram.sum += seconds;
    histogram.count++;
  }

  /** Every histogram: cumulative counts per upper bound of {@linkcode HISTOGRAM_BUCKETS}. */
  histograms(): Histogram[] {
    return [...this.#histograms.entries()].sort(([a], [b]) => a.localeCompare(b)).map((
      [, h],
    ) => ({ ...h, labels: { ...h.labels }, counts: [...h.counts] }));
  }
}

/** Upper bounds of the histogram buckets, in seconds (a call of a hook: 1 ms to 1 min). */
export const HISTOGRAM_BUCKETS: readonly number[] = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

/** One histogram's state. */
export interface Histogram {
  name: string;
  labels: Record<string, string>;
  /** Observations at or below each bound of {@linkcode HISTOGRAM_BUCKETS}. */
  counts: number[];
  sum: number;
  count: number;
}

function counterKey(name: string, labels: Record<string, string>): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return name;
  const inner = entries.sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) =>
    `${k}=${JSON.stringify(v)}`
  ).join(",");
  return `${name}{${inner}}`;
}
