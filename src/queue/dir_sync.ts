/**
 * Group commit for directory fsyncs. A rename is durable only once its
 * directory is fsynced; when many sessions rename into the same directory
 * at once, one fsync issued after all of their renames covers them all.
 *
 * @module
 */

import { type FileHandle, open } from "node:fs/promises";

interface Batch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Coalesces fsync requests for one directory. */
export class DirSyncer {
  #path: string;
  #handle: Promise<FileHandle> | undefined;
  #next: Batch | undefined;
  #running = false;

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
    if (!this.#running) this.#drain();
    return promise;
  }

  /** Closes the directory handle. */
  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    if (handle) await (await handle).close().catch(() => {});
  }

  async #drain(): Promise<void> {
    this.#running = true;
    while (this.#next) {
      const batch = this.#next;
      this.#next = undefined;
      try {
        this.#handle ??= open(this.#path, "r");
        await (await this.#handle).sync();
        batch.resolve();
      } catch (err) {
        this.#handle = undefined;
        batch.reject(err);
      }
    }
    this.#running = false;
  }
}
