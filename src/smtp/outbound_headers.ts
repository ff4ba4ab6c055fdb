/**
 * What intake does for submitted mail, which may leave: SendID and ListID
 * are taken from their headers into the envelope (the headers are removed,
 * so they never leave), a missing Date or Message-ID is added (RFC 6409
 * section 8.3 and 8.4 let a submission server do so; many receivers refuse
 * mail without them), and mail from our domains is DKIM-signed once, as it
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
}

/**
 * A header filter that moves SendID and ListID into `ids` and notes
 * whether Date and Message-ID are there.
 */
export function idHeaderFilter(settings: OutboundIntake, ids: SubmittedHeaders): HeaderFilter {
  const sendid = `${settings.sendidHeader.toLowerCase()}:`;
  const listid = `${settings.listidHeader.toLowerCase()}:`;
  const take: FieldPredicate = (field) => {
    const lower = field.slice(0, Math.max(sendid.length, listid.length) + 8).toLowerCase()
      .replace(/[ \t]+:/, ":");
    if (lower.startsWith("date:")) ids.hasDate = true;
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

/** Date and Message-ID fields for a submitted message that lacks them (CRLF ends each). */
export function missingHeaders(
  seen: SubmittedHeaders,
  queueId: string,
  hostname: string,
  now: Date,
): Uint8Array {
  let text = "";
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
