/**
 * A message being received into the spool (see spool.ts): written into
 * its file in `queue/` as it arrives, then sealed and made durable.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import type { DirSyncer } from "./dir_sync.ts";
import { DurableFile } from "./durable_file.ts";
import { type Envelope, initialState } from "./records.ts";
import { digestOf, OPEN_SEAL, SEAL_BYTES, sealLine } from "./seal.ts";
import type { SpoolItem } from "./spool.ts";

/** Where a {@linkcode SpoolWriter} keeps its message. */
export interface WriterPlace {
  /** `queue/<id>.msg`, where the file was made. */
  finalPath: string;
  /** Resolves once the file's name in `queue/` is durable. */
  entryDurable: Promise<void>;
  /** Syncs `queue/` after a rename into it (the copy, see #copyWithHead). */
  syncer: DirSyncer;
  /**
   * Where a copy is written before its rename into `queue/`, with a number
   * appended: a second copy reads the first, so it needs a name of its own.
   */
  copyPath: string;
}

/** A message being received into the spool. */
export class SpoolWriter {
  readonly envelope: Envelope;
  #file: DurableFile;
  #place: WriterPlace;
  /** Where the received message (our Received header first) starts in the file. */
  #dataStart: number;
  /** Header lines added after DATA, kept right before `#dataStart`. */
  #head: Uint8Array = new Uint8Array(0);
  /** The envelope changed since its line was written. */
  #envelopeChanged = false;
  /** Tells the spool the message is no longer being received: committed (true) or aborted. */
  #done: (committed: boolean) => void;
  /** Copies made so far (see #copyWithHead). */
  #copies = 0;

  /** @internal Use {@linkcode Spool.receive}. */
  constructor(
    envelope: Envelope,
    file: DurableFile,
    place: WriterPlace,
    done: (committed: boolean) => void = () => {},
  ) {
    this.envelope = envelope;
    this.#file = file;
    this.#place = place;
    this.#dataStart = file.bytes;
    this.#done = done;
  }

  /** Bytes of message data written (not counting the envelope line or added headers). */
  get messageBytes(): number {
    return this.#file.bytes - this.#dataStart;
  }

  /** Appends message data. */
  write(chunk: Uint8Array): Promise<void> {
    return this.#file.write(chunk);
  }

  /**
   * Takes back the last `bytes` bytes of message data written (a header
   * field that was written on before it could be judged, then dropped).
   */
  retract(bytes: number): Promise<void> {
    if (bytes > this.messageBytes) {
      throw new RangeError(`Cannot retract ${bytes} bytes of ${this.messageBytes} written`);
    }
    return this.#file.truncate(this.#file.bytes - bytes);
  }

