/**
 * Free space of the file system under the spool, for the check at MAIL
 * FROM (Postfix's `queue_minfree`). One statfs serves every caller for a
 * short while; bytes spooled since then are counted against it, so the
 * estimate errs low between samples rather than letting a burst of
 * messages fill the disk.
 *
 * @module
 */

import { statfs } from "node:fs/promises";

/** How long one statfs answer is used. */
const MAX_AGE_MS = 1000;

/** Bytes spooled since the last statfs that force a fresh one. */
const MAX_WRITTEN = 64 * 1024 * 1024;

/** Options of {@linkcode FreeSpace}. */
export interface FreeSpaceOptions {
  /** Bytes available to unprivileged users under `path`; default: statfs. */
  measure?: (path: string) => Promise<number>;
  now?: () => number;
}

/** The space left for the spool, measured at most about once a second. */
export class FreeSpace {
  #path: string;
  #measure: (path: string) => Promise<number>;
  #now: () => number;
  #sample: { bytes: number; at: number } | undefined;
  #written = 0;
  #pending: Promise<number | undefined> | undefined;

  /** Measures the file system that holds `path`. */
  constructor(path: string, options: FreeSpaceOptions = {}) {
    this.#path = path;
    this.#measure = options.measure ?? availableBytes;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Bytes free for the spool now (the last measurement less what was
   * spooled since), or undefined when the file system cannot be measured.
   * Callers at the same moment share one measurement.
   */
  async available(): Promise<number | undefined> {
    const sample = this.#sample;
    if (
      sample !== undefined && this.#now() - sample.at < MAX_AGE_MS &&
      this.#written < MAX_WRITTEN
    ) {
      return Math.max(0, sample.bytes - this.#written);
    }
    if (this.#pending === undefined) {
      const pending = this.#refresh();
      this.#pending = pending;
      void pending.then(() => {
        if (this.#pending === pending) this.#pending = undefined;
      });
    }
    return await this.#pending;
  }

  /** Notes `bytes` written to the spool since the last measurement. */
  consumed(bytes: number): void {
    this.#written += bytes;
  }

  async #refresh(): Promise<number | undefined> {
    try {
      const bytes = await this.#measure(this.#path);
      this.#sample = { bytes, at: this.#now() };
      this.#written = 0;
      return bytes;
    } catch {
      this.#sample = undefined;
      return undefined;
    }
  }
}

/** Bytes available to unprivileged users on the file system of `path` (statfs f_bavail). */
async function availableBytes(path: string): Promise<number> {
  const stats = await statfs(path);
  return Number(stats.bavail) * Number(stats.bsize);
}
