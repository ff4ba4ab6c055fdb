/**
 * Small text helpers for the header fields and reply texts built from
 * authentication results.
 *
 * @module
 */

/** Header lines SHOULD stay within 78 characters (RFC 5322 section 2.1.1). */
const FOLD_WIDTH = 78;

/**
 * Folds a header field (or part of one) by inserting CRLF before existing
 * spaces, so unfolding gives back the same text (RFC 5322 section 2.2.3).
 * A word longer than the width stays whole on its own line.
 */
export function foldHeader(text: string, width: number = FOLD_WIDTH): string {
  const lines: string[] = [];
  let rest = text;
  while (rest.length > width) {
    let at = rest.lastIndexOf(" ", width);
    if (at <= 0) at = rest.indexOf(" ", width);
    if (at <= 0) break;
    lines.push(rest.slice(0, at));
    rest = rest.slice(at);
  }
  lines.push(rest);
  return lines.join("\r\n");
}

/** Removes folding: every CRLF followed by white space (RFC 5322 section 2.2.3). */
export function unfoldHeader(text: string): string {
  return text.replace(/\r?\n(?=[ \t])/g, "");
}

/**
 * The authserv-id of our Authentication-Results fields: our host name, or
 * a quoted string if it is not a token (RFC 8601 section 2.2).
 */
export function authservId(hostname: string): string {
  if (/^[A-Za-z0-9.\-_]+$/.test(hostname)) return hostname;
  return `"${hostname.replace(/[\\"]/g, "\\$&").replace(/[^\x20-\x7e]/g, "")}"`;
}

/**
 * Text from outside (a domain's SPF explanation, a DNS error) made safe for
 * one SMTP reply line: printable ASCII only, single spaces, and at most
 * `max` characters.
 */
export function replySafe(text: string, max = 200): string {
  const clean = text.replace(/[^\x20-\x7e]+/g, " ").replace(/\s+/g, " ").trim();
  return clean.length > max ? `${clean.slice(0, max - 3)}...` : clean;
}
