/**
 * Mail forwarding loops, found as Postfix's local(8) and virtual(8) find
 * them: local delivery adds `Delivered-To: <recipient>` to the message
 * (and to the copy an alias forwards), and refuses a message whose header
 * already has a Delivered-To with the address it is about to deliver to;
 * that message has been here before and would go round again. RFC 5321
 * section 6.3 asks for loop detection; Received counting catches long
 * loops, this one the second time round.
 *
 * @module
 */

import type { Destination } from "../aliases/mod.ts";
import type { DeliveryResult } from "../queue/mod.ts";

/**
 * The longest field line kept while looking: an address is at most 256
 * octets (RFC 5321 section 4.5.3.1.3), so a longer value is not one of
 * ours; longer lines are read past, not kept.
 */
const MAX_LINE = 1024;

const LF = 10;
const CR = 13;
const SP = 32;
const HT = 9;
const NAME = new TextEncoder().encode("delivered-to:");

/**
 * The addresses of the message's Delivered-To fields, lower-cased and
 * without angle brackets. Reads the header section only, a line at a time
 * (at most {@linkcode MAX_LINE} bytes of one are kept), and stops at the
 * empty line that ends it, so the body is never read and a large message
 * costs no memory.
 */
export async function deliveredTo(message: AsyncIterable<Uint8Array>): Promise<Set<string>> {
  const found = new Set<string>();
  const decoder = new TextDecoder();
  const line = new Uint8Array(MAX_LINE);
  let length = 0;
  let cut = false;
  /** The value of the Delivered-To field being read; undefined in another field. */
  let field: string | undefined;
  const endField = () => {
    if (field !== undefined) {
      const address = field.trim().replace(/^<(.*)>$/s, "$1").trim().toLowerCase();
      if (address !== "") found.add(address);
    }
    field = undefined;
  };
  /** Takes in the line read; false when it is the empty line that ends the header. */
  const takeLine = (): boolean => {
    const end = length > 0 && line[length - 1] === CR ? length - 1 : length;
    if (end === 0 && !cut) return false;
    const first = line[0]!;
    if (first === SP || first === HT) {
      // A folded line continues the field before it (RFC 5322 section 2.2.3).
      if (field !== undefined) {
        field = cut ? undefined : field + decoder.decode(line.subarray(0, end));
      }
    } else {
      endField();
      if (!cut && startsWithName(line, end)) {
        field = decoder.decode(line.subarray(NAME.length, end));
      }
    }
    length = 0;
    cut = false;
    return true;
  };
  let ended = false;
  // Leaving the loop with `break` calls the iterator's return(), which
  // closes the spool file.
  reading: for await (const chunk of message) {
    for (let at = 0; at < chunk.length;) {
      const lf = chunk.indexOf(LF, at);
      const stop = lf < 0 ? chunk.length : lf;
      const kept = Math.min(stop - at, MAX_LINE - length);
      line.set(chunk.subarray(at, at + kept), length);
      length += kept;
      if (kept < stop - at) cut = true;
      if (lf < 0) break;
      ended = !takeLine();
      if (ended) break reading;
      at = lf + 1;
    }
  }
  // A message without a body may end without the empty line.
  if (!ended && (length > 0 || cut)) takeLine();
  endField();
  return found;
}

/**
 * The Delivered-To addresses of a spooled message. The intake notes in the
 * envelope whether the header has any such field (src/smtp/header_guard.ts);
 * when it has none, as almost all mail, the spool file is not read. A
 * message nobody looked at (a bounce, one spooled by an older version)
 * is read.
 */
export async function deliveredToOf(
  item: { envelope: { delivered_to?: boolean | undefined } },
  open: () => AsyncIterable<Uint8Array>,
): Promise<Set<string>> {
  if (item.envelope.delivered_to === false) return new Set();
  return await deliveredTo(open());
}

/** True when the line starts with the field name `Delivered-To:`, in any case. */
function startsWithName(line: Uint8Array, end: number): boolean {
  if (end < NAME.length) return false;
  for (let i = 0; i < NAME.length; i++) {
    const byte = line[i]!;
    const lower = byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte;
    if (lower !== NAME[i]) return false;
  }
  return true;
}

/**
 * The failure of a mailbox the message was delivered to before, by its
 * Delivered-To (`${user}@${domain}`, as local delivery writes it);
 * undefined for others. Pipes and forwards add the envelope recipient's
 * address, which the local courier checks before expanding it.
 */
export function loopOf(
  destination: Destination,
  seen: ReadonlySet<string>,
): DeliveryResult | undefined {
  if (destination.kind !== "mailbox") return undefined;
  const address = `${destination.user}@${destination.domain}`;
  return seen.has(address.toLowerCase()) ? forwardingLoop(address) : undefined;
}

/**
 * A mail loop, as Postfix's local(8) reports it: a permanent failure
 * (RFC 3463 section 3.5, X.4.6 routing loop detected).
 */
export function forwardingLoop(address: string): DeliveryResult {
  return { status: "failed", error: `mail forwarding loop for ${address}`, dsnStatus: "5.4.6" };
}
