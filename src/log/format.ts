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
 * Formats one value: bare when it is a safe token, otherwise JSON-quoted so
 * that spaces, quotes and control characters from clients can never split or
 * forge a log line.
 */
export function formatValue(value: LogValue): string {
  if (value === null || value === undefined) return "-";
  const text = String(value);
  return text !== "" && BARE_VALUE.test(text) ? text : JSON.stringify(text);
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
