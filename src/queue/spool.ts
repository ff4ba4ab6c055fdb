/**
 * The durable spool. Layout under `<data>/spool/`:
 *
 * ```text
 * queue/<id>.msg       one message: a seal line (see seal.ts), a JSON
 *                      envelope line (padded with spaces), then the message
 *                      exactly as it will be delivered (CRLF lines)
 * queue/<id>.state     per-recipient delivery state, once it has changed
 * incoming/            state files before their rename, and the rare copy
 *                      of a message whose added headers outgrew their room;
 *                      emptied at start-up
 * corrupt/             files that failed validation, moved aside
 * ```
 *
 * A message's file is in `queue/` from its first byte, with an open seal:
 * made there ahead of need (an empty spare, see spare_files.ts), or when
 * the message starts to arrive.
 * It is in the queue from the instant its sealed content is durable (one
 * fdatasync, after the fsync of `queue/` that made its name durable); the
 * 250 reply is sent only after that. Unsealed files are removed at
 * start-up: those messages were never acknowledged (unless a state file,
 * written only after the 250, says otherwise: then the file is damaged,
 * and moved aside with the rest).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { lstatSync, type Stats } from "node:fs";
import { mkdir, readdir, readFile, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { messageReadBytes } from "../runtime/mod.ts";
import { DirSyncer } from "./dir_sync.ts";
import { DurableFile, writeFileDurably } from "./durable_file.ts";
import { durabilityFs } from "./fs_calls.ts";
import { quickOpen } from "./quick_fs.ts";
import { isQueueId, newQueueId } from "./id.ts";
import { moveAside } from "./quarantine.ts";
import { OPEN_SEAL } from "./seal.ts";
import { SpareFiles, type SpareFilesOptions } from "./spare_files.ts";
import { checkSeal, parseRecord, readFirstLine } from "./spool_read.ts";
import { headRegion, SpoolWriter } from "./spool_writer.ts";
import {
  type DeliveryState,
  DeliveryStateSchema,
  type Envelope,
  EnvelopeSchema,
  initialState,
} from "./records.ts";

export { SpoolWriter } from "./spool_writer.ts";

/** A queued message as read from the spool. */
export interface SpoolItem {
  envelope: Envelope;
  state: DeliveryState;
  /** Byte offset of the message after the envelope line. */
  dataOffset: number;
  /** True when the item was found on disk at start-up, not just received. */
  recovered: boolean;
}

/**
 * A spool file that failed validation: moved to `corrupt/` (`file` is its
 * new path), or, when even that failed, left in `queue/` (`file` is where
 * it stays, and `reason` says why it was not moved); either way never
 * delivered.
 */
export interface CorruptFile {
  file: string;
  reason: string;
}

/**
 * Room kept at the head of a spool file for what is only known after the
 * message has arrived (hook and authentication headers), so they can be
 * put in place without copying the message.
 */
export const HEAD_RESERVE = 4096;

/** How each kind of unsealed file is named in the reason it is moved aside. */
const UNSEALED = {
  open: "its seal is open",
  blank: "its head is blank (no seal)",
  empty: "it is empty (no seal)",
} as const;

/** Options of {@linkcode Spool}. */
export interface SpoolOptions {
  /** The pool of spare message files (tests). */
  spares?: SpareFilesOptions;
}

/** The spool directory. */
export class Spool {
  readonly root: string;
  #incoming: string;
  #queue: string;
  #corrupt: string;
  #queueSync: DirSyncer;
  #spares: SpareFiles;
  /** IDs of the messages being received (their files are not sealed yet). */
  #receiving = new Set<string>();
  /** IDs of the messages in the queue: committed or loaded, not yet removed. */
  #queued = new Set<string>();
  /** IDs of damaged messages that could not be moved to `corrupt/`: left in `queue/`, skipped. */
  #stuck = new Set<string>();
  /**
   * IDs that may have a state file: saved by this process, or found at
   * start-up. Most messages are delivered at the first attempt and never
   * get one, and their removal skips the unlink that would fail.
   */
  #mayHaveState = new Set<string>();
  /** The last save of each item whose state is being saved (see {@linkcode saveState}). */
  #saving = new Map<string, Promise<void>>();

