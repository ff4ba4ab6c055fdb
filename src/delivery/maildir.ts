/**
 * Maildir delivery (https://cr.yp.to/proto/maildir.html): write into tmp/,
 * fsync, rename into new/, fsync new/.
 *
 * File names are derived from the queue ID and recipient, not random, so a
 * delivery repeated after a crash (the message was in new/ but the queue had
 * not yet recorded it) is recognized and not stored twice.
 *
 * @module
 */

import { lstatSync, type Stats } from "node:fs";
import { mkdir, readdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { DirSyncer, DurableFile } from "../queue/mod.ts";

/**
 * How long the fsync of a busy Maildir's new/ waits for more deliveries to
 * share it. Delivered messages are visible in new/ at once; this only
 * delays the removal of the spool copy (and the delivery's log line).
 */
export const NEW_SYNC_LINGER_MS = 5;

/** A Maildir folder and its syncer. */
export class Maildir {
  readonly path: string;
  #newSync: DirSyncer;
  #ready: Promise<void> | undefined;

  /** Creates a handle for the Maildir at `path` (created on first use). */
  constructor(path: string) {
    this.path = path;
    // The sync of new/ lets the spool copy go; no client waits for it, so
    // in a busy Maildir it gathers a few milliseconds of deliveries.
    this.#newSync = new DirSyncer(join(path, "new"), { lingerMs: NEW_SYNC_LINGER_MS });
  }

  /**
   * Stores a message under the unique name `name` unless a message of that
   * name is already in new/ or cur/ (where a mail client moves it, adding
   * `:2,flags`). Returns false when it was already there.
   */
  async deliver(
    name: string,
    chunks: AsyncIterable<Uint8Array>,
    checkExisting: boolean,
  ): Promise<boolean> {
    // A failed set-up is not kept: once the operator has mended the cause
    // (a file where tmp/ belongs, a permission), the next attempt delivers.
    await this.#setUp();
    try {
      this.#refuseLinks();
    } catch (err) {
      if ((err as { code?: unknown }).code !== "ENOENT") throw err;
      // The mailbox was removed since it was set up (an operator's clean-up):
      // made again, as the first delivery would have.
      this.#ready = undefined;
      await this.#setUp();
      this.#refuseLinks();
    }
    if (checkExisting && await this.#has(name)) return false;
    // The name is derived from the queue ID, so a file of this name in tmp/
    // is what a crash left of an earlier attempt of this same delivery.
    const file = await DurableFile.create(join(this.path, "tmp", name), true);
    try {
      for await (const chunk of chunks) await file.write(chunk);
      await file.commit(join(this.path, "new", name), this.#newSync);
    } catch (err) {
      await file.abort();
      throw err;
    }
    return true;
  }

  #setUp(): Promise<void> {
    this.#ready ??= this.#create().catch((err) => {
      this.#ready = undefined;
      throw err;
    });
    return this.#ready;
  }

  async #create(): Promise<void> {
    // Nothing made through a link: a recursive mkdir follows one, and
    // would make the folders wherever it points before the check below.
    for (const dir of [dirname(this.path), this.path]) {
      const info = lstatSync(dir, { throwIfNoEntry: false });
      if (info?.isSymbolicLink()) throw notOurs(dir, info);
    }
    for (const sub of ["tmp", "new", "cur"]) {
      await mkdir(join(this.path, sub), { recursive: true, mode: 0o700 });
    }
  }

  /**
   * Refuses a mailbox whose folders are not directories of their own: a
   * symbolic link in place of the mailbox, its domain's folder, tmp/ or
   * new/ would have the message written wherever it points (as root, into
   * any directory at all). Checked at every delivery, as whoever can write
   * in the mail root can swap one in at any time; the error is temporary,
   * for the operator to mend.
   */
  #refuseLinks(): void {
    for (
      const dir of [dirname(this.path), this.path, join(this.path, "tmp"), join(this.path, "new")]
    ) {
      const info = lstatSync(dir);
      if (!info.isDirectory()) throw notOurs(dir, info);
    }
  }

  async #has(name: string): Promise<boolean> {
    const exists = await stat(join(this.path, "new", name)).then(() => true, () => false);
    if (exists) return true;
    const cur = await readdir(join(this.path, "cur"));
    return cur.some((entry) => entry === name || entry.startsWith(`${name}:`));
  }
}

/**
 * Error codes of the file system that no retry can heal: a name longer
 * than the file system allows (ENAMETOOLONG), one it will not take
 * (EINVAL, EILSEQ: not valid in its encoding) or that cannot be a path at
 * all (ERR_INVALID_ARG_VALUE, a NUL byte). Anything else may pass with
 * time or the operator's help (ENOSPC, EDQUOT, EIO, EACCES, ENOTDIR, …) and
 * stays temporary (RFC 5321 section 4.2.1: 4yz where the same request may
 * succeed later).
 */
const PERMANENT_CODES: ReadonlySet<string> = new Set([
  "ENAMETOOLONG",
  "EINVAL",
  "EILSEQ",
  "ERR_INVALID_ARG_VALUE",
]);

/** True when a Maildir delivery failed with an error that retrying cannot fix. */
export function isPermanentFsError(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && PERMANENT_CODES.has(code);
}

/**
 * Makes a local part safe as a single directory name: characters other than
 * letters, digits and `._+-` are percent-encoded, and a leading dot too, so
 * no name can climb out of the mail root or hide.
 */
export function mailboxDirName(user: string): string {
  const encoded = [...user].map((c) =>
    /[\p{L}\p{N}_+\-]/u.test(c) || c === "."
      ? c
      : encodeURIComponent(c).replace(/[!'()*~]/g, (x) =>
        `%${x.charCodeAt(0).toString(16).toUpperCase()}`)
  ).join("");
  return encoded.startsWith(".") ? `%2E${encoded.slice(1)}` : encoded || "%00";
}

/** The error for a folder of a mailbox that is a link or no folder at all (temporary). */
function notOurs(dir: string, info: Stats): Error {
  const what = info.isSymbolicLink() ? "a symbolic link" : "not a directory";
  return Object.assign(new Error(`${dir} is ${what}: not delivering through it`), {
    code: "ENOTDIR",
  });
}
