/**
 * DATA into the spool: the message is streamed to disk as it arrives,
 * never buffered whole, and the stream is always read to its end, because
 * smtp-server waits for the end before it replies (a stream left unread
 * hangs the session). An optional {@linkcode HeaderFilter} removes header
 * fields on the way.
 *
 * @module
 */

import type { SpoolWriter } from "../queue/mod.ts";
import type { FilterOutput, HeaderFilter } from "./header_filter.ts";
import { HeaderGuard, type HeaderViolation } from "./header_guard.ts";

/** How receiving a message ended. */
export type ReceiveOutcome =
  /** `deliveredTo`: the header section has a `Delivered-To:` field ({@linkcode HeaderGuard}). */
  | { kind: "received"; bytes: number; deliveredTo: boolean }
  | { kind: "too_big"; bytes: number }
  /** The header section broke a rule of {@linkcode HeaderGuard}: read to the end, nothing kept. */
  | { kind: "bad_header"; violation: HeaderViolation; bytes: number }
  | { kind: "failed"; error: unknown }
  /** The client's stream broke before the final dot (it went away): nothing kept, no one to answer. */
  | { kind: "interrupted"; error: unknown };

/**
 * Writes `header` and then the client's message into `writer` (the caller
 * commits it, after the checks that run on the whole message). A message
 * over `maxBytes` (not counting `header`), or whose header section `guard`
 * refuses, is read to the end and discarded (RFC 1870 section 6.3: the 552
 * comes after the final dot). A write error also keeps reading, so the
 * client still gets a reply. A stream error (the client went away) aborts
 * and reports `interrupted`: an everyday event, not an error of ours.
 */
export async function receiveMessage(
  stream: AsyncIterable<Uint8Array>,
  writer: SpoolWriter,
  header: Uint8Array,
  maxBytes: number,
  filter?: HeaderFilter,
  guard: HeaderGuard = new HeaderGuard(),
): Promise<ReceiveOutcome> {
  let bytes = 0;
  let failure: unknown = undefined;
  let violation: HeaderViolation | undefined;
  let writing = true;
  try {
    await writer.write(header);
  } catch (err) {
    failure = err;
    writing = false;
    await writer.abort();
  }
  try {
    for await (const chunk of stream) {
      bytes += chunk.byteLength;
      if (!writing) continue;
      if (bytes > maxBytes) {
        writing = false;
        await writer.abort();
        continue;
      }
      // Before the filter and the spool see it: nothing of such a message is kept.
      violation = guard.push(chunk);
      if (violation) {
        writing = false;
        await writer.abort();
        continue;
      }
      try {
        if (filter) await apply(writer, filter.push(chunk));
        else await writer.write(chunk);
      } catch (err) {
        failure = err;
        writing = false;
        await writer.abort();
      }
    }
    if (writing) {
      violation = guard.end();
      if (violation) {
        writing = false;
        await writer.abort();
      }
    }
    if (writing && filter) {
      try {
        await apply(writer, filter.end());
      } catch (err) {
        failure = err;
        writing = false;
        await writer.abort();
      }
    }
  } catch (err) {
    if (writing) await writer.abort();
    return { kind: "interrupted", error: err };
  }
  if (violation) return { kind: "bad_header", violation, bytes };
  if (bytes > maxBytes) return { kind: "too_big", bytes };
  if (failure !== undefined) return { kind: "failed", error: failure };
  return { kind: "received", bytes, deliveredTo: guard.deliveredTo };
}

/** Writes what a header filter gave out, taking back what it retracts. */
async function apply(writer: SpoolWriter, parts: FilterOutput[]): Promise<void> {
  for (const part of parts) {
    if (part instanceof Uint8Array) await writer.write(part);
    else await writer.retract(part.retract);
  }
}
