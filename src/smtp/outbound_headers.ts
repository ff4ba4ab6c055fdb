/**
 * What intake does for submitted mail, which may leave: SendID and ListID
 * are taken from their headers into the envelope (the headers are removed,
 * so they never leave), a missing From, Date or Message-ID is added (RFC
 * 6409 section 8 lets a submission server complete a message: section 8.1
 * the author's identity, 8.2 and 8.3 Date and Message-ID; RFC 5322 section
 * 3.6 requires From and Date, and DKIM cannot sign without From), and mail from our domains is DKIM-signed once, as it
 * is spooled, like chasquid signs for authenticated users.
 *
 * @module
 */

import { splitAddress } from "../aliases/mod.ts";
import { dkimSign } from "../auth/mod.ts";
import type { Envelope, SpoolWriter } from "../queue/mod.ts";
import { type FieldPredicate, HeaderFilter } from "./header_filter.ts";
import { rfc5322Date } from "./received.ts";

/** The outbound settings intake uses. */
export interface OutboundIntake {
  sendidHeader: string;
  listidHeader: string;
  dkimSign: boolean;
  /** A local domain's signing key, if it has one. */
  dkimKey: (domain: string) => { selector: string; privateKey: string } | undefined;
}

/** Longest SendID or ListID kept; the rest is cut. */
const MAX_ID = 256;

/** What the header filter saw of a submitted message. */
export interface SubmittedHeaders {
  sendid?: string;
  listid?: string;
  hasDate?: boolean;
  hasMessageId?: boolean;
  hasFrom?: boolean;
}

/**
 * A header filter that moves SendID and ListID into `ids` and notes
 * whether From, Date and Message-ID are there.
 */
export function idHeaderFilter(settings: OutboundIntake, ids: SubmittedHeaders): HeaderFilter {
  const sendid = `${settings.sendidHeader.toLowerCase()}:`;
  const listid = `${settings.listidHeader.toLowerCase()}:`;
  const take: FieldPredicate = (field) => {
    const lower = field.slice(0, Math.max(sendid.length, listid.length) + 8).toLowerCase()
      .replace(/[ \t]+:/, ":");
    if (lower.startsWith("date:")) ids.hasDate = true;
    if (lower.startsWith("from:")) ids.hasFrom = true;
    if (lower.startsWith("message-id:")) ids.hasMessageId = true;
    const key = lower.startsWith(sendid) ? "sendid" : lower.startsWith(listid) ? "listid" : "";
    if (key === "") return false;
    const value = field.slice(field.indexOf(":") + 1).replace(/\r?\n/g, "").trim();
    // The first field wins; every copy is removed.
    ids[key] ??= value.slice(0, MAX_ID);
    return true;
  };
  return new HeaderFilter(take);
}

/**
 * From, Date and Message-ID fields for a submitted message that lacks them
 * (CRLF ends each). From is the envelope sender, which intake has already
 * checked to be an address of the authenticated user's domain.
 */
export function missingHeaders(
  seen: SubmittedHeaders,
  queueId: string,
  hostname: string,
  now: Date,
  sender: string,
): Uint8Array {
  let text = "";
  // RFC 6409 section 8.1: the MSA knows the authenticated sender's identity
  // and may add it; without From the message breaks RFC 5322 section 3.6.
  if (!seen.hasFrom && sender !== "") text += `From: <${sender.replace(/[\r\n<>]/g, "")}>\r\n`;
  if (!seen.hasDate) text += `Date: ${rfc5322Date(now)}\r\n`;
  if (!seen.hasMessageId) text += `Message-ID: <${queueId}@${hostname}>\r\n`;
  return new TextEncoder().encode(text);
}

/**
 * The DKIM-Signature field for a message from one of our domains (the
 * envelope sender's), or an empty head when it is not signed.
 */
export async function signatureHead(
  settings: OutboundIntake,
  writer: SpoolWriter,
  envelope: Envelope,
): Promise<Uint8Array> {
  if (!settings.dkimSign) return new Uint8Array(0);
  const { domain } = splitAddress(envelope.from);
  const key = domain === "" ? undefined : settings.dkimKey(domain);
  if (!key) return new Uint8Array(0);
  const { path, offset } = await writer.readable();
  const field = await dkimSign(path, offset, { domain, ...key });
  return new TextEncoder().encode(field);
}
