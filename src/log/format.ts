/**
 * The stable `key=value` line format shared by the mail log and the
 * application log.
 *
 * @module
 */

/** A value that can appear in a log line. */
export type LogValue = string | number | boolean | null | undefined;

/** Fields of one log line, in the order they are written. */
export type LogFields = Record<string, LogValue>;

const BARE_VALUE = /^[A-Za-z0-9_.:@<>\/+\-\[\]]+$/;

/**
 * Characters JSON leaves as they are that a reader can still take for a line
 * break or a terminal control: DEL, the C1 controls (U+0085 is NEL, U+009B
 * starts a terminal escape) and the Unicode line and paragraph separators.
 */
const UNESCAPED_BY_JSON = /[\u007f-\u009f\u2028\u2029]/g;

/**
 * Formats one value: bare when it is a safe token, otherwise JSON-quoted so
 * that spaces, quotes and control characters from clients can never split or
 * forge a log line.
 */
export function formatValue(value: LogValue): string {
  if (value === null || value === undefined) return "-";
  const text = String(value);
  if (text !== "" && BARE_VALUE.test(text)) return text;
  return JSON.stringify(text).replace(
    UNESCAPED_BY_JSON,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Formats fields as `key=value` pairs, skipping undefined values. */
export function formatFields(fields: LogFields): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    parts.push(`${key}=${formatValue(value)}`);
  }
  return parts.join(" ");
}

/**
 * C0 and C1 controls, DEL, the line and paragraph separators, and the
 * bidirectional marks, embeddings, overrides and isolates: what can break
 * a line of a log or drive the terminal that shows it.
 */
// deno-lint-ignore no-control-regex -- control characters are what is escaped
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` with each unsafe character written as `\xHH` or `\u{HHHH}`, line
 * breaks included: one line whatever the text, readable in a terminal.
 */
export function printable(text: string): string {
  return text.replace(UNSAFE, (ch) => {
    const code = ch.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
  });
}
