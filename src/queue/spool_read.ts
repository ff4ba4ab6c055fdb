/**
 * Reading spool files back at start-up: the seal check, the envelope
 * line, and the JSON records, each validated.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import * as v from "valibot";
import { digestOf, readSeal, SEAL_BYTES } from "./seal.ts";

/** The longest envelope line accepted when reading back. */
const MAX_ENVELOPE_BYTES = 1024 * 1024;

/** Parses `text` as JSON valid for `schema`; throws naming `what` and the first issue. */
export function parseRecord<T extends v.GenericSchema>(
  schema: T,
  text: string,
  what: string,
): v.InferOutput<T> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new Error(`${what} is not valid JSON`);
  }
  const result = v.safeParse(schema, data);
  if (!result.success) {
    const issue = result.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join(".") ?? "";
    throw new Error(`${what} is invalid at "${path}": ${issue.message}`);
  }
  return result.output;
}

/**
 * Checks the seal of a message file: returns where its envelope line
 * starts, how the head of a file never sealed looks (or "empty" for a
 * file of no bytes), and throws for one whose seal does not match its
 * content.
 */
export async function checkSeal(path: string): Promise<number | "open" | "blank" | "empty"> {
  const handle = await open(path, "r");
  let size: number;
  const head = new Uint8Array(SEAL_BYTES);
  try {
    size = (await handle.stat()).size;
    await handle.read(head, 0, SEAL_BYTES, 0);
  } finally {
    await handle.close();
  }
  // Nothing was ever written: a spare file (spare_files.ts), or a message
  // whose first write never reached the disk.
  if (size === 0) return "empty";
  const seal = readSeal(head.subarray(0, Math.min(size, SEAL_BYTES)));
  switch (seal.kind) {
    case "legacy":
      return 0;
    case "open":
    case "blank":
      return seal.kind;
    case "invalid":
      throw new Error("no seal or envelope line at the head of the file");
  }
  if (size !== SEAL_BYTES + seal.length) {
    throw new Error(`sealed for ${seal.length} bytes, holds ${size - SEAL_BYTES}`);
  }
  const { digest } = await digestOf(
    createReadStream(path, { start: SEAL_BYTES, highWaterMark: 256 * 1024 }),
  );
  if (digest !== seal.digest) throw new Error("content does not match its seal");
  return SEAL_BYTES;
}

/** Reads the envelope line that starts at `start`: its text and where the message after it starts. */
export async function readFirstLine(
  path: string,
  start: number,
): Promise<{ line: string; offset: number }> {
  const handle = await open(path, "r");
  try {
    const buffer = new Uint8Array(MAX_ENVELOPE_BYTES);
    let filled = 0;
    while (filled < buffer.byteLength) {
      const { bytesRead } = await handle.read(
        buffer,
        filled,
        buffer.byteLength - filled,
        start + filled,
      );
      if (bytesRead === 0) break;
      const newline = buffer.subarray(filled, filled + bytesRead).indexOf(10);
      filled += bytesRead;
      if (newline >= 0) {
        const end = filled - bytesRead + newline;
        return {
          line: new TextDecoder().decode(buffer.subarray(0, end)),
          offset: start + end + 1,
        };
      }
    }
    throw new Error("no envelope line at the head of the file");
  } finally {
    await handle.close();
  }
}
