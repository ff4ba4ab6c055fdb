/**
 * Delivery status notifications: the bounce sent to the envelope sender when
 * a recipient fails for good, and the warning sent while one is delayed
 * (RFC 3464 inside a multipart/report, RFC 6522).
 *
 * Only the header of the original message is returned, as a
 * text/rfc822-headers part (RFC 6522 section 4): the body is never read, so a
 * large message costs no memory and its content is not reflected back to a
 * sender address that may be forged.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import { rfc5322Date } from "../smtp/received.ts";
import {
  clean,
  cleanAddress,
  contains,
  crlfLines,
  field,
  has8bit,
  hostName,
  isAscii,
  limitOctets,
  wrap,
} from "./dsn_text.ts";

/** One recipient reported on in a DSN. */
export interface DsnRecipient {
  /** Envelope recipient as given at RCPT TO. */
  address: string;
  /** "failed" for a bounce, "delayed" for a warning (RFC 3464 section 2.3.3). */
  action: "failed" | "delayed";
  /** Enhanced status code, e.g. "5.1.1" (RFC 3463). */
  status: string;
  /** What the remote server or we said, e.g. "550 5.1.1 No such user". Optional. */
  diagnostic?: string;
  /** The remote MTA's host name, when one answered. Optional. */
  remoteMta?: string;
  /** When delivery to this recipient was last tried. */
  lastAttemptAt?: Date;
  /** For "delayed": until when we keep trying. */
  willRetryUntil?: Date;
}

/** Everything {@linkcode buildDsn} needs. */
export interface DsnInput {
  /** Our host name (Reporting-MTA: dns; ..., and the From: MAILER-DAEMON@host). */
  reportingMta: string;
  /** Queue ID of the original message, named in the human-readable part. */
  queueId: string;
  /** Envelope sender of the original message: the DSN goes there. Never "" (caller checks). */
  originalSender: string;
  /** When the original message was accepted. */
  arrivalDate: Date;
  /** The recipients to report on; at least one. */
  recipients: DsnRecipient[];
  /** The original message (header + body), streamed. Only the header is read; stop reading after it. */
  original: AsyncIterable<Uint8Array>;
  /** The Date of the DSN; defaults to now. Injectable for tests. */
  now?: Date;
  /** The MIME boundary; defaults to a random one. Injectable for tests. */
  boundary?: string;
}

/** Default cap on the returned header section: 64 KiB. */
const HEADER_LIMIT = 64 * 1024;

const CR = 13;
const LF = 10;

/** An enhanced status code (RFC 3463 section 2) standing on its own in text. */
const STATUS_IN_TEXT = /(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\d|\.\d)/g;

/** A complete enhanced status code. */
const STATUS = /^[245]\.\d{1,3}\.\d{1,3}$/;

/** Characters RFC 2046 section 5.1.1 allows in a boundary (space left out). */
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=?]{1,70}$/;

/**
 * The enhanced status code (RFC 3463) found in an SMTP reply or error text
 * ("550 5.1.1 ..." gives "5.1.1"); without one, "5.0.0" when `permanent`,
 * else "4.0.0". The class always follows `permanent`: a deferral that
 * quotes "5.7.1" is "4.7.1" (see {@linkcode statusWithClass}).
 *
 * Success codes (class 2) are skipped: they cannot describe a failure. Dotted
 * numbers that are part of something longer, such as IPv4 addresses, are
 * not taken for a code.
 */
export function statusOf(text: string, permanent: boolean): string {
  for (const match of text.matchAll(STATUS_IN_TEXT)) {
    if (match[1] !== "2") return statusWithClass(`${match[1]}.${match[2]}.${match[3]}`, permanent);
  }
  return permanent ? "5.0.0" : "4.0.0";
}

/**
 * `status` with its class set by `permanent`: 5 (permanent failure) or 4
 * (persistent transient failure), subject and detail kept. RFC 3464
 * section 2.3.4: the status must agree with the action, so a `delayed`
 * recipient never carries a 5.x.x status, and a `failed` one never a 4.x.x.
 */
