/**
 * Reading a file the configuration names, without being fooled by what
 * stands there instead: only a missing file counts as absent, and only a
 * regular file is read. A folder the server may not enter is an error, not
 * an empty one (a permission must not silently delete users or DKIM keys),
 * and a named pipe, device or socket is refused without waiting on it (a
 * read of a FIFO blocks the whole server until someone writes to it).
 *
 * @module
 */

import { closeSync, constants, fstatSync, openSync, readFileSync, statSync } from "node:fs";
import type { Stats } from "node:fs";

/**
 * Reads `path` as UTF-8 text when it is a regular file; undefined when
 * nothing is there (ENOENT, and only that).
 *
 * Synchronous, as the configuration loader's reads are (see `readOptional`
 * in `config/config_error.ts`), and never blocking: the file is opened with
 * O_NONBLOCK and checked again through its descriptor, so a FIFO put in
 * its place between the check and the open is refused, not waited on.
 *
 * @throws {Error} when it exists but cannot be read (EACCES, ELOOP,
 * ENOTDIR, …: the runtime's error), or is not a regular file ("not a
 * regular file (a FIFO)").
 */
export function readRegularFile(path: string): string | undefined {
  // Missing files are the usual case (every configuration file is
  // optional): a stat that returns undefined for them builds no error
  // object. Every other failure throws (existsSync would say false for a
  // folder the server may not enter too, and its files would vanish).
  const info = statSync(path, { throwIfNoEntry: false });
  if (info === undefined) return undefined;
  // Refused before any open: opening some devices has effects of its own.
  if (!info.isFile()) throw notRegular(info);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | (constants.O_NOCTTY ?? 0));
  } catch (err) {
    // Removed since the stat: absent after all.
    if ((err as { code?: unknown }).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const opened = fstatSync(fd);
    if (!opened.isFile()) throw notRegular(opened);
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

function notRegular(info: Stats): Error {
  const kind = info.isDirectory()
    ? "a folder"
    : info.isFIFO()
    ? "a FIFO"
    : info.isSocket()
    ? "a socket"
    : info.isCharacterDevice() || info.isBlockDevice()
    ? "a device"
    : "not a file";
  return new Error(`not a regular file (${kind})`);
}
