/**
 * The seal at the head of a spool file: what tells, after a crash, a
 * message that was acknowledged from one that was still arriving.
 *
 * A message's file is made in `queue/` under its final name as the message
 * starts to arrive, and the directory is fsynced while it arrives. At the
 * end one fdatasync makes the whole file durable: no rename, and no second
 * directory fsync standing before the 250. Until that fdatasync returns,
 * a crash may leave any subset of the written blocks on disk, so the file
 * opens with a seal line of fixed width:
 *
 * ```text
 * OPEN   ---------------- ------…------   while the message arrives
 * SEALED 0000000000012345 <SHA-256 hex>   written just before the fdatasync
 * ```
 *
 * The number is the length of everything after the seal line, and the
 * digest is of those same bytes. At start-up a file whose seal does not
 * match its content was never acknowledged, or was damaged since; it is
 * moved aside, never delivered. A file with the open seal, or whose first
 * bytes were never written, was never acknowledged: the client still has
 * the message, unless something written only after the seal (a delivery
 * state file) says otherwise, and then it is damaged (see `Spool.load`).
 *
 * Files written before the seal existed begin with the envelope's `{`:
 * they reached `queue/` by a rename after their fdatasync, so they are
 * complete by construction.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Bytes of the seal line, newline included. */
export const SEAL_BYTES = 89;

const LENGTH_DIGITS = 16;
const DIGEST_CHARS = 64;
const SEALED = "SEALED ";
const OPEN = "OPEN   ";
const SEALED_PATTERN = /^SEALED (\d{16}) ([0-9a-f]{64})\n$/;

const OPEN_TEXT = `${OPEN}${"-".repeat(LENGTH_DIGITS)} ${"-".repeat(DIGEST_CHARS)}\n`;

/** The seal of a file still being written. */
export const OPEN_SEAL: Uint8Array = new TextEncoder().encode(OPEN_TEXT);

/** The seal line for content of `length` bytes with SHA-256 `digest` (hex). */
export function sealLine(length: number, digest: string): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0 || !/^[0-9a-f]{64}$/.test(digest)) {
    throw new RangeError("A seal needs a length and a SHA-256 digest in hex");
  }
  return new TextEncoder().encode(
    `${SEALED}${String(length).padStart(LENGTH_DIGITS, "0")} ${digest}\n`,
  );
}

/** What the head of a spool file says about it. */
export type SealReading =
  /** Written before seals: complete by construction. */
  | { kind: "legacy" }
  /** The open seal: the message was still arriving, never acknowledged. */
  | { kind: "open" }
  /**
   * Empty, or zeros where the seal goes: its first write never reached the
   * disk, so it was never acknowledged; or the disk lost that block since.
   */
  | { kind: "blank" }
  /** Sealed: complete if the content matches. */
  | { kind: "sealed"; length: number; digest: string }
  /** Neither: damaged. */
  | { kind: "invalid" };

/** Reads the seal from the first bytes of a file (at least {@linkcode SEAL_BYTES} of them when the file has that many). */
export function readSeal(head: Uint8Array): SealReading {
  if (head[0] === 0x7b) return { kind: "legacy" };
  const seal = head.subarray(0, SEAL_BYTES);
  // The open seal goes out in the file's first write: if its bytes never
  // reached the disk (an empty file, or zeros where a crash left the block
  // unwritten), the fdatasync that would have acknowledged the message
  // never returned. A disk that loses the block later leaves the same zeros:
  // only what the spool wrote after the seal can tell the two apart.
  if (seal.every((byte) => byte === 0)) return { kind: "blank" };
  const text = new TextDecoder().decode(seal);
  // A file cut inside its open seal was still arriving too.
  if (OPEN_TEXT.startsWith(text)) return { kind: "open" };
  const match = SEALED_PATTERN.exec(text);
  if (!match) return { kind: "invalid" };
  return { kind: "sealed", length: Number(match[1]), digest: match[2]! };
}

/** The length and SHA-256 digest (hex) of bytes in chunks, in memory or streamed. */
export async function digestOf(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<{ length: number; digest: string }> {
  const hash = createHash("sha256");
  let length = 0;
  for await (const chunk of chunks) {
    hash.update(chunk);
    length += chunk.byteLength;
  }
  return { length, digest: hash.digest("hex") };
}
