/**
 * Files that appear complete or not at all: written under a temporary name,
 * fsynced, renamed into place, and made durable by a (group-committed)
 * fsync of the target directory (Maildir messages, state files); or made
 * in place, sealed and fsynced (spool messages, see seal.ts: the seal is
 * what tells a complete file from an incomplete one there).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { constants } from "node:fs";
import type { DirSyncer } from "./dir_sync.ts";
import { durabilityFs, type DurableHandle } from "./fs_calls.ts";
import { concatBytes } from "../bytes.ts";

/**
 * "w+" (read and write, created or emptied) that refuses a symbolic link
 * in the file's place (O_NOFOLLOW): the leftover a replaceable name may
 * find is one this process made, never a link.
 */
const REPLACE_FLAGS = constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC |
  constants.O_NOFOLLOW;
/** Writes are gathered into chunks of about this size before a syscall. */
const FLUSH_BYTES = 256 * 1024;

/** Reads back are done in chunks of this size. */
const READ_BYTES = 64 * 1024;

/** A file being written under its temporary name. */
export class DurableFile {
  #handle: DurableHandle;
  #tmpPath: string;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #closed = false;
  #bytes = 0;

  private constructor(handle: DurableHandle, tmpPath: string) {
    this.#handle = handle;
    this.#tmpPath = tmpPath;
  }

  /**
   * Creates the temporary file. It must not exist yet unless `replace` is
   * set, for names that are deterministic and whose leftover from a crash
   * is garbage to overwrite.
   */
  static async create(tmpPath: string, replace = false): Promise<DurableFile> {
    // Opened for reading too: checks after DATA read the message back
    // through this handle, without opening the file again.
    if (!replace) return new DurableFile(await durabilityFs.open(tmpPath, "wx+", 0o600), tmpPath);
    try {
      return new DurableFile(await durabilityFs.open(tmpPath, REPLACE_FLAGS, 0o600), tmpPath);
    } catch (err) {
      if ((err as { code?: unknown }).code !== "ELOOP") throw err;
    }
    // A symbolic link in the leftover's place: opened through, it would
    // have the message written over whatever file it names (as root, any
    // file at all). The link goes, never what it points to, and the new
    // file is made exclusively, which follows no link (open(2), O_EXCL).
    await durabilityFs.unlink(tmpPath);
    return new DurableFile(await durabilityFs.open(tmpPath, "wx+", 0o600), tmpPath);
  }

  /**
   * Wraps a file already opened empty at `tmpPath` for reading and writing
   * (a spare taken from `SpareFiles`).
   */
  static fromHandle(handle: DurableHandle, tmpPath: string): DurableFile {
    return new DurableFile(handle, tmpPath);
  }

