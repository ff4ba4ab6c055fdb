/**
 * The file-system calls on the paths that make mail durable: the spool
 * file and its directory before a 250, the Maildir file and its `new/`
 * directory before the spool copy is removed. They go through this one
 * object so that tests can record their order (a sync that is missing or
 * out of order loses mail only in a power failure, which no test sees).
 *
 * @module
 */

import { open, rename, unlink } from "node:fs/promises";

/** The calls {@linkcode durabilityFs} provides. */
export interface DurabilityFs {
  /** Opens a file or directory; its handle's `datasync()`/`sync()` make data durable. */
  open: typeof open;
  /** Renames a file into place. */
  rename: typeof rename;
  /** Removes a file. */
  unlink: typeof unlink;
}

/**
 * The calls used by `DurableFile`, `DirSyncer` and `Spool.remove`. Production
 * code never changes it; tests replace its members to record calls and put
 * them back afterwards.
 */
export const durabilityFs: DurabilityFs = { open, rename, unlink };
