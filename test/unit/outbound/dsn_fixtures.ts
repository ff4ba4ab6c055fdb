/**
 * What the DSN unit tests share (dsn_build_test.ts, dsn_header_section_test.ts):
 * a fixed input for `buildDsn()`, a parser that splits its output into the
 * header, the MIME parts and the status groups while asserting the framing,
 * and a message stream that records how far it was read.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { DsnInput, DsnRecipient } from "../../../src/outbound/dsn.ts";
import { chunksOf } from "../helpers.ts";

const NOW = new Date("2026-11-22T05:33:00.000Z");
const ARRIVAL = new Date("2026-11-20T08:00:00.000Z");
/** The boundary most tests give, so that the DSN's bytes are fixed. */
export const BOUNDARY = "test-boundary-0123";
/** The header section of the message the DSN is about. */
export const ORIGINAL_HEADER = "From: alice@ex.test\r\nTo: bob@remote.test\r\nSubject: Hello\r\n";
/** Its body, which a DSN must never return. */
export const ORIGINAL_BODY = "SECRET BODY LINE\r\nmore body\r\n";

/** UTF-8 encoding. */
export const encoder = new TextEncoder();
/** UTF-8 decoding. */
export const decoder = new TextDecoder();

/** A failed recipient; `overrides` replace fields. */
export function bounce(overrides: Partial<DsnRecipient> = {}): DsnRecipient {
  return {
    address: "bob@remote.test",
    action: "failed",
    status: "5.1.1",
    diagnostic: "550 5.1.1 No such user",
    remoteMta: "mx.remote.test",
    lastAttemptAt: new Date("2026-11-22T05:30:00.000Z"),
    ...overrides,
  };
}

/** A DSN input: one failed recipient, a fixed time and boundary; `overrides` replace fields. */
export function input(overrides: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: "mx.ex.test",
    queueId: "0123456789abcdef",
    originalSender: "alice@ex.test",
    arrivalDate: ARRIVAL,
    recipients: [bounce()],
    original: chunksOf(ORIGINAL_HEADER, "\r\n", ORIGINAL_BODY),
    now: NOW,
    boundary: BOUNDARY,
    ...overrides,
  };
}

/** One MIME part of a DSN: its header fields and its body. */
export interface Part {
  headers: Map<string, string>;
  body: string;
}

/** A DSN as {@linkcode parse} splits it. */
export interface ParsedDsn {
  text: string;
  headers: Map<string, string>;
  /** Header field names in order. */
  names: string[];
  preamble: string;
  parts: Part[];
}

/** Unfolds and splits a header section into (lower-case name → value). */
function parseHeader(section: string): { map: Map<string, string>; names: string[] } {
  const map = new Map<string, string>();
  const names: string[] = [];
  for (const line of section.replace(/\r\n[ \t]/g, " ").split("\r\n")) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    assert.ok(colon > 0, `not a header field: ${JSON.stringify(line)}`);
    names.push(line.slice(0, colon));
    map.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { map, names };
}

/** Splits a DSN into its header, preamble and parts, asserting the MIME framing. */
export function parse(bytes: Uint8Array): ParsedDsn {
  const text = decoder.decode(bytes);
  const split = text.indexOf("\r\n\r\n");
  assert.ok(split > 0);
  const { map: headers, names } = parseHeader(text.slice(0, split + 2));
  const boundary = /boundary="([^"]+)"/.exec(headers.get("content-type") ?? "")?.[1];
  assert.ok(boundary, "no boundary");
  const body = text.slice(split + 4);
  const pieces = body.split(`\r\n--${boundary}`);
  // Preamble, three parts, and the close delimiter's "--\r\n".
  assert.equal(pieces.length, 5);
  assert.equal(pieces[4], "--\r\n");
  const parts = pieces.slice(1, 4).map((piece) => {
    assert.ok(piece.startsWith("\r\n"), "delimiter not followed by CRLF");
    const end = piece.indexOf("\r\n\r\n", 2);
    assert.ok(end >= 0, "part without header end");
    return {
      headers: parseHeader(piece.slice(2, end + 2)).map,
      body: piece.slice(end + 4),
    };
  });
  return { text, headers, names, preamble: pieces[0]!, parts };
}

/** The per-message group and the per-recipient groups of the status part. */
export function statusGroups(part: Part): Array<Map<string, string>> {
  assert.ok(part.body.endsWith("\r\n"));
  return part.body.slice(0, -2).split("\r\n\r\n").map((group) => parseHeader(group + "\r\n").map);
}

/** Fails unless every line ending in `text` is CRLF. */
export function assertCrlfOnly(text: string): void {
  const stripped = text.replace(/\r\n/g, "");
  assert.equal(stripped.includes("\n"), false, "bare LF");
  assert.equal(stripped.includes("\r"), false, "bare CR");
}

/** The length in octets of the longest line of `text`. */
export function longestLine(text: string): number {
  return Math.max(...text.split("\r\n").map((line) => encoder.encode(line).byteLength));
}

/** A message stream that records how far it was read and whether it was closed. */
export function tracked(chunks: string[]) {
  const state = { pulled: 0, closed: false };
  async function* stream(): AsyncGenerator<Uint8Array> {
    try {
      for (const chunk of chunks) {
        state.pulled++;
        yield encoder.encode(chunk);
      }
    } finally {
      state.closed = true;
    }
  }
  return { state, stream: stream() };
}
