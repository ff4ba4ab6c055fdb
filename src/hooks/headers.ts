/**
 * Checks on what hooks hand back: header lines to add to a message, and
 * text to put in an SMTP reply.
 *
 * @module
 */

/** Header lines split into those kept (joined with CRLF) and those dropped. */
export interface CheckedHeaders {
  /** The kept lines, each ending in CRLF; "" when none. */
  text: string;
  kept: number;
  dropped: string[];
}

/** RFC 5322 section 2.1.1: a line is at most 998 characters. */
const MAX_LINE = 998;

/**
 * RFC 5322 section 2.2: a field name is printable US-ASCII except ":",
 * followed by ":". The body may be UTF-8 (RFC 6532) but no control
 * characters other than tab, C1 included: RFC 5198 section 2 (Unicode
 * text on the wire) says U+0080-U+009F MUST NOT be used. U+2028 and U+2029
 * go too: the Unicode standard (section 5.8, newline guidelines) makes
 * them line breaks, as it does NEL (U+0085), so to some readers they start
 * a second field; replyText() below treats them as line breaks already.
 */
// deno-lint-ignore no-control-regex -- control characters are what is refused
const FIELD = /^[\x21-\x39\x3b-\x7e]+:[^\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]*$/;
// deno-lint-ignore no-control-regex -- as above
const CONTINUATION = /^[ \t][^\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]*$/;

/**
 * Keeps the lines that form valid header fields. A continuation line (one
 * starting with white space, RFC 5322 section 2.2.3) is kept only after a
 * kept field; empty lines are ignored.
 */
export function checkHeaderLines(lines: readonly string[]): CheckedHeaders {
  const kept: string[] = [];
  const dropped: string[] = [];
  let previousKept = false;
  for (const raw of lines.flatMap((l) => l.split(/\r?\n/))) {
    const line = raw.replace(/\r$/, "");
    if (line === "") continue;
    const ok: boolean = new TextEncoder().encode(line).byteLength <= MAX_LINE &&
      (FIELD.test(line) || (previousKept && CONTINUATION.test(line) && line.trim() !== ""));
    if (ok) kept.push(line);
    else dropped.push(line.slice(0, 200));
    previousKept = ok;
  }
  return {
    text: kept.map((l) => `${l}\r\n`).join(""),
    kept: kept.length,
    dropped,
  };
}

/**
 * Keeps the entries of a module hook's `headers` that add at most one
 * field each. An entry is one field, whose line breaks (CRLF or LF) are
 * allowed only as folding: each following line starts with white space
 * (RFC 5322 section 2.2.3), so it continues the field instead of starting
 * another. An entry that starts with white space continues the field of
 * the entry before it, and is kept only when that one was. Anything else
 * (a line break before a new field, a bare CR, a NUL or other control
 * character, C1 controls and U+2028/U+2029 included, an invalid name, an
 * empty line that would end the header) and the whole entry is dropped,
 * so a hook that copies untrusted text into a header cannot let a sender
 * add fields.
 */
export function checkHeaderEntries(entries: readonly string[]): CheckedHeaders {
  const kept: string[] = [];
  const dropped: string[] = [];
  let previousKept = false;
  for (const entry of entries) {
    if (entry === "") continue;
    const lines = entry.split(/\r\n|\n/);
    const continuation = /^[ \t]/.test(entry);
    const ok: boolean = (!continuation || previousKept) &&
      lines.every((line, i) => validLine(line, i === 0 && !continuation));
    if (ok) kept.push(...lines);
    else dropped.push(entry.slice(0, 200));
    previousKept = ok;
  }
  return { text: kept.map((l) => `${l}\r\n`).join(""), kept: kept.length, dropped };
}

/** One line of a field: its first (`name:` and body) or a continuation line. */
function validLine(line: string, first: boolean): boolean {
  if (new TextEncoder().encode(line).byteLength > MAX_LINE) return false;
  return first ? FIELD.test(line) : CONTINUATION.test(line) && line.trim() !== "";
}

/** A field name (RFC 5322 section 2.2): printable US-ASCII except ":". */
const NAME = /^[\x21-\x39\x3b-\x7e]+$/;

/**
 * The lines of a `name → value` record. An entry whose name is not a field
 * name, or whose value holds a line break not followed by white space
 * (which would start another field), becomes one invalid line, so it is
 * dropped whole rather than smuggling in a second field.
 */
export function recordToLines(record: Readonly<Record<string, string>>): string[] {
  return Object.entries(record).map(([name, value]) =>
    NAME.test(name) && !/\r?\n(?![ \t])/.test(value)
      ? `${name}: ${value}`
      : `invalid entry ${JSON.stringify(name)}`
  );
}

/**
 * Text a hook wants in an SMTP reply, made safe: one line of printable
 * US-ASCII (RFC 5321 section 4.2: reply text is printable ASCII; control
 * characters, C1 included, become spaces, other characters "?"), at most
 * 300 characters (section 4.5.3.1.5 allows 512 per reply line, code
 * included).
 */
export function replyText(text: string, fallback: string): string {
  const clean = text
    // deno-lint-ignore no-control-regex -- control characters cannot go in a reply
    .replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]+/g, " ")
    .replace(/[^\x20-\x7e]/gu, "?")
    .replace(/\s+/g, " ")
    .trim();
  return clean === "" ? fallback : clean.slice(0, 300);
}

/** The last non-empty line of `output`, as chasquid reads a hook's error. */
export function lastLine(output: string): string {
  return output.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "").at(-1) ?? "";
}
