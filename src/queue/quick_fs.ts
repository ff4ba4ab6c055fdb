/**
 * File calls for the spool and Maildir paths: those that only touch the
 * page cache through an open descriptor (read, write, truncate, close) run
 * at once on the calling thread, and so does opening a file or directory
 * to read it; those that may wait (fdatasync and fsync for the disk;
 * creating a file, rename and unlink for the file system) run on the
 * runtime's I/O threads.
 *
 * Why: each asynchronous call of `node:fs` is a trip to an I/O thread and
 * back, and that trip costs the main thread more than the call itself:
 * measured here, a 4 KiB read from the page cache took 20-35 µs of the main
 * thread's CPU and 50-75 µs of wall time asynchronously (Bun, Deno), and
 * 0.5-1 µs synchronously. A message made about twenty such trips between
 * intake and its Maildir.
 *
 * Not the calls that change names: an open that creates a file, a rename
 * and an unlink update directories and allocate or free inodes, and under
 * load they wait for the file system. Made synchronous they blocked the
 * event loop (under load, openat took 330 µs on average and unlink 220 µs)
 * and the server got slower.
 *
 * The trade: a write into the page cache can itself wait when the kernel
 * holds back writers because too much is waiting to go to disk (dirty page
 * throttling). Then the event loop waits with it, where a call on an I/O
 * thread would have let other sessions be served meanwhile; at that point
 * the disk is the bound either way.
 *
 * The calls keep the promise-based shape of `node:fs/promises`, so their
 * callers (and the tests that record their order) are unchanged; an error
 * is a rejected promise, never a throw.
 *
 * @module
 */

import {
  closeSync,
  fdatasync,
  fsync,
  ftruncateSync,
  open,
  openSync,
  readSync,
  writeSync,
} from "node:fs";

/** The calls on an open file that the durable paths use. */
export interface DurableHandle {
  /** Writes `length` bytes of `buffer` from `offset` at file `position`. */
  write(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesWritten: number }>;
  /** Reads up to `length` bytes at file `position` into `buffer` from `offset`. */
  read(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }>;
  /** fdatasync(2): the data and the metadata needed to read it are on disk. */
  datasync(): Promise<void>;
  /** fsync(2) (of a directory: its entries are on disk). */
  sync(): Promise<void>;
  /** Cuts the file to `length` bytes. */
  truncate(length: number): Promise<void>;
  /** Closes the descriptor. */
  close(): Promise<void>;
}

/** Runs `call` now; its result or error as a promise. */
function now<T>(call: () => T): Promise<T> {
  try {
    return Promise.resolve(call());
  } catch (err) {
    return Promise.reject(err);
  }
}

/** An open file whose page-cache calls run at once (see the module's notes). */
class QuickHandle implements DurableHandle {
  /** The descriptor; -1 once closed. */
  #fd: number;

  constructor(fd: number) {
    this.#fd = fd;
  }

  write(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesWritten: number }> {
    return now(() => ({ bytesWritten: writeSync(this.#open(), buffer, offset, length, position) }));
  }

  read(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }> {
    return now(() => ({ bytesRead: readSync(this.#open(), buffer, offset, length, position) }));
  }

  datasync(): Promise<void> {
    return now(() => this.#open()).then((fd) =>
      new Promise((resolve, reject) => fdatasync(fd, (err) => err ? reject(err) : resolve()))
    );
  }

  sync(): Promise<void> {
    return now(() => this.#open()).then((fd) =>
      new Promise((resolve, reject) => fsync(fd, (err) => err ? reject(err) : resolve()))
    );
  }

  truncate(length: number): Promise<void> {
    return now(() => ftruncateSync(this.#open(), length));
  }

  close(): Promise<void> {
    return now(() => {
      const fd = this.#open();
      this.#fd = -1;
      closeSync(fd);
    });
  }

  /**
   * The descriptor, or EBADF once closed: the number may already belong to
   * a file opened since, which a late call must not touch (FileHandle
   * guards the same way).
   */
  #open(): number {
    if (this.#fd < 0) {
      throw Object.assign(new Error("EBADF: file already closed"), { code: "EBADF" });
    }
    return this.#fd;
  }
}

/**
 * Opens `path` with `flags` (as `fs.open`: "r", "w+", "wx+"…) and `mode`
 * for a new file: at once to read an existing file or directory, on an I/O
 * thread to create one.
 */
export function quickOpen(
  path: string,
  flags: string | number,
  mode?: number,
): Promise<DurableHandle> {
  // Creating a file allocates an inode, which may wait for the file
  // system (see the module's notes); opening one to read does not.
  if (flags === "r") return now(() => new QuickHandle(openSync(path, flags)));
  // The callback form, which gives the bare descriptor: a FileHandle would
  // close it when garbage-collected.
  return new Promise((resolve, reject) =>
    open(path, flags, mode, (err, fd) => err ? reject(err) : resolve(new QuickHandle(fd)))
  );
}