export function statusWithClass(status: string, permanent: boolean): string {
  const rest = /^[245](\.\d{1,3}\.\d{1,3})$/.exec(status)?.[1] ?? ".0.0";
  return `${permanent ? "5" : "4"}${rest}`;
}

/**
 * Reads only the header section of a message stream: the lines up to the
 * first empty line, at most `limit` bytes (default 64 KiB), then stops the
 * iteration (which calls the iterator's `return()`), so the body is never
 * pulled.
 *
 * @returns the header lines with their endings as received, without the
 * empty line that ends the section. A header longer than `limit` is cut at
 * the last line ending within it; a message without an empty line is all
 * header.
 */
export async function headerSection(
  message: AsyncIterable<Uint8Array>,
  limit: number = HEADER_LIMIT,
): Promise<Uint8Array> {
  return (await readHeader(message, limit)).bytes;
}

/** {@linkcode headerSection}, also telling whether the header was cut. */
async function readHeader(
  message: AsyncIterable<Uint8Array>,
  limit: number,
): Promise<{ bytes: Uint8Array; truncated: boolean }> {
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(`Cannot read a header section with limit ${limit}`);
  }
  // Two bytes past the limit are enough to see an empty line (CRLF) that
  // starts right at the limit, which means the header was not cut.
  const cap = limit + 2;
  const buffer = new Uint8Array(cap);
  let total = 0;
  let lineStart = 0;
  let lastLineEnd = 0;
  let previous = -1;
  let end = -1;
  // Leaving this loop early with `break` makes for-await call return() on
  // the iterator: a spool file reader closes its file there.
  reading: for await (const chunk of message) {
    for (const byte of chunk) {
      buffer[total++] = byte;
      if (byte === LF) {
        // LF alone also ends a line: the spool holds CRLF, but a stray LF
        // must not make us read the whole body looking for the end.
        const length = total - 1 - lineStart - (previous === CR ? 1 : 0);
        if (length === 0) {
          end = lineStart;
          break reading;
        }
        lineStart = total;
        if (total <= limit) lastLineEnd = total;
      }
      previous = byte;
      if (total === cap) break reading;
    }
  }
  // The stream ended without an empty line: the whole message is header.
  if (end < 0 && total < cap) end = total;
  if (end >= 0 && end <= limit) return { bytes: buffer.slice(0, end), truncated: false };
  return { bytes: buffer.slice(0, lastLineEnd), truncated: true };
}

/**
 * Builds a DSN for `input.recipients`: a bounce when any of them failed,
 * else a delay warning.
 *
 * The report is a multipart/report; report-type=delivery-status (RFC 6522)
 * with three parts: a text/plain explanation, the message/delivery-status
 * fields (RFC 3464 section 2) and the original header as
 * text/rfc822-headers. When an address, a diagnostic or the original header
 * holds non-ASCII text (SMTPUTF8), the second and third parts become
 * message/global-delivery-status and message/global-headers (RFC 6533),
 * which carry UTF-8 as is; the DSN must then be sent with
 * SMTPUTF8.
 *
 * @returns the complete message, CRLF line endings, no line over 998 octets
 * except lines copied from the original header.
 * @throws {RangeError} when there are no recipients, the sender is the null
 * sender, or the given boundary is malformed or occurs in the content.
 */
