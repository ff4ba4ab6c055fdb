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
import { concatBytes } from "../bytes.ts";
import {
  dropIfAny,
  type FieldJudge,
  FieldNameReader,
  type FieldVerdict,
  HeaderFilter,
  type JudgeFactory,
} from "./header_filter.ts";
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

/** Bytes of a SendID or ListID field's body read (the value is cut to MAX_ID after unfolding). */
const MAX_ID_BYTES = 4 * MAX_ID + 1024;

/**
 * A header filter that moves SendID and ListID into `ids` and notes
 * whether From, Date and Message-ID are there; `alsoDrop` removes more fields.
 */
export function idHeaderFilter(
  settings: OutboundIntake,
  ids: SubmittedHeaders,
  alsoDrop?: JudgeFactory,
): HeaderFilter {
  const sendid = settings.sendidHeader.toLowerCase();
  const listid = settings.listidHeader.toLowerCase();
  const longest = Math.max(sendid.length, listid.length, "message-id".length);
  const judge: JudgeFactory = () => new IdJudge(sendid, listid, longest, ids);
  return new HeaderFilter(alsoDrop ? dropIfAny(judge, alsoDrop) : judge);
}

/** Judges one field for {@linkcode idHeaderFilter}: by its name, keeping an ID's value. */
class IdJudge implements FieldJudge {
  #names: { sendid: string; listid: string };
  #reader: FieldNameReader;
  #ids: SubmittedHeaders;
  #key: "sendid" | "listid" | undefined;
  #value: Uint8Array[] = [];
  #valueBytes = 0;

  constructor(sendid: string, listid: string, longest: number, ids: SubmittedHeaders) {
    this.#names = { sendid, listid };
    this.#reader = new FieldNameReader(longest);
    this.#ids = ids;
  }

  feed(bytes: Uint8Array): FieldVerdict | undefined {
    if (this.#reader.name === undefined) {
      const after = this.#reader.read(bytes);
      const name = this.#reader.name;
      if (name === undefined) return undefined;
      if (name === "date") this.#ids.hasDate = true;
      if (name === "from") this.#ids.hasFrom = true;
      if (name === "message-id") this.#ids.hasMessageId = true;
      this.#key = name === this.#names.sendid
        ? "sendid"
        : name === this.#names.listid
        ? "listid"
        : undefined;
      if (this.#key === undefined) return "keep";
      bytes = bytes.subarray(after);
    }
    if (this.#key === undefined) return "keep";
    if (this.#valueBytes < MAX_ID_BYTES) {
      const part = bytes.subarray(0, MAX_ID_BYTES - this.#valueBytes);
      this.#value.push(part);
      this.#valueBytes += part.byteLength;
    }
    // Every copy is removed (they must not leave).
    return "drop";
  }

  end(): FieldVerdict {
    if (this.#key === undefined) return "keep";
    const value = new TextDecoder().decode(concatBytes(this.#value, this.#valueBytes))
      .replace(/\r?\n/g, "").trim();
    // The first field wins.
    this.#ids[this.#key] ??= value.slice(0, MAX_ID);
    return "drop";
  }
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
