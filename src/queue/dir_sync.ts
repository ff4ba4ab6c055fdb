/**
 * Group commit for directory fsyncs. A rename is durable only once its
 * directory is fsynced; when many sessions rename into the same directory
 * at once, one fsync issued after all of their renames covers them all.
 *
 * @module
 */

import { durabilityFs } from "./fs_calls.ts";

interface Batch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Coalesces fsync requests for one directory. */
export class DirSyncer {
  #path: string;
  #next: Batch | undefined;
  #running = false;
  #drained: Promise<void> = Promise.resolve();

  /** Creates a syncer for the directory at `path`. */
  constructor(path: string) {
    this.#path = path;
  }

  /**
   * Resolves once an fsync of the directory that started after this call
   * has completed, so every rename made before the call is durable.
   */
  sync(): Promise<void> {
    if (!this.#next) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#next = { promise, resolve, reject };
    }
    const { promise } = this.#next;
    if (!this.#running) this.#drained = this.#drain();
    return promise;
  }

  /**
   * Resolves once the syncs asked for so far have finished, so that a
   * shutdown does not end the process in the middle of one. Nothing is
   * held open between syncs, so there is nothing else to release.
   */
  close(): Promise<void> {
    return this.#drained;
  }

  async #drain(): Promise<void> {
    this.#running = true;
    while (this.#next) {
      const batch = this.#next;
      this.#next = undefined;
      try {
        // Opened per sync, not held: a Maildir per recipient must not pin a
        // descriptor each for the life of the process.
        const handle = await durabilityFs.open(this.#path, "r");
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        batch.resolve();
      } catch (err) {
        batch.reject(err);
      }
    }
    this.#running = false;
  }
}
