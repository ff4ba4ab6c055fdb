/**
 * What intake does for mail that may leave: SendID and ListID are taken
 * from their headers into the envelope (the headers are removed, so they
 * never leave), and mail from our domains is DKIM-signed once, as it is
 * spooled, like chasquid signs for authenticated users.
 *
 * @module
 */

import { dkimSign } from "../auth/mod.ts";
import type { Envelope, SpoolWriter } from "../queue/mod.ts";
import { type FieldPredicate, HeaderFilter } from "./header_filter.ts";

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

/** A header filter that moves SendID and ListID into `ids`. */
export function idHeaderFilter(
  settings: OutboundIntake,
  ids: { sendid?: string; listid?: string },
): HeaderFilter {
  const sendid = `${settings.sendidHeader.toLowerCase()}:`;
  const listid = `${settings.listidHeader.toLowerCase()}:`;
  const take: FieldPredicate = (field) => {
    const lower = field.slice(0, Math.max(sendid.length, listid.length) + 8).toLowerCase()
      .replace(/[ \t]+:/, ":");
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
 * The DKIM-Signature field for a message from one of our domains (the
 * envelope sender's), or an empty head when it is not signed.
 */
export async function signatureHead(
  settings: OutboundIntake,
  writer: SpoolWriter,
  envelope: Envelope,
): Promise<Uint8Array> {
  if (!settings.dkimSign) return new Uint8Array(0);
  const at = envelope.from.lastIndexOf("@");
  const domain = at < 0 ? "" : envelope.from.slice(at + 1).toLowerCase();
  const key = domain === "" ? undefined : settings.dkimKey(domain);
  if (!key) return new Uint8Array(0);
  const { path, offset } = await writer.readable();
  const field = await dkimSign(path, offset, { domain, ...key });
  return new TextEncoder().encode(field);
}
