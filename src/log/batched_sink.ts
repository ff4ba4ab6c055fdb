/**
 * A log sink that gathers the lines written during one turn of the event
 * loop and writes them with one call. Under load each message makes four or
 * five mail log lines (connect, queued, hook, delivery, completed), and each
 * line written on its own is one `write` system call on the main thread;
 * gathered, a turn that serves many sessions writes once.
 *
 * Lines reach the file at the end of the turn that made them, in order. A
 * turn is short (the event loop does not wait in between), and `flush()`
 * writes what is pending at once: the daemon calls it before it exits.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { LogSink } from "./logger.ts";

/**
 * Pending text past this is written at once, so that a turn that logs a
 * great deal (a queue of thousands loaded at start-up) holds no more.
 */
const MAX_PENDING_CHARS = 64 * 1024;

/** Lines gathered for one write per turn of the event loop. */
export class BatchedSink {
  #sink: LogSink;
  #pending = "";
  #scheduled = false;

  /** Creates a sink that writes to `sink` (a whole batch of lines per call). */
  constructor(sink: LogSink) {
    this.#sink = sink;
  }

  /** Adds one line (newline included); it is written at the end of this turn. */
  readonly write: LogSink = (line) => {
    this.#pending += line;
    if (this.#pending.length >= MAX_PENDING_CHARS) {
      this.flush();
    } else if (!this.#scheduled) {
      this.#scheduled = true;
      // setImmediate runs after the I/O callbacks of this turn: the lines
      // of every session served in it go out together.
      setImmediate(this.#flushScheduled);
    }
  };

  /** Writes the pending lines now. */
  flush(): void {
    const text = this.#pending;
    if (text === "") return;
    this.#pending = "";
    this.#sink(text);
  }

  #flushScheduled = (): void => {
    this.#scheduled = false;
    this.flush();
  };
}
