/**
 * A log sink that appends to a file, and opens it again on request so that
 * logrotate's rename-and-HUP works: lines written after `reopen()` go to a
 * new file of the same name.
 *
 * @module
 */

import { createWriteStream, type WriteStream } from "node:fs";
import type { LogSink } from "./logger.ts";

/** A file the mail log is appended to. */
export class FileSink {
  #path: string;
  #stream: WriteStream;

  /** Opens (creating, mode 0640) `path` for appending. */
  constructor(path: string) {
    this.#path = path;
    this.#stream = this.#open();
  }

  /** Writes one line (newline included). */
  readonly write: LogSink = (line) => {
    this.#stream.write(line);
  };

  /** Opens the file again by name (after a rotation renamed it). */
  reopen(): void {
    const old = this.#stream;
    this.#stream = this.#open();
    old.end();
  }

  /** Flushes and closes the file. */
  close(): Promise<void> {
    return new Promise((resolve) => this.#stream.end(() => resolve()));
  }

  #open(): WriteStream {
    const stream = createWriteStream(this.#path, { flags: "a", mode: 0o640 });
    // A log that cannot be written must not take the server down; the
    // error goes to standard error once.
    stream.once("error", (err) => {
      console.error(`postern: cannot write the mail log ${this.#path}: ${err.message}`);
    });
    return stream;
  }
}
