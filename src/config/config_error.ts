/**
 * How the configuration loader reports a problem: {@linkcode ConfigError},
 * whose message names the file, the line where known, the field and the
 * problem, and the helpers that turn a failed read into one.
 *
 * @module
 */

import { readRegularFile } from "../regular_file.ts";

/** A configuration problem found at start-up. */
export class ConfigError extends Error {
  /** The file at fault. */
  readonly file: string;
  /** What kind of problem, when it has its own counter ("dkim_key"). */
  readonly kind: string | undefined;

  /** Creates the error; `message` already names the file and field. */
  constructor(file: string, message: string, kind?: string) {
    super(message);
    this.name = "ConfigError";
    this.file = file;
    this.kind = kind;
  }
}

/**
 * Reads a text file, or undefined when it does not exist.
 *
 * Synchronous, as are the other reads of the loader: a reload reads every
 * file of the configuration, and on Deno an asynchronous read costs several
 * times the CPU of the same read done in line (a hand-off to a thread pool
 * and back); configuration files are small and local.
 *
 * @throws {ConfigError} naming the file when it exists but cannot be read
 * (a folder on its path the server may not enter, a symlink loop) or is
 * not a regular file (a FIFO, a device, a socket): only a missing file is
 * absent, never one the server cannot see.
 */
export function readOptional(path: string): string | undefined {
  try {
    return readRegularFile(path);
  } catch (err) {
    throw new ConfigError(path, `${path}: cannot read the file: ${describe(err)}`);
  }
}

/** The `code` of a Node-style error, if any. */
export function errorCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err
    ? String((err as { code: unknown }).code)
    : undefined;
}

/** A one-line description of a thrown value. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
