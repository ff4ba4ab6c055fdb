/**
 * Message files made ahead of need, in `queue/` under the queue IDs they
 * will carry, their names already durable.
 *
 * Before a 250, a message's file needs two things on disk: its name in
 * `queue/` (an fsync of the directory) and its content (an fdatasync).
 * Made on the spot, every message pays for a create and a directory fsync
 * of its own; on Deno those two calls were about a tenth of the CPU of a
 * message sent one per session. A spare is created while the server waits
 * on the network, in a batch whose one directory fsync makes all of their
 * names durable; only then is it ready. Receiving into it writes and
 * fdatasyncs the file, with nothing left for the directory.
 *
 * The ID comes with the file, so it is handed out when the transaction
 * starts (MAIL FROM: the transaction's log lines carry it) and held until
 * DATA claims it. A transaction that ends without a message gives its
 * spare back: to be used again when no log line carried its ID, else to
 * be removed, as a queue ID names one transaction in the logs. When none
 * is ready (a burst, a bounce, after a
 * quiet spell), the ID is made fresh and the file created at DATA, as
 * before.
 *
 * An unused spare is an empty file in `queue/`: what a crash leaves of it
 * is removed at start-up like any message never acknowledged (see
 * `Spool.load`), without a log line, as nothing of it was written. IDs sort
 * by time; a spare older than a minute is not handed out, so an ID's time
 * stays within a minute of its transaction's.
 *
 * @module
 */

import { join } from "node:path";
import type { DirSyncer } from "./dir_sync.ts";
import { durabilityFs, type DurableHandle } from "./fs_calls.ts";
import { newQueueId } from "./id.ts";

/** The most spares kept ready unless told otherwise (the descriptor budget counts them). */
export const SPARE_TARGET = 16;

/** A spare file. */
interface Spare {
  handle: DurableHandle;
  /** When its name became durable (ms): its age. */
  since: number;
}

/** A spare handed out: the spare, and when (ms). */
interface Held {
  spare: Spare;
  at: number;
}

/** Options of {@linkcode SpareFiles}. */
export interface SpareFilesOptions {
  /**
   * The most spares kept ready (default 16; 0 turns the pool off). The
   * pool starts smaller and grows to it only while mail comes faster than
   * the pool refills (see {@linkcode SpareFiles.size}).
   */
  target?: number;
  /** How many are created at once while the pool refills (default 4). */
  parallel?: number;
  /** Spares older than this are not handed out (default 60 000 ms). */
  maxAgeMs?: number;
  /**
   * A held spare neither claimed nor given back after this long is removed
   * (default one hour): a safety net, as a transaction gives its ID back
   * when it ends.
   */
  maxHoldMs?: number;
  /** The clock, in milliseconds (tests). */
  now?: () => number;
}

/** Spare message files in `queue/`, each under the queue ID it will carry. */
export class SpareFiles {
  #dir: string;
  #syncer: DirSyncer;
  #target: number;
  /** How many spares the pool keeps now, between 1 and the target. */
  #size: number;
  #parallel: number;
  #maxAgeMs: number;
  #maxHoldMs: number;
  #now: () => number;
  /** Ready spares by ID, about oldest first (one given back keeps its age). */
  #ready = new Map<string, Spare>();
  /** Spares handed out by {@linkcode hold}, by ID, oldest first. */
  #held = new Map<string, Held>();
  #refilling: Promise<void> | undefined;
  /** A batch was ever made ready: before, an empty pool is the first start, not a sign of demand. */
  #everReady = false;
  #closed = false;

  /** Spares in `dir` (the queue directory), whose names `syncer` makes durable. */
  constructor(dir: string, syncer: DirSyncer, options: SpareFilesOptions = {}) {
    this.#dir = dir;
    this.#syncer = syncer;
    this.#target = Math.max(0, options.target ?? SPARE_TARGET);
    this.#size = Math.min(this.#target, 2);
    this.#parallel = Math.max(1, options.parallel ?? 4);
    this.#maxAgeMs = options.maxAgeMs ?? 60_000;
    this.#maxHoldMs = options.maxHoldMs ?? 3_600_000;
    this.#now = options.now ?? Date.now;
  }

  /** How many spares are ready now. */
  get ready(): number {
    return this.#ready.size;
  }

  /**
   * How many spares the pool keeps now. It doubles (up to the target) when
   * a transaction finds none ready, and halves (down to one) when spares go
   * unused for their minute: a server taking a message now and then makes
   * one spare for each, not a batch of sixteen to throw away.
   */
  get size(): number {
    return this.#size;
  }

  /** How many are held by transactions now. */
  get held(): number {
    return this.#held.size;
  }

