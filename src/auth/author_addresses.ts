/**
 * The author addresses of a message, read from its From fields so that
 * comments and folding white space cannot hide the Author Domain.
 *
 * RFC 5322 section 3.4.1 lets CFWS stand around every part of an addr-spec
 * (`dot-atom = [CFWS] dot-atom-text [CFWS]`, and obs-domain between its
 * atoms), so `<ceo@(x)rej.test>` and `<ceo@rej (x).test>` are the mailbox
 * ceo@rej.test. mailauth's address parser keeps such text inside angle
 * brackets, and the domain it found (`(x)rej.test`, or `rej`) had no DMARC
 * record: a domain with `p=reject` was bypassed. Here comments are removed
 * and the white space beside "@" and "." is dropped before the field is
 * parsed; quoted strings are kept as they are.
 *
 * @module
 */

import addressparser from "nodemailer/lib/addressparser";

/**
 * The addresses of the mailboxes in `fields` (whole From header fields,
 * name and colon included), group members too (RFC 6854), in order.
 */
export function authorAddresses(fields: string[]): string[] {
  const addresses: string[] = [];
  for (const field of fields) {
    const colon = field.indexOf(":");
    const value = withoutCfws(colon >= 0 ? field.slice(colon + 1) : field);
    for (const entry of addressparser(value.trim())) {
      const mailboxes: Array<{ address?: string | undefined }> =
        ("group" in entry ? entry.group : [entry]) ??
          [];
      for (const mailbox of mailboxes) {
        if (mailbox?.address) addresses.push(mailbox.address);
      }
    }
  }
  return addresses;
}

/**
 * `value` unfolded (RFC 5322 section 2.2.3), each comment (nested, with
 * quoted-pairs: section 3.2.2) turned into one space, and no white space
 * beside "@" and "." outside quoted strings.
 */
export function withoutCfws(value: string): string {
  const text = value.replace(/\r?\n/g, "");
  let out = "";
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (depth > 0) {
      if (c === "\\") i++;
      else if (c === "(") depth++;
      else if (c === ")" && --depth === 0) out += " ";
      continue;
    }
    if (quoted) {
      out += c;
      if (c === "\\") out += text[++i] ?? "";
      else if (c === '"') quoted = false;
      continue;
    }
    if (c === "(") {
      depth = 1;
      continue;
    }
    if (c === '"') quoted = true;
    out += c;
  }
  // Quoted strings (odd pieces) keep their spaces; elsewhere CFWS beside
  // "@" and "." is no part of the address.
  return out.split(/("(?:[^"\\]|\\.)*")/).map((piece, i) =>
    i % 2 === 1 ? piece : piece.replace(/[ \t]*([@.])[ \t]*/g, "$1")
  ).join("");
}
