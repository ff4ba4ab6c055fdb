/**
 * Text from the server made safe for a terminal. What the admin API
 * returns carries strings from strangers (a remote MX's reply in
 * `last_error`, an envelope sender, a queue ID typed in a URL): printed
 * raw, their control characters would drive the administrator's terminal
 * (ANSI escapes can rewrite the screen, set the title, or hide text), and
 * bidirectional overrides can make text read other than it is.
 *
 * @module
 */

export { printable } from "../log/mod.ts";

/** Of what JSON.stringify leaves raw, the characters to escape (it escapes C0 itself). */
const UNSAFE_IN_JSON = /[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `value` as indented JSON with every unsafe character escaped as `\uHHHH`:
 * still JSON, and the same value once parsed.
 */
export function printableJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    UNSAFE_IN_JSON,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