export async function buildDsn(input: DsnInput): Promise<Uint8Array> {
  if (input.recipients.length === 0) {
    throw new RangeError("Cannot build a DSN without recipients");
  }
  // RFC 5321 section 4.5.5: a DSN is never sent to the null sender, or two
  // servers could bounce each other's bounces forever.
  if (input.originalSender === "") {
    throw new RangeError("Cannot build a DSN for the null sender");
  }
  if (input.boundary !== undefined && !BOUNDARY.test(input.boundary)) {
    throw new RangeError(`Cannot use boundary "${input.boundary}": not a valid MIME boundary`);
  }

  const host = hostName(input.reportingMta);
  const recipients = input.recipients.map(cleanRecipient);
  const original = await readHeader(input.original, HEADER_LIMIT);
  const header = crlfLines(original.bytes);

  const fields = deliveryStatus(host, input.arrivalDate, recipients);
  const global = !isAscii(fields) || has8bit(header);
  const text = explanation(input, host, recipients, original.truncated);
  const encoder = new TextEncoder();
  const reportType = global ? "global-delivery-status" : "delivery-status";
  const parts = [
    {
      headers: [
        "Content-Type: text/plain; charset=utf-8",
        `Content-Transfer-Encoding: ${isAscii(text) ? "7bit" : "8bit"}`,
        "Content-Description: Notification",
      ],
      body: encoder.encode(text),
    },
    {
      headers: [
        `Content-Type: message/${reportType}`,
        ...(global ? ["Content-Transfer-Encoding: 8bit"] : []),
        "Content-Description: Delivery report",
      ],
      body: encoder.encode(fields),
    },
    {
      headers: [
        global ? "Content-Type: message/global-headers" : "Content-Type: text/rfc822-headers",
        ...(global || has8bit(header) ? ["Content-Transfer-Encoding: 8bit"] : []),
        "Content-Description: Header of the undelivered message",
      ],
      body: header,
    },
  ];

  let boundary = input.boundary ?? randomBoundary();
  while (parts.some((part) => contains(part.body, encoder.encode(`--${boundary}`)))) {
    if (input.boundary !== undefined) {
      throw new RangeError(`Cannot use boundary "${boundary}": it occurs in the content`);
    }
    boundary = randomBoundary();
  }

  const failed = recipients.some((r) => r.action === "failed");
  const eightBit = global || has8bit(header) || !isAscii(text);
  const top = [
    field("From", `Mail Delivery System <MAILER-DAEMON@${host}>`),
    field("To", `<${cleanAddress(input.originalSender)}>`),
    field(
      "Subject",
      failed ? "Undelivered Mail Returned to Sender" : "Delayed Mail (still being retried)",
    ),
    field("Date", rfc5322Date(input.now ?? new Date())),
    field("Message-ID", `<${randomHex(16)}@${host}>`),
    // RFC 3834 section 5: marks the DSN as automatic, so that responders
    // such as vacation programs do not answer it.
    field("Auto-Submitted", "auto-replied"),
    field("MIME-Version", "1.0"),
    // RFC 6522 section 3: report-type names the subtype of the second part.
    field("Content-Type", `multipart/report; report-type=${reportType}; boundary="${boundary}"`),
    // RFC 2045 section 6.4: a multipart's encoding is the widest of its parts.
    ...(eightBit ? [field("Content-Transfer-Encoding", "8bit")] : []),
  ];

  const chunks: Uint8Array[] = [
    encoder.encode(top.join("") + "\r\nThis is a delivery status notification in MIME format.\r\n"),
  ];
  for (const part of parts) {
    chunks.push(encoder.encode(`\r\n--${boundary}\r\n${part.headers.join("\r\n")}\r\n\r\n`));
    // Every body ends in CRLF; the delimiter brings its own CRLF in front
    // (RFC 2046 section 5.1.1), so that ending stays part of the body.
    chunks.push(part.body);
  }
  chunks.push(encoder.encode(`\r\n--${boundary}--\r\n`));
  return concatBytes(chunks);
}

/** The fields of the message/delivery-status part (RFC 3464 section 2). */
function deliveryStatus(host: string, arrival: Date, recipients: DsnRecipient[]): string {
  const groups = [
    field("Reporting-MTA", `dns; ${host}`) + field("Arrival-Date", rfc5322Date(arrival)),
  ];
  for (const r of recipients) {
    // RFC 6533 section 3: a non-ASCII address has the "utf-8" type.
    const type = isAscii(r.address) ? "rfc822" : "utf-8";
    let group = field("Final-Recipient", `${type}; ${r.address}`) +
      field("Action", r.action) + field("Status", r.status);
    if (r.remoteMta) group += field("Remote-MTA", `dns; ${r.remoteMta}`);
    if (r.diagnostic) {
      // RFC 3464 section 2.3.6: the "smtp" type is for SMTP replies; other
      // text (a connection error, say) gets our own X- type.
      const type = /^[245]\d\d(?:[ -]|$)/.test(r.diagnostic) ? "smtp" : "X-Postern";
      group += field("Diagnostic-Code", `${type}; ${r.diagnostic}`);
    }
    if (r.lastAttemptAt) group += field("Last-Attempt-Date", rfc5322Date(r.lastAttemptAt));
    // RFC 3464 section 2.3.9: only meaningful while we are still trying.
    if (r.action === "delayed" && r.willRetryUntil) {
      group += field("Will-Retry-Until", rfc5322Date(r.willRetryUntil));
    }
    groups.push(group);
  }
  // Groups are separated by an empty line (RFC 3464 section 2.1).
  return groups.join("\r\n");
}

