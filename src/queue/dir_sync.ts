/**
 * Group commit for directory fsyncs. A rename is durable only once its
 * directory is fsynced; when many sessions rename into the same directory
 * at once, one fsync issued after all of their renames covers them all.
 *
 * @module
 */

import { durabilityFs, type DurableHandle } from "./fs_calls.ts";

interface Batch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Options of {@linkcode DirSyncer}. */
export interface DirSyncerOptions {
  /**
   * Keep the directory open between syncs (one descriptor for the life of
   * the syncer, two system calls fewer per sync). For the spool's queue
   * directory, synced for every message; not for a Maildir per recipient.
   */
  hold?: boolean;
  /**
   * When the directory is busy (its last fsync ended less than ten times
   * this ago), wait this long before the next fsync, gathering the calls
   * that come meanwhile into it (default 0: never wait). For syncs that no
   * client waits for, such as a Maildir's `new/`, whose sync only lets the
   * spool copy go: fewer fsyncs, each a flush of the device's write cache,
   * leave more of them to the syncs that do stand before a 250. A quiet
   * directory (the mailboxes of a message to many users) is synced at once.
   */
  lingerMs?: number;
}

/** Coalesces fsync requests for one directory. */
export class DirSyncer {
  #path: string;
  #hold: boolean;
  #lingerMs: number;
  /** When the last fsync ended (performance.now()), for `lingerMs`. */
  #lastEnd = -Infinity;
  #held: DurableHandle | undefined;
  #next: Batch | undefined;
  #running = false;
  #drained: Promise<void> = Promise.resolve();

  /** Creates a syncer for the directory at `path`. */
  constructor(path: string, options: DirSyncerOptions = {}) {
    this.#path = path;
    this.#hold = options.hold ?? false;
    this.#lingerMs = Math.max(0, options.lingerMs ?? 0);
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
   * held open between syncs unless `hold` was set; a held directory is
   * closed (the next sync opens it again).
   */
  async close(): Promise<void> {
    await this.#drained;
    const held = this.#held;
    this.#held = undefined;
    await held?.close();
  }

  async #drain(): Promise<void> {
    this.#running = true;
    while (this.#next) {
      if (this.#lingerMs > 0 && performance.now() - this.#lastEnd < 10 * this.#lingerMs) {
        await new Promise((resolve) => setTimeout(resolve, this.#lingerMs));
      }
      const batch = this.#next!;
      this.#next = undefined;
      try {
        if (this.#hold) {
          this.#held ??= await durabilityFs.open(this.#path, "r");
          await this.#held.sync();
        } else {
          // Opened per sync, not held: a Maildir per recipient must not pin
          // a descriptor each for the life of the process.
          const handle = await durabilityFs.open(this.#path, "r");
          try {
            await handle.sync();
          } finally {
            await handle.close();
          }
        }
        this.#lastEnd = performance.now();
        batch.resolve();
      } catch (err) {
        // A held directory that failed is opened afresh for the next sync.
        const held = this.#held;
        this.#held = undefined;
        await held?.close().catch(() => {});
        batch.reject(err);
      }
    }
    this.#running = false;
  }
}