  /**
   * Flushes what was written and returns where the message, headers added
   * so far included, can be read from before it is committed (for the
   * checks that run after DATA).
   */
  async readable(): Promise<{ path: string; offset: number }> {
    await this.#file.flush();
    return { path: this.#file.path, offset: this.#dataStart - this.#head.byteLength };
  }

  /**
   * The message as it stands (headers added so far included), read back
   * through the open file: the cheap way for the checks after DATA, which
   * would otherwise open the file again for each read.
   */
  message(): AsyncIterable<Uint8Array> {
    return this.#file.read(this.#dataStart - this.#head.byteLength);
  }

  /**
   * Adds header lines (ending in CRLF) at the top of the message, above
   * those added before. They go into the room reserved at the head of the
   * file, so the message is not copied (unless they do not fit).
   */
  async prepend(head: Uint8Array): Promise<void> {
    if (head.byteLength === 0 && !this.#envelopeChanged) return;
    this.#envelopeChanged = false;
    const combined = new Uint8Array(head.byteLength + this.#head.byteLength);
    combined.set(head);
    combined.set(this.#head, head.byteLength);
    const line = new TextEncoder().encode(JSON.stringify(this.envelope));
    const lineBytes = this.#dataStart - SEAL_BYTES - combined.byteLength;
    if (line.byteLength + 1 <= lineBytes) {
      // The envelope line shrinks by padding less; JSON allows the
      // trailing spaces, and the message now starts with the new head.
      // Still in memory when nothing has been written or read yet.
      await this.#file.overwrite(headRegion(line, lineBytes, combined), SEAL_BYTES);
    } else {
      await this.#copyWithHead(line, combined);
    }
    this.#head = combined;
  }

  /**
   * Records SendID and ListID taken from the message's headers; the
   * envelope line is rewritten at commit.
   */
  setIds(ids: { sendid?: string | undefined; listid?: string | undefined }): void {
    // Only these two fields: the envelope is validated strictly when read back.
    if (ids.sendid !== undefined) this.envelope.sendid = ids.sendid;
    if (ids.listid !== undefined) this.envelope.listid = ids.listid;
    this.#envelopeChanged ||= ids.sendid !== undefined || ids.listid !== undefined;
  }

  /**
   * Records whether the message's header section has a `Delivered-To:`
   * field, as the intake saw it (src/smtp/header_guard.ts), so local
   * delivery knows without reading the header again; the envelope line is
   * rewritten at commit.
   */
  setDeliveredTo(present: boolean): void {
    this.envelope.delivered_to = present;
    this.#envelopeChanged = true;
  }

  /**
   * Makes the message durable in the queue, with `head` (header lines
   * ending in CRLF) added at its top; returns the spooled item.
   */
  async commit(head?: Uint8Array): Promise<SpoolItem> {
    if (head || this.#envelopeChanged) await this.prepend(head ?? new Uint8Array(0));
    // The seal covers the envelope, the added headers and the message as
    // they now stand: still in memory for a small message nobody read, else
    // read back from the page cache.
    const whole = this.#file.unwritten();
    const { length, digest } = await digestOf(
      whole ? [whole.subarray(SEAL_BYTES)] : this.#file.read(SEAL_BYTES),
    );
    const seal = sealLine(length, digest);
    // Written last and on its own (writeAt flushes the content first): a
    // write can stop between pages when the process is killed, and a cut
    // content must stay behind an open seal, not a sealed one.
    await this.#file.writeAt(seal, 0);
    const { finalPath, entryDurable, syncer } = this.#place;
    if (this.#file.path === finalPath) await this.#file.commitInPlace(entryDurable);
    else await this.#file.commit(finalPath, syncer);
    this.#done(true);
    return {
      envelope: this.envelope,
      state: initialState(this.envelope),
      dataOffset: this.#dataStart - this.#head.byteLength,
      recovered: false,
    };
  }

  /** Discards the partial message. */
  async abort(): Promise<void> {
    await this.#file.abort();
    this.#done(false);
  }

  /** The rare case of more head than reserved room: a new file with a copy. */
  async #copyWithHead(line: Uint8Array, head: Uint8Array): Promise<void> {
    const path = this.#file.path;
    await this.#file.flush();
    // Made in incoming/ (emptied at start-up) and renamed into queue/ at
    // commit, after its seal and fdatasync; the original goes now.
    const copy = await DurableFile.create(`${this.#place.copyPath}${++this.#copies}`, true);
    const lineBytes = line.byteLength + 1;
    try {
      await copy.write(OPEN_SEAL);
      await copy.write(headRegion(line, lineBytes, head));
      for await (const chunk of createReadStream(path, { start: this.#dataStart })) {
        await copy.write(chunk as Uint8Array);
      }
    } catch (err) {
      await copy.abort();
      throw err;
    }
    await this.#file.abort();
    this.#file = copy;
    this.#dataStart = SEAL_BYTES + lineBytes + head.byteLength;
  }
}

/** The envelope line padded with spaces to `lineBytes`, then `head`. */
export function headRegion(line: Uint8Array, lineBytes: number, head: Uint8Array): Uint8Array {
  const region = new Uint8Array(lineBytes + head.byteLength).fill(0x20);
  region.set(line, 0);
  region[lineBytes - 1] = 0x0a;
  region.set(head, lineBytes);
  return region;
}
