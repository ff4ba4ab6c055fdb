/**
 * Messages for the authentication tests, stored the way the spool stores
 * them: an envelope line first, then the message, so every test also
 * exercises the byte offset.
 *
 * @module
 */

import { writeFile } from "node:fs/promises";
import { join } from "node:path";

/** The hostname our side uses in header fields. */
export const HOSTNAME = "mx.postern.test";

/** A small message from `from`, with CRLF line endings. */
export function message(from: string, body = "Hello Bob,\r\n\r\nsee you at noon.\r\n"): string {
  return [
    `From: Alice <${from}>`,
    "To: Bob <bob@postern.test>",
    "Subject: Lunch",
    "Date: Mon, 01 Jan 2024 12:00:00 +0000",
    `Message-ID: <lunch.1@${from.slice(from.indexOf("@") + 1)}>`,
    "",
    body,
  ].join("\r\n");
}

/**
 * Writes `text` to `<dir>/<name>` after `prefix` (by default a one-line
 * envelope, as the spool writes); returns the path and the offset where the
 * message starts.
 */
export async function spoolFile(
  dir: string,
  name: string,
  text: string,
  prefix = `${JSON.stringify({ v: 1, id: name, from: "alice@example", to: ["bob@x"] })}\n`,
): Promise<{ path: string; offset: number }> {
  const path = join(dir, name);
  await writeFile(path, prefix + text);
  return { path, offset: new TextEncoder().encode(prefix).byteLength };
}