  /**
   * The ID of a ready spare, now held for one transaction until
   * {@linkcode claim} or {@linkcode release}; undefined when none is ready
   * (then the caller makes an ID of its own). Refills the pool either way.
   */
  hold(): string | undefined {
    const now = this.#now();
    const unused = this.#dropStale(now);
    if (unused) this.#size = Math.max(Math.min(1, this.#target), Math.floor(this.#size / 2));
    const next = this.#ready.entries().next();
    let id: string | undefined;
    if (!next.done) {
      const [readyId, spare] = next.value;
      this.#ready.delete(readyId);
      this.#held.set(readyId, { spare, at: now });
      id = readyId;
    } else if (this.#everReady && !unused) {
      // Mail outran the pool: keep more.
      this.#size = Math.min(this.#target, this.#size * 2);
    }
    this.#refill();
    return id;
  }

  /**
   * The open, empty file (readable and writable, mode 0600) of the held
   * spare `id`, whose name in the directory is durable; undefined when
   * `id` is not held (then the caller creates the file).
   */
  claim(id: string): DurableHandle | undefined {
    const held = this.#held.get(id);
    if (!held) return undefined;
    this.#held.delete(id);
    return held.spare.handle;
  }

  /**
   * Gives back a held spare whose transaction ended without a message. It
   * is removed, unless `unnamed` says that no log line carried its ID and
   * the pool has room: then it goes back to the ready spares, with the age
   * it has, as if it had never been handed out (a client's MAIL FROM and
   * RSET, over and over, cost no file each; an ID still names one
   * transaction in the logs).
   */
  release(id: string, unnamed = false): void {
    const held = this.#held.get(id);
    if (!held) return;
    this.#held.delete(id);
    // Never more ready than the pool's size: spares held while a batch
    // refilled behind them would otherwise all come back on top of it.
    if (unnamed && !this.#closed && this.#ready.size < this.#size) {
      this.#ready.set(id, held.spare);
    } else void this.#discard(id, held.spare);
  }

  /** Stops refilling, then closes and removes the spares, held ones too. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#refilling;
    const spares: Array<[string, Spare]> = [...this.#ready];
    for (const [id, { spare }] of this.#held) spares.push([id, spare]);
    this.#ready.clear();
    this.#held.clear();
    await Promise.all(spares.map(([id, spare]) => this.#discard(id, spare)));
  }

  /**
   * Removes ready spares past their age and held ones past the hold limit;
   * true when a ready one went unused.
   */
  #dropStale(now: number): boolean {
    let unused = false;
    // All of them: one given back keeps its age but goes to the end.
    for (const [id, spare] of this.#ready) {
      if (now - spare.since <= this.#maxAgeMs) continue;
      this.#ready.delete(id);
      unused = true;
      void this.#discard(id, spare);
    }
    for (const [id, { spare, at }] of this.#held) {
      if (now - at <= this.#maxHoldMs) break;
      this.#held.delete(id);
      void this.#discard(id, spare);
    }
    return unused;
  }

  /**
   * Starts a batch when fewer than half the pool's size are ready: the
   * missing files are created, `parallel` at a time, and made ready
   * together after one fsync of the directory.
   */
  #refill(): void {
    if (this.#closed || this.#refilling || this.#ready.size * 2 >= this.#size) return;
    this.#refilling = this.#batch(this.#size - this.#ready.size).finally(() => {
      this.#refilling = undefined;
    });
  }

  async #batch(count: number): Promise<void> {
    const made: Array<[string, DurableHandle]> = [];
    let started = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && !this.#closed && started < count) {
        started++;
        const id = newQueueId(this.#now());
        try {
          // Exclusive: an ID already in queue/ (a repeat, however unlikely)
          // fails here rather than taking over that message's file.
          made.push([id, await durabilityFs.open(this.#path(id), "wx+", 0o600)]);
        } catch {
          // A full disk, a failing one, or a repeat: stop, and the next hold
          // tries again; the message itself reports the error where it matters.
          failed = true;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#parallel, count) }, worker));
    // No file made (EMFILE, ENOSPC, closed): no name to make durable, and no
    // fsync of queue/ for each MAIL FROM while the condition lasts.
    if (made.length === 0) return;
    try {
      if (this.#closed) throw new Error("closed");
      await this.#syncer.sync();
    } catch {
      // Never ready with a name that may not be durable.
      await Promise.all(made.map(([id, handle]) => this.#discard(id, { handle, since: 0 })));
      return;
    }
    const since = this.#now();
    // Spares given back while the batch ran may have filled the pool: never
    // more ready than its size, or what a burst left behind stays in queue/.
    const room = Math.max(0, this.#size - this.#ready.size);
    for (const [id, handle] of made.slice(0, room)) this.#ready.set(id, { handle, since });
    this.#everReady = true;
    await Promise.all(made.slice(room).map(([id, handle]) => this.#discard(id, { handle, since })));
  }

  async #discard(id: string, spare: Spare): Promise<void> {
    await spare.handle.close().catch(() => {});
    // Not synced: a name that comes back after a crash is an empty file,
    // removed at start-up.
    await durabilityFs.unlink(this.#path(id)).catch(() => {});
  }

  #path(id: string): string {
    return join(this.#dir, `${id}.msg`);
  }
}
