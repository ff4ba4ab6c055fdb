/**
 * Text and byte helpers of the DSN builder: header fields folded within
 * RFC 5322's line limits, values made safe to place in a field, lengths in
 * UTF-8 octets, and CRLF line endings.
 *
 * @module
 */

/** Longest diagnostic kept, in octets: a multi-line reply can run to pages. */
const DIAGNOSTIC_LIMIT = 1024;

/** Preferred line length (RFC 5322 section 2.1.1 "SHOULD" limit, without CRLF). */
const WIDTH = 78;

/**
 * Longest unbreakable word kept on one line. RFC 5322 section 2.1.1 forbids
 * lines over 998 octets; this leaves room for the field name or indent.
 */
const MAX_WORD = 900;

const CR = 13;
const LF = 10;

/** `name: value` folded at spaces (RFC 5322 section 2.2.3), ending in CRLF. */
export function field(name: string, value: string): string {
  return `${name}: ${wrap(value, octets(name) + 2, 1).join("\r\n ")}\r\n`;
}

/**
 * Splits `text` at spaces into lines of at most {@linkcode WIDTH} octets,
 * counting `first` octets already used on the first line and `next` on the
 * others. A word longer than {@linkcode MAX_WORD} octets is cut, so that no
 * line can pass the 998-octet limit.
 */
export function wrap(text: string, first: number, next: number): string[] {
  const lines: string[] = [];
  let line = "";
  let used = first;
  for (const raw of text.split(" ")) {
    const word = cutOctets(raw, MAX_WORD);
    const size = octets(word);
    if (line !== "" && used + 1 + size > WIDTH) {
      lines.push(line);
      line = "";
      used = next;
    } else if (line !== "") {
      line += " ";
      used++;
    }
    line += word;
    used += size;
  }
  lines.push(line);
  return lines;
}

/** `text` on one line: control characters and runs of white space become one space. */
export function clean(text: string): string {
  // deno-lint-ignore no-control-regex -- control characters are what is removed
  return text.replace(/[\s\x00-\x1f\x7f]+/g, " ").trim();
}

/**
 * An address without control characters, which could otherwise start a new
 * header line. Spaces stay: a quoted local part may hold them.
 */
export function cleanAddress(address: string): string {
  // deno-lint-ignore no-control-regex -- as above
  return address.replace(/[\x00-\x1f\x7f]/g, "");
}

/** A host name with nothing that could break the field it is placed in. */
export function hostName(name: string): string {
  return name.replace(/[^\x21-\x7e\u0080-\uffff]|[()<>;\\"]/g, "");
}

/** `text` cut to {@linkcode DIAGNOSTIC_LIMIT} octets, marked when cut. */
export function limitOctets(text: string): string {
  if (octets(text) <= DIAGNOSTIC_LIMIT) return text;
  return cutOctets(text, DIAGNOSTIC_LIMIT - 3) + "...";
}

/** The longest prefix of `text` of at most `limit` UTF-8 octets, whole characters only. */
function cutOctets(text: string, limit: number): string {
  if (text.length * 3 <= limit) return text;
  let size = 0;
  let end = 0;
  for (const char of text) {
    size += octets(char);
    if (size > limit) break;
    end += char.length;
  }
  return text.slice(0, end);
}

/** The length of `text` in UTF-8 (a lone surrogate counts as U+FFFD, 3 octets). */
function octets(text: string): number {
  let size = 0;
  for (const char of text) {
    const code = char.codePointAt(0)!;
    size += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
  }
  return size;
}

/** True when `text` is all US-ASCII. */
export function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** True when `bytes` hold any octet above 127. */
export function has8bit(bytes: Uint8Array): boolean {
  return bytes.some((byte) => byte >= 0x80);
}

/**
 * `bytes` with every line ending as CRLF: a bare LF gets its CR, and a bare
 * CR becomes a space. RFC 5322 section 2.3 allows CR and LF only together.
 */
export function crlfLines(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.byteLength * 2);
  let n = 0;
  for (let i = 0; i < bytes.byteLength; i++) {
    const byte = bytes[i]!;
    if (byte === CR) {
      if (bytes[i + 1] === LF) {
        out[n++] = CR;
        out[n++] = LF;
        i++;
      } else {
        out[n++] = 0x20;
      }
    } else if (byte === LF) {
      out[n++] = CR;
      out[n++] = LF;
    } else {
      out[n++] = byte;
    }
  }
  // A last line without its ending (a message that is all header) gets one.
  if (n > 0 && out[n - 1] !== LF) {
    out[n++] = CR;
    out[n++] = LF;
  }
  return out.slice(0, n);
}

/** True when `needle` occurs in `haystack`. */
export function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  const first = needle[0];
  let i = haystack.indexOf(first!);
  while (i >= 0 && i + needle.byteLength <= haystack.byteLength) {
    let j = 1;
    while (j < needle.byteLength && haystack[i + j] === needle[j]) j++;
    if (j === needle.byteLength) return true;
    i = haystack.indexOf(first!, i + 1);
  }
  return false;
}
