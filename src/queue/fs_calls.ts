/**
 * The file-system calls on the paths that make mail durable: the spool
 * file and its directory before a 250, the Maildir file and its `new/`
 * directory before the spool copy is removed. They go through this one
 * object so that tests can record their order (a sync that is missing or
 * out of order loses mail only in a power failure, which no test sees).
 *
 * @module
 */

import { rename, unlink } from "node:fs/promises";
import { type DurableHandle, quickOpen } from "./quick_fs.ts";

export type { DurableHandle } from "./quick_fs.ts";

/** The calls {@linkcode durabilityFs} provides. */
export interface DurabilityFs {
  /**
   * Opens a file or directory (`flags` as `fs.open`'s, `mode` for a new
   * file); its handle's `datasync()`/`sync()` make data durable.
   */
  open: (path: string, flags: string | number, mode?: number) => Promise<DurableHandle>;
  /** Renames a file into place. */
  rename: (from: string, to: string) => Promise<void>;
  /** Removes a file. */
  unlink: (path: string) => Promise<void>;
}

/**
 * The calls used by `DurableFile`, `DirSyncer` and `Spool.remove`, and the
 * moves into `corrupt/` at start-up (`moveAside`, so that a test can make
 * one fail). Production code never changes it; tests replace its members
 * to record calls and put them back afterwards. The calls on an open file run at once, rename and
 * unlink on the I/O threads (see quick_fs.ts).
 */
export const durabilityFs: DurabilityFs = { open: quickOpen, rename, unlink };
