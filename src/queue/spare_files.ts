/**
 * Empty files made ahead of need. Creating a file (allocating its inode) is
 * the slowest step of storing a small message: on ext4 it costs about as
 * much as the fdatasync, and creates in one directory run one at a time
 * under its lock. A file made while the server waits on the network costs
 * the client nothing; taking it is a rename, a twentieth of a create.
 * When none is ready, the file is created on the spot, as before.
 *
 * Spares are empty and unnamed to the rest of Postern: they sit in their
 * own directory, are never written there, and whatever is found there at
 * start-up is removed.
 *
 * @module
 */

import { readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { durabilityFs, type DurableHandle } from "./fs_calls.ts";

/** A spare file: its path in the spare directory and its open handle. */
interface Spare {
  path: string;
  handle: DurableHandle;
}

/** Options of {@linkcode SpareFiles}. */
export interface SpareFilesOptions {
  /** How many spares are kept ready (default 8; 0 turns the pool off). */
  target?: number;
  /** How many are created at once when the pool refills (default 2). */
  parallel?: number;
}

/** Spare files in one directory, taken under a new name on the same file system. */
export class SpareFiles {
  #dir: string;
  #target: number;
  #parallel: number;
  #ready: Spare[] = [];
  #creating = 0;
  #serial = 0;
  #closed = false;
  /** Resolves when the creates in flight have ended (for close). */
  #inFlight = new Set<Promise<void>>();

  /** Spares in `dir`, which must exist and be on the file system of the targets. */
  constructor(dir: string, options: SpareFilesOptions = {}) {
    this.#dir = dir;
    this.#target = options.target ?? 8;
    this.#parallel = Math.max(1, options.parallel ?? 2);
  }

  /** Removes what an earlier run left in the directory (spares are empty: nothing is lost). */
  async clean(): Promise<void> {
    for (const name of await readdir(this.#dir)) {
      await unlink(join(this.#dir, name)).catch(() => {});
    }
  }

  /** How many spares are ready now. */
  get ready(): number {
    return this.#ready.length;
  }

  /**
   * An open, empty file at `path`, readable and writable, mode 0600: a
   * spare renamed there, or a file created there when none is ready.
   * Refills the pool in the background either way. The caller makes sure
   * nothing is at `path`: a rename would replace it (a created file is
   * opened exclusively and fails with EEXIST instead).
   */
  async take(path: string): Promise<DurableHandle> {
    const spare = this.#ready.shift();
    this.#refill();
    if (spare) {
      try {
        await durabilityFs.rename(spare.path, path);
        return spare.handle;
      } catch {
        // Removed under us, or a failing disk: this spare is lost, not the
        // message, which gets a file of its own (one try, not a loop over
        // spares that a failing disk would keep making and losing).
        await spare.handle.close().catch(() => {});
        await unlink(spare.path).catch(() => {});
      }
    }
    return await durabilityFs.open(path, "wx+", 0o600);
  }

  /** Stops refilling, then closes and removes the spares. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#inFlight);
    const spares = this.#ready.splice(0);
    await Promise.all(spares.map(async ({ path, handle }) => {
      await handle.close().catch(() => {});
      await unlink(path).catch(() => {});
    }));
  }

  #refill(): void {
    while (
      !this.#closed && this.#creating < this.#parallel &&
      this.#ready.length + this.#creating < this.#target
    ) {
      this.#creating++;
      const done: Promise<void> = this.#create().then((made) => {
        this.#creating--;
        this.#inFlight.delete(done);
        // Stop at the first failure (a full disk): the next take tries again.
        if (made) this.#refill();
      });
      this.#inFlight.add(done);
    }
  }

  /** Makes one spare; false when that failed. */
  async #create(): Promise<boolean> {
    const path = join(this.#dir, `spare-${++this.#serial}`);
    let handle: DurableHandle;
    try {
      handle = await durabilityFs.open(path, "wx+", 0o600);
    } catch {
      // A full disk or a leftover name: the next take creates its own file,
      // which reports the error where it matters.
      return false;
    }
    if (this.#closed) {
      await handle.close().catch(() => {});
      await unlink(path).catch(() => {});
      return false;
    }
    this.#ready.push({ path, handle });
    return true;
  }
}