  /** Creates the spool under `<dataDir>/spool`. Call {@linkcode init}. */
  constructor(dataDir: string, options: SpoolOptions = {}) {
    this.root = join(dataDir, "spool");
    this.#incoming = join(this.root, "incoming");
    this.#queue = join(this.root, "queue");
    this.#corrupt = join(this.root, "corrupt");
    // The queue directory is fsynced for every message: its handle is held.
    this.#queueSync = new DirSyncer(this.#queue, { hold: true });
    this.#spares = new SpareFiles(this.#queue, this.#queueSync, options.spares);
  }

  /**
   * Creates the directories and removes what a crash left in `incoming/`:
   * those messages were never acknowledged, so the client still has them.
   */
  async init(): Promise<void> {
    for (const dir of [this.#incoming, this.#queue, this.#corrupt]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    }
    for (const name of await readdir(this.#incoming)) {
      await unlink(join(this.#incoming, name)).catch(() => {});
    }
    // Earlier builds kept their empty spare files in spare/: nothing of a
    // message was ever there.
    await rm(join(this.root, "spare"), { recursive: true, force: true });
  }

  /**
   * A queue ID for a transaction that starts now: one whose file is
   * already made and durable in `queue/` when a spare is ready (see
   * spare_files.ts), else a new one. Give it back with
   * {@linkcode releaseId} when the transaction ends without a message.
   */
  newId(): string {
    return this.#spares.hold() ?? newQueueId();
  }

  /**
   * The transaction of an ID from {@linkcode newId} ended: its spare file,
   * unless {@linkcode receive} took it, is removed, or kept for another
   * transaction when `unnamed` (no log line carried the ID). Harmless for
   * any other ID.
   */
  releaseId(id: string, unnamed = false): void {
    this.#spares.release(id, unnamed);
  }

  /**
   * Starts receiving a message with the given envelope into
   * `queue/<id>.msg`, with an open seal: the spare file made for the ID
   * when {@linkcode newId} gave one, else a file created there now, and
   * then the fsync of `queue/` that makes its name durable starts at once
   * and runs while the message arrives. An ID already being received or
   * queued is refused with EEXIST (IDs are random, but nothing else rules
   * a repeat out, and the caller can pick another).
   */
  async receive(envelope: Envelope): Promise<SpoolWriter> {
    const id = envelope.id;
    if (this.#receiving.has(id) || this.#queued.has(id) || this.#stuck.has(id)) {
      throw Object.assign(new Error(`queue ID ${id} is already in use`), {
        code: "EEXIST",
      });
    }
    this.#receiving.add(id);
    const done = (committed = false) => {
      this.#receiving.delete(id);
      if (committed) this.#queued.add(id);
    };
    const path = this.#messagePath(id);
    let file: DurableFile;
    let entryDurable: Promise<void>;
    const spare = this.#spares.claim(id);
    if (spare) {
      // Its name was made durable before it was handed out.
      file = DurableFile.fromHandle(spare, path);
      entryDurable = Promise.resolve();
    } else {
      try {
        file = await DurableFile.create(path);
      } catch (err) {
        done();
        throw err;
      }
      entryDurable = this.#queueSync.sync();
      // Awaited at commit; a failure before then is not unhandled meanwhile.
      entryDurable.catch(() => {});
    }
    try {
      const line = new TextEncoder().encode(JSON.stringify(envelope));
      await file.write(OPEN_SEAL);
      await file.write(headRegion(line, line.byteLength + 1 + HEAD_RESERVE, new Uint8Array(0)));
    } catch (err) {
      await file.abort();
      done();
      throw err;
    }
    const copyPath = join(this.#incoming, `${id}.copy`);
    return new SpoolWriter(
      envelope,
      file,
      { finalPath: path, entryDurable, syncer: this.#queueSync, copyPath },
      done,
    );
  }

  /**
   * Reads every queued item back, validating seals, envelopes and states.
   * Invalid files are moved to `corrupt/` and reported, never fatal: one
   * that cannot be moved either is reported, left where it is and skipped.
   * The unsealed files of messages that were still arriving when the server
   * stopped are removed, and their IDs returned as `unfinished`.
   */
  async load(): Promise<{ items: SpoolItem[]; corrupt: CorruptFile[]; unfinished: string[] }> {
    const entries = await readdir(this.#queue);
    const items: SpoolItem[] = [];
    const corrupt: CorruptFile[] = [];
    const unfinished: string[] = [];
    // Only regular files are Postern's: opening a FIFO to read waits for a
    // writer (start-up hung there, with no line logged), and a symbolic
    // link names a file outside the spool that nothing vouches for.
    const strange = new Map<string, string>();
    const gone = new Set<string>();
    for (const name of entries) {
      // lstat, not the entry's type from readdir: some file systems leave
      // that unknown. At once: a stat of an entry just listed is cached
      // metadata, and a trip to the I/O threads per file would slow the
      // start of a big queue. An entry that cannot be statted is left to
      // the checks below, which quarantine what they cannot read.
      let info: Stats | undefined;
      try {
        info = lstatSync(join(this.#queue, name), { throwIfNoEntry: false });
      } catch {
        continue;
      }
      if (info === undefined) gone.add(name);
      else if (!info.isFile()) strange.set(name, notRegular(info));
    }
    const present = new Set(entries);
    const moved = new Set<string>();
    for (const [name, reason] of strange) {
      if (moved.has(name)) continue;
      // A message goes aside with its state file, as every damaged one does:
      // left behind, the state would be taken for a delivered message's.
      const base = name.replace(/\.(msg|state)$/, "");
      const [msg, state] = [`${base}.msg`, `${base}.state`];
      const group: [string, ...string[]] = base === name
        ? [name]
        : present.has(msg)
        ? (present.has(state) ? [msg, state] : [msg])
        : [state];
      for (const n of group) moved.add(n);
      corrupt.push((await this.#quarantine(group, reason)).found);
    }
    const names = entries.filter((name) => !moved.has(name) && !gone.has(name));
    const messages = new Set(names.filter((n) => n.endsWith(".msg")).map((n) => n.slice(0, -4)));
    const states = new Set(names.filter((n) => n.endsWith(".state")).map((n) => n.slice(0, -6)));
    for (const name of names) {
      if (name.endsWith(".state") && !messages.has(name.slice(0, -6))) {
        // The message was delivered and removed before its state file.
        await unlink(join(this.#queue, name)).catch(() => {});
      } else if (!name.endsWith(".msg") && !name.endsWith(".state")) {
        corrupt.push((await this.#quarantine([name], "not a spool file")).found);
      }
    }
    for (const id of [...messages].sort()) {
      try {
        this.#mayHaveState.add(id);
        const item = await this.#readItem(id);
        if ("envelope" in item) {
          items.push(item);
          this.#queued.add(id);
          continue;
        }
        if (item.unsealed === "empty" && !states.has(id)) {
          // A spare never used, or a message of which nothing reached the
          // disk: no message to speak of.
          this.#mayHaveState.delete(id);
          await unlink(this.#messagePath(id));
          continue;
        }
        if (states.has(id)) {
          // A state file is written only for a queued item, after its
          // commit: this message was acknowledged, and the client has
          // forgotten it. Its head was lost since (a damaged block reads
          // as zeros), so it is moved aside like any damaged file, never
          // removed.
          throw new Error(
            `${UNSEALED[item.unsealed]}, ` +
              "yet its delivery state file shows it was acknowledged",
          );
        }
        // Never acknowledged: the client still has the message.
        unfinished.push(id);
        this.#mayHaveState.delete(id);
        await unlink(this.#messagePath(id));
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        const { found, moved } = await this.#quarantine(
          states.has(id) ? [`${id}.msg`, `${id}.state`] : [`${id}.msg`],
          reason,
        );
        if (!moved) this.#stuck.add(id);
        corrupt.push(found);
      }
    }
    return { items, corrupt, unfinished };
  }

  /**
   * Streams the message of an item (without the envelope line). Nothing is
   * opened until the first read: a delivery that finds the message already
   * stored (after a crash) never reads it, and a file opened for nothing
   * could be unlinked under the pending open, whose error nobody would hear.
   */
  async *openMessage(item: SpoolItem): AsyncGenerator<Uint8Array> {
    // Opened on an I/O thread, then read at once from the page cache (see
    // quick_fs.ts): a stream made a trip to the I/O threads per read and
    // one for the close. Read to the end of the file, not bounded by its
    // size, in buffers of the runtime's size (see messageReadBytes): Bun's
    // bounded streams took 50-90 MB more peak memory at c=20.
    const handle = await quickOpen(this.#messagePath(item.envelope.id), "r");
    try {
      let position = item.dataOffset;
      for (;;) {
        // Buffers, not plain Uint8Arrays: mailauth's parsers call Buffer methods.
        const chunk = Buffer.allocUnsafe(messageReadBytes);
        const { bytesRead } = await handle.read(chunk, 0, chunk.byteLength, position);
        if (bytesRead > 0) yield chunk.subarray(0, bytesRead);
        // A regular file reads short only at its end, and a committed
        // message file does not grow: no second read to learn that.
        if (bytesRead < chunk.byteLength) return;
        position += bytesRead;
      }
    } finally {
      await handle.close().catch(() => {});
    }
  }

  /**
   * Durably records the delivery state of an item. Saves of one item run
   * one after the other, in the order called, so the last call's state is
   * the one on disk: each writes through the same temporary name, created
   * exclusively, and a second one at once failed with EEXIST.
   */
  async saveState(id: string, state: DeliveryState): Promise<void> {
    this.#mayHaveState.add(id);
    const data = new TextEncoder().encode(JSON.stringify(state));
    const before = this.#saving.get(id);
    const save = (before ?? Promise.resolve()).catch(() => {}).then(() =>
      writeFileDurably(
        join(this.#incoming, `${id}.state`),
        join(this.#queue, `${id}.state`),
        data,
        this.#queueSync,
      )
    );
    this.#saving.set(id, save);
    try {
      await save;
    } finally {
      if (this.#saving.get(id) === save) this.#saving.delete(id);
    }
  }

  /**
   * Removes a finished item: the message first, so that a crash in between
   * leaves only a state file, which {@linkcode load} cleans up.
   */
  async remove(id: string): Promise<void> {
    await durabilityFs.unlink(this.#messagePath(id)).catch(ignoreMissing);
    this.#queued.delete(id);
    if (!this.#mayHaveState.delete(id)) return;
    await durabilityFs.unlink(join(this.#queue, `${id}.state`)).catch(ignoreMissing);
  }

  /** Removes the spare files, then closes the held directory handle. */
  async close(): Promise<void> {
    await this.#spares.close();
    await this.#queueSync.close();
  }

  #messagePath(id: string): string {
    return join(this.#queue, `${id}.msg`);
  }

  /** The item, or how its file looks when it was never sealed. */
  async #readItem(id: string): Promise<SpoolItem | { unsealed: "open" | "blank" | "empty" }> {
    if (!isQueueId(id)) throw new Error(`"${id}" is not a queue ID`);
    const path = this.#messagePath(id);
    const start = await checkSeal(path);
    if (typeof start !== "number") return { unsealed: start };
    const { line, offset } = await readFirstLine(path, start);
    const envelope = parseRecord(EnvelopeSchema, line, "envelope");
    if (envelope.id !== id) {
      throw new Error(`envelope ID "${envelope.id}" differs from the file name`);
    }
    let state = initialState(envelope);
    const stateText = await readFile(join(this.#queue, `${id}.state`), "utf8").catch(ignoreMissing);
    if (stateText !== undefined) {
      state = parseRecord(DeliveryStateSchema, stateText, "delivery state");
      const addresses = state.recipients.map((r) => r.address).join("\n");
      if (addresses !== envelope.to.join("\n")) {
        throw new Error("delivery state recipients differ from the envelope");
      }
    }
    return { envelope, state, dataOffset: offset, recovered: true };
  }

  /**
   * Moves `names` (a file, then its companions) to `corrupt/`, under names
   * of their own (see moveAside). A failure to move them is reported in
   * the reason, with the file where it stays: one file that cannot be moved
   * must not stop the server.
   */
  async #quarantine(
    names: [string, ...string[]],
    reason: string,
  ): Promise<{ found: CorruptFile; moved: boolean }> {
    try {
      const file = await moveAside(this.#queue, this.#corrupt, names);
      return { found: { file, reason }, moved: true };
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const file = join(this.#queue, names[0]);
      return {
        found: { file, reason: `${reason}; left in queue/, not moved to corrupt/: ${why}` },
        moved: false,
      };
    }
  }
}

function ignoreMissing(err: unknown): undefined {
  if (typeof err === "object" && err !== null && (err as { code?: string }).code === "ENOENT") {
    return undefined;
  }
  throw err;
}

/** Why a directory entry of `queue/` is not taken as a spool file. */
function notRegular(info: Stats): string {
  const kind = info.isSymbolicLink()
    ? "a symbolic link"
    : info.isFIFO()
    ? "a FIFO"
    : info.isDirectory()
    ? "a directory"
    : info.isSocket()
    ? "a socket"
    : "a device or unknown file type";
  return `not a regular file (${kind})`;
}
