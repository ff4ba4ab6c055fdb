/**
 * The output budget of one hook worker: how many lines, and bytes, of what
 * the hook prints reach the log each second.
 *
 * Why drop rather than end the worker: a hook that prints too much is
 * usually a hook with a debug line in a hot path, and its answers are
 * still good; ending it would turn chatter into failed mail. Why drop
 * rather than stop reading (which would block the hook's writes): a hook
 * blocked on its own console would stall its calls in flight. So the first
 * lines of a flood are logged (an admin wants to see what it says), then one
 * line says the output is over budget, then nothing until a whole second
 * of the hook's output fits the budget again, when one line says how much
 * was dropped. While dropping, the worker reads its pipes without decoding
 * them, so a flood costs Postern a pass over the bytes; what it may cost at
 * most, and when a flood does end the worker (between calls, or past a
 * ceiling of reads and bytes a second), is `output_ceiling.ts`'s.
 *
 * Time is cut into one-second windows from the first output; the budget
 * counts what arrives in the current window, logged or not.
 *
 * @module
 */

/** Lines and bytes a worker's output may put in the log each second. */
export interface OutputLimits {
  linesPerSecond: number;
  bytesPerSecond: number;
}

/** Output dropped, reported while dropping (a delta) and at the end of a flood. */
export interface DroppedOutput {
  lines: number;
  bytes: number;
}

/** What {@linkcode OutputBudget.admit} decides for one line. */
export type Admission = "log" | "drop" | "over";

const WINDOW_MS = 1000;

/** The output budget of one worker. */
export class OutputBudget {
  #limits: OutputLimits;
  #now: () => number;
  #windowStart: number | undefined;
  #lines = 0;
  #bytes = 0;
  #dropping = false;
  #unreported: DroppedOutput = { lines: 0, bytes: 0 };
  #episode: DroppedOutput & { since: number } = { lines: 0, bytes: 0, since: 0 };
  #ended: (DroppedOutput & { seconds: number }) | undefined;

  /** `now` is a monotonic clock in milliseconds (for tests). */
  constructor(limits: OutputLimits, now: () => number = () => performance.now()) {
    this.#limits = limits;
    this.#now = now;
  }

  /** True while output is being dropped. */
  get dropping(): boolean {
    this.#roll();
    return this.#dropping;
  }

  /**
   * Counts one line of `bytes` bytes: "log" when it fits the budget, "over"
   * when it is the first line past it (dropped; the caller says so once),
   * "drop" while dropping.
   */
  admit(bytes: number): Admission {
    this.#roll();
    this.#lines++;
    this.#bytes += bytes;
    if (this.#dropping) {
      this.#count(1, bytes);
      return "drop";
    }
    if (this.#lines > this.#limits.linesPerSecond || this.#bytes > this.#limits.bytesPerSecond) {
      this.#dropping = true;
      this.#episode = { lines: 0, bytes: 0, since: this.#now() };
      this.#count(1, bytes);
      return "over";
    }
    return "log";
  }

  /** Counts output dropped without being split into lines (while dropping). */
  drop(lines: number, bytes: number): void {
    this.#roll();
    this.#lines += lines;
    this.#bytes += bytes;
    this.#count(lines, bytes);
  }

  /** Output dropped since the last call (for counters); zero when none. */
  takeDropped(): DroppedOutput {
    this.#roll();
    const dropped = this.#unreported;
    this.#unreported = { lines: 0, bytes: 0 };
    return dropped;
  }

  /**
   * The totals of a flood that has ended since the last call (a whole
   * second of output fit the budget again), once; undefined otherwise.
   * `force` ends a flood in progress (the worker is gone).
   */
  takeEnded(force = false): (DroppedOutput & { seconds: number }) | undefined {
    this.#roll();
    if (force && this.#dropping) this.#end();
    const ended = this.#ended;
    this.#ended = undefined;
    return ended;
  }

  #count(lines: number, bytes: number): void {
    this.#unreported.lines += lines;
    this.#unreported.bytes += bytes;
    this.#episode.lines += lines;
    this.#episode.bytes += bytes;
  }

  /** Starts a new window when the current one is over, and ends a flood after a calm one. */
  #roll(): void {
    const now = this.#now();
    if (this.#windowStart === undefined) {
      this.#windowStart = now;
      return;
    }
    const elapsed = now - this.#windowStart;
    if (elapsed < WINDOW_MS) return;
    // A window with no output at all also counts as calm.
    const calm = elapsed >= 2 * WINDOW_MS ||
      (this.#lines <= this.#limits.linesPerSecond && this.#bytes <= this.#limits.bytesPerSecond);
    this.#windowStart = now - (elapsed % WINDOW_MS);
    this.#lines = 0;
    this.#bytes = 0;
    if (this.#dropping && calm) this.#end();
  }

  #end(): void {
    this.#dropping = false;
    this.#ended = {
      lines: this.#episode.lines,
      bytes: this.#episode.bytes,
      seconds: Math.max(1, Math.round((this.#now() - this.#episode.since) / 1000)),
    };
  }
}

/** The number of line feeds in `bytes`. */
export function countLines(bytes: Uint8Array): number {
  let count = 0;
  for (let i = bytes.indexOf(10); i !== -1; i = bytes.indexOf(10, i + 1)) count++;
  return count;
}
