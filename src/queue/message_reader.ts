/**
 * Reads a spooled message back for delivery, the cheap way for its size.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";

/**
 * Files up to this size are read in one call. Measured on Bun 1.4 and
 * Deno 2.9, a `readFile` of a small file costs 50-80 µs of CPU, a
 * `createReadStream` of the same file 160-230 µs: an eighth of what the
 * binary spends on a whole message. Larger files are streamed, so memory
 * stays bounded by this size per delivery whatever the message size.
 */
export const WHOLE_READ_BYTES = 256 * 1024;

/**
 * Yields the bytes of the file at `path` from `start` to its end. `fileBytes`,
 * the file's size when known, picks the way: one read for a small file, a
 * stream otherwise. It only picks: whatever the file holds is read to its
 * end either way. Nothing is opened until the first chunk is asked for.
 */
export async function* readSpoolFile(
  path: string,
  start: number,
  fileBytes: number | undefined,
): AsyncGenerator<Uint8Array> {
  if (fileBytes !== undefined && fileBytes <= WHOLE_READ_BYTES) {
    const whole = await readFile(path);
    if (whole.byteLength > start) yield whole.subarray(start);
    return;
  }
  // Read to the end of the file, not bounded by its size: Bun's bounded
  // streams (the `end` option) and reads through a FileHandle each took
  // 50-90 MB more peak memory at c=20 than this, for one read fewer.
  const stream = createReadStream(path, { start, highWaterMark: 256 * 1024 });
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } finally {
    stream.destroy();
  }
}
