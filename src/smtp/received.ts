/**
 * The Received trace header (RFC 5321 section 4.4; protocol names from
 * RFC 3848 and RFC 6531).
 *
 * @module
 */

/** What the Received header records. */
export interface ReceivedInfo {
  helo: string;
  clientIp: string;
  hostname: string;
  queueId: string;
  tls: boolean;
  smtputf8: boolean;
  esmtp: boolean;
  /** The client authenticated (AUTH): RFC 3848's ESMTPA and ESMTPSA. */
  authenticated?: boolean;
  /** The recipients; named only when there is exactly one (for privacy). */
  recipients: readonly string[];
  date: Date;
}

/** Builds the header, folded, ending in CRLF. */
export function receivedHeader(info: ReceivedInfo): string {
  // RFC 3848 section 2: ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both); RFC
  // 6531 section 3.7.3 the same for UTF8SMTP. AUTH implies ESMTP.
  const esmtp = info.esmtp || info.authenticated === true;
  const protocol = (info.smtputf8 ? "UTF8SMTP" : esmtp ? "ESMTP" : "SMTP") +
    (info.tls ? "S" : "") + (info.authenticated && esmtp ? "A" : "");
  const helo = sanitize(info.helo) || "unknown";
  const lines = [
    `Received: from ${helo} ([${info.clientIp}])`,
    `\tby ${sanitize(info.hostname)} (Postern) with ${protocol} id ${info.queueId}`,
  ];
  const single = info.recipients.length === 1 ? sanitize(info.recipients[0]!) : "";
  lines.push(
    single ? `\tfor <${single}>; ${rfc5322Date(info.date)}` : `\t; ${rfc5322Date(info.date)}`,
  );
  return lines.join("\r\n") + "\r\n";
}

/** Keeps client-supplied text from breaking the header's structure. */
function sanitize(text: string): string {
  return text.replace(/[^\x21-\x7e\u0080-\uffff]|[()<>;\\]/g, "");
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** RFC 5322 section 3.3 date-time in UTC, such as `Sun, 22 Nov 2026 05:33:00 +0000`. */
export function rfc5322Date(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[date.getUTCDay()]}, ${date.getUTCDate()} ${
    MONTHS[date.getUTCMonth()]
  } ${date.getUTCFullYear()} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`;
}