  /** The temporary path, readable once {@linkcode flush} has returned. */
  get path(): string {
    return this.#tmpPath;
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Appends a chunk; it is buffered and written in large pieces. */
  async write(chunk: Uint8Array): Promise<void> {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.byteLength;
    this.#bytes += chunk.byteLength;
    if (this.#pendingBytes >= FLUSH_BYTES) await this.#flush();
  }

  /**
   * The whole file as one array, when none of it has reached the file yet
   * (a small message, read by nothing before its commit): what the next
   * flush writes, in one call. Undefined once anything was written. Not to
   * be changed: a buffered chunk may be the caller's, even a constant.
   */
  unwritten(): Uint8Array | undefined {
    if (this.#bytes !== this.#pendingBytes) return undefined;
    if (this.#pending.length !== 1) {
      this.#pending = [concatBytes(this.#pending, this.#pendingBytes)];
    }
    return this.#pending[0];
  }

  /** Writes buffered data to the file (without syncing), so readers see it. */
  flush(): Promise<void> {
    return this.#flush();
  }

  /**
   * Reads back the bytes from `start` to what has been written, in chunks,
   * by position through the open handle: one read per chunk, no open or
   * close. Buffered data is flushed first.
   */
  async *read(start: number): AsyncGenerator<Uint8Array> {
    await this.#flush();
    let position = start;
    const end = this.#bytes;
    while (position < end) {
      const size = Math.min(READ_BYTES, end - position);
      // Buffers, not plain Uint8Arrays: mailauth's parsers call Buffer methods.
      const chunk = Buffer.allocUnsafe(size);
      const { bytesRead } = await this.#handle.read(chunk, 0, size, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      yield bytesRead === size ? chunk : chunk.subarray(0, bytesRead);
    }
  }

  /**
   * Cuts the file back to `length` bytes (no more than written). What is
   * still buffered is cut in memory; otherwise the file is truncated.
   */
  async truncate(length: number): Promise<void> {
    if (length < 0 || length > this.#bytes) {
      throw new RangeError(`Cannot truncate "${this.#tmpPath}" to ${length} bytes`);
    }
    const flushed = this.#bytes - this.#pendingBytes;
    if (length >= flushed) {
      let keep = length - flushed;
      const kept: Uint8Array[] = [];
      for (const chunk of this.#pending) {
        if (keep === 0) break;
        const part = chunk.byteLength <= keep ? chunk : chunk.subarray(0, keep);
        kept.push(part);
        keep -= part.byteLength;
      }
      this.#pending = kept;
      this.#pendingBytes = length - flushed;
    } else {
      this.#pending = [];
      this.#pendingBytes = 0;
      await this.#handle.truncate(length);
    }
    this.#bytes = length;
  }

  /**
   * Overwrites bytes already written at `position`. Buffered data is
   * flushed first, so the overwrite cannot be reordered with it.
   */
  async writeAt(data: Uint8Array, position: number): Promise<void> {
    if (position + data.byteLength > this.#bytes) {
      throw new RangeError(`Cannot overwrite past the end of "${this.#tmpPath}"`);
    }
    await this.#flush();
    let offset = 0;
    while (offset < data.byteLength) {
      const { bytesWritten } = await this.#handle.write(
        data,
        offset,
        data.byteLength - offset,
        position + offset,
      );
      offset += bytesWritten;
    }
  }

  /**
   * Overwrites bytes already written at `position`, like
   * {@linkcode writeAt}, but in the buffer when none of the file has been
   * written yet: the change then goes out with the rest, in the one write
   * of a small message (headers added after DATA, by the checks or a hook
   * that did not read the message). Not for a seal, which must be written
   * after the content, on its own.
   */
  async overwrite(data: Uint8Array, position: number): Promise<void> {
    if (this.#bytes !== this.#pendingBytes) return await this.writeAt(data, position);
    if (position + data.byteLength > this.#bytes) {
      throw new RangeError(`Cannot overwrite past the end of "${this.#tmpPath}"`);
    }
    // A copy of our own: a buffered chunk may be the caller's, even a constant.
    const whole = this.#pending.length === 1
      ? this.#pending[0]!.slice()
      : concatBytes(this.#pending, this.#pendingBytes);
    whole.set(data, position);
    this.#pending = [whole];
  }

  /**
   * Makes the file durable under `finalPath`: flush, fdatasync, close,
   * rename, then fsync of the directory through `syncer` (RFC 5321 section
   * 4.5.4.1 and 6.1: a 250 means the server has taken responsibility).
   */
  async commit(finalPath: string, syncer: DirSyncer): Promise<void> {
    await this.#flush();
    await this.#handle.datasync();
    // A close error is ignored: the data is durable already, Linux
    // releases the descriptor whatever close(2) returns, and failing a
    // commit whose data is on disk would refuse a message that is queued.
    await this.#close().catch(() => {});
    await durabilityFs.rename(this.#tmpPath, finalPath);
    await syncer.sync();
  }

  /**
   * Makes the file durable where it is, under the name it was made with:
   * flush, fdatasync, close, and wait for `entryDurable`, the fsync of its
   * directory started when the file was put there (see seal.ts for why a
   * crash before this returns loses nothing that was acknowledged).
   */
  async commitInPlace(entryDurable: Promise<void>): Promise<void> {
    await this.#flush();
    await this.#handle.datasync();
    // As in commit(): the data is durable, a close error changes nothing.
    await Promise.all([this.#close().catch(() => {}), entryDurable]);
  }

  /** Closes and removes the temporary file. */
  async abort(): Promise<void> {
    await this.#close().catch(() => {});
    await durabilityFs.unlink(this.#tmpPath).catch(() => {});
  }

  async #flush(): Promise<void> {
    if (this.#pendingBytes === 0) return;
    const data = this.#pending.length === 1
      ? this.#pending[0]!
      : concatBytes(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    // By position, not at the file offset: a truncate may have moved the end back.
    const position = this.#bytes - data.byteLength;
    let offset = 0;
    while (offset < data.byteLength) {
      const { bytesWritten } = await this.#handle.write(
        data,
        offset,
        data.byteLength - offset,
        position + offset,
      );
      offset += bytesWritten;
    }
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close();
  }
}

/** Writes a small file atomically and durably in one call. */
export async function writeFileDurably(
  tmpPath: string,
  finalPath: string,
  data: Uint8Array,
  syncer: DirSyncer,
): Promise<void> {
  const file = await DurableFile.create(tmpPath);
  try {
    await file.write(data);
    await file.commit(finalPath, syncer);
  } catch (err) {
    await file.abort();
    throw err;
  }
}
