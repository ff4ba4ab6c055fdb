/**
 * Helpers for the header filter's tests: play its output (bytes and
 * retracts) onto a byte list as the spool writer does.
 *
 * @module
 */

import assert from "node:assert/strict";
import { concatBytes } from "../../../src/bytes.ts";
import type { FilterOutput, HeaderFilter } from "../../../src/smtp/header_filter.ts";

/**
 * Plays a filter's output onto a byte list as the spool writer does:
 * bytes are appended, a retract takes back the last bytes.
 */
export function applyOutput(written: Uint8Array[], parts: FilterOutput[]): void {
  for (const part of parts) {
    if (part instanceof Uint8Array) {
      written.push(part);
      continue;
    }
    let left = part.retract;
    while (left > 0) {
      const last = written.pop();
      assert.ok(last, "retracted more than was written");
      if (last.byteLength > left) written.push(last.subarray(0, last.byteLength - left));
      left -= Math.min(left, last.byteLength);
    }
  }
}

/** The filter's output for `bytes` cut at `cuts`, and what it dropped. */
export function filterBytes(
  filter: HeaderFilter,
  bytes: Uint8Array,
  cuts: number[],
): { out: Uint8Array; dropped: number } {
  const written: Uint8Array[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.byteLength]) {
    applyOutput(written, filter.push(bytes.subarray(start, cut)));
    start = cut;
  }
  applyOutput(written, filter.end());
  return { out: concatBytes(written), dropped: filter.dropped };
}

/** Runs `text` through a filter in chunks cut at `cuts`; returns the output text. */