/** The human-readable first part. */
function explanation(
  input: DsnInput,
  host: string,
  recipients: DsnRecipient[],
  truncated: boolean,
): string {
  const lines = [`This is the mail system at ${host}.`, ""];
  const failed = recipients.filter((r) => r.action === "failed");
  const delayed = recipients.filter((r) => r.action === "delayed");
  if (failed.length > 0) {
    lines.push(
      ...wrap("Your message could not be delivered to the following recipients:", 0, 0),
      "",
    );
    for (const r of failed) lines.push(...recipientLines(r), "");
  }
  if (delayed.length > 0) {
    lines.push(
      ...wrap(
        "Your message has not been delivered yet to the following recipients. The mail " +
          "system is still trying; there is no need to send the message again.",
        0,
        0,
      ),
      "",
    );
    for (const r of delayed) lines.push(...recipientLines(r), "");
  }
  lines.push(
    `Queue ID: ${clean(input.queueId)}`,
    `Arrived:  ${rfc5322Date(input.arrivalDate)}`,
    "",
    ...wrap(
      "The header of your message is attached; its body is not returned." +
        (truncated ? ` The header was longer than ${HEADER_LIMIT} bytes and is cut short.` : ""),
      0,
      0,
    ),
  );
  return lines.join("\r\n") + "\r\n";
}

/** One recipient's paragraph in the human-readable part. */
function recipientLines(r: DsnRecipient): string[] {
  const lines = wrap(`<${r.address}>`, 2, 2).map((line) => `  ${line}`);
  const said = r.remoteMta ? `The server ${r.remoteMta} answered:` : "Reason:";
  let summary = `Status ${r.status}.`;
  if (r.action === "failed" && r.status.startsWith("4.")) {
    summary += " The mail system gave up after repeated temporary errors.";
  }
  const details = [summary];
  if (r.diagnostic) details.push(`${said} ${r.diagnostic}`);
  if (r.lastAttemptAt) details.push(`Last attempt: ${rfc5322Date(r.lastAttemptAt)}`);
  if (r.action === "delayed" && r.willRetryUntil) {
    details.push(`Retrying until: ${rfc5322Date(r.willRetryUntil)}`);
  }
  for (const detail of details) lines.push(...wrap(detail, 4, 4).map((line) => `    ${line}`));
  return lines;
}

/** The recipient with every value made safe to place in a header line. */
function cleanRecipient(r: DsnRecipient): DsnRecipient {
  const out: DsnRecipient = {
    address: cleanAddress(r.address),
    action: r.action,
    // A malformed code must not stop the DSN from going out: say only
    // "failed" or "delayed" then (RFC 3463 section 3.1, "other undefined").
    status: STATUS.test(r.status) ? r.status : r.action === "failed" ? "5.0.0" : "4.0.0",
  };
  const diagnostic = r.diagnostic === undefined ? "" : limitOctets(clean(r.diagnostic));
  if (diagnostic) out.diagnostic = diagnostic;
  const remoteMta = r.remoteMta === undefined ? "" : hostName(r.remoteMta);
  if (remoteMta) out.remoteMta = remoteMta;
  if (r.lastAttemptAt) out.lastAttemptAt = r.lastAttemptAt;
  if (r.willRetryUntil) out.willRetryUntil = r.willRetryUntil;
  return out;
}

/** `bytes` random bytes as lower-case hex. */
function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)))
    .map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** A boundary of 32 random hex digits: too long to turn up by chance. */
function randomBoundary(): string {
  return `postern-${randomHex(16)}`;
}
