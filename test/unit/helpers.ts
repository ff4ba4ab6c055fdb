/**
 * Shared helpers for the unit tests: temporary directories and small
 * stream utilities.
 *
 * @module
 */

import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { concatBytes } from "../../src/bytes.ts";

/** Creates a fresh temporary directory. */
export function makeTempDir(prefix = "postern-unit-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Removes a temporary directory and everything in it. */
export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Writes `files` (relative path → content) under `root`, creating folders. */
export async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path);
    await mkdir(dirname(full), { recursive: true });
    await writeFile(full, content);
  }
}

/** Lists a directory, or [] when it does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch {
    return [];
  }
}

/** Yields the given chunks (strings are UTF-8 encoded) as an async iterable. */
export async function* chunksOf(...chunks: Array<string | Uint8Array>): AsyncGenerator<Uint8Array> {
  const encoder = new TextEncoder();
  for (const chunk of chunks) yield typeof chunk === "string" ? encoder.encode(chunk) : chunk;
}

/** Reads an async iterable of bytes into one Uint8Array. */
export async function collectBytes(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of chunks) {
    parts.push(new Uint8Array(chunk));
    total += chunk.byteLength;
  }
  return concatBytes(parts, total);
}

/** Reads an async iterable of bytes as UTF-8 text. */
export async function collectText(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  return new TextDecoder().decode(await collectBytes(chunks));
}

/** A promise with its resolve function exposed. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Waits for `condition` to hold, polling on macrotask turns; throws after `turns`. */
export async function until(condition: () => boolean, turns = 2000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error("condition not reached");
}

/** Number of file descriptors this process has open (Linux). */
export async function openFileDescriptors(): Promise<number> {
  return (await readdir("/proc/self/fd")).length;
}

const retained: unknown[] = [];

/**
 * Keeps `value` reachable until the process exits. Maildir and LocalCourier
 * have no close(): their directory handles stay open, and Bun reports a
 * FileHandle collected by the garbage collector as an error in whatever test
 * runs at that moment, so tests keep such objects alive.
 */
export function retain<T>(value: T): T {
  retained.push(value);
  return value;
}
