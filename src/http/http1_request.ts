/**
 * Reading one HTTP/1.1 request for http1_server.ts:
 * the head up to its blank line, parsed strictly, and a body of the length
 * Content-Length announces. Whatever cannot be served is a
 * {@linkcode Refusal} carrying the status that says why.
 *
 * @module
 */

import type { TcpConn } from "../runtime/tcp.ts";

/** A parsed request head; header names in lower case, in their order. */
export interface Head {
  method: string;
  target: string;
  headers: Array<[string, string]>;
}

/** A request that cannot be served, with the status that says why. */
export class Refusal {
  /** The status and the message of the JSON error answer. */
  constructor(readonly status: number, readonly message: string) {}
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// deno-lint-ignore no-control-regex -- control characters are what is refused
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/** The bytes up to the blank line ending the head, and what came after; null if the client left. */
export async function readHead(
  conn: TcpConn,
  maxHeadBytes: number,
): Promise<{ head: string; rest: Uint8Array } | null> {
  const buffer = new Uint8Array(maxHeadBytes + 4);
  let filled = 0;
  let searchFrom = 0;
  while (true) {
    if (filled === buffer.length) throw new Refusal(431, "the request head is too large");
    const n = await conn.read(buffer.subarray(filled));
    if (n === null) return null;
    filled += n;
    for (let i = Math.max(3, searchFrom); i < filled; i++) {
      if (
        buffer[i] === 10 && buffer[i - 1] === 13 && buffer[i - 2] === 10 && buffer[i - 3] === 13
      ) {
        const head = latin1(buffer.subarray(0, i - 3));
        return { head, rest: buffer.slice(i + 1, filled) };
      }
    }
    searchFrom = filled;
  }
}

/** One character per byte (TextDecoder's "latin1" is windows-1252, which is not). */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return text;
}

/** Parses a head (without its blank line); refuses what is malformed. */
export function parseHead(text: string): Head {
  // Empty lines before the request line are allowed (RFC 9112, 2.2).
  const lines = text.replace(/^(\r\n)+/, "").split("\r\n");
  const match = /^(\S+) (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? "");
  if (!match || !TOKEN.test(match[1]!)) throw new Refusal(400, "malformed request line");
  const target = match[2]!;
  if (!/^\/[\x21-\x7e]*$/.test(target)) throw new Refusal(400, "the request target must be a path");
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    // No folded lines, no space before the colon, no control characters.
    if (colon <= 0 || !TOKEN.test(name) || CONTROL.test(value)) {
      throw new Refusal(400, "malformed header field");
    }
    headers.push([name.toLowerCase(), value]);
  }
  return { method: match[1]!, target, headers };
}

/** The first value of header `name` (lower case). */
export function header(head: Head, name: string): string | undefined {
  return head.headers.find(([n]) => n === name)?.[1];
}

/** The body's length from Content-Length; refused when unclear or too large. */
export function bodyLength(head: Head, maxBodyBytes: number): number {
  if (head.headers.some(([n]) => n === "transfer-encoding")) {
    throw new Refusal(501, "Transfer-Encoding is not supported; send the body with Content-Length");
  }
  const values = head.headers.filter(([n]) => n === "content-length").flatMap(([, v]) =>
    v.split(",").map((s) => s.trim())
  );
  if (values.length === 0) return 0;
  if (!values.every((v) => /^\d{1,15}$/.test(v) && v === values[0])) {
    throw new Refusal(400, "malformed Content-Length");
  }
  const length = Number(values[0]);
  if (length > maxBodyBytes) {
    throw new Refusal(413, `the request body is larger than ${maxBodyBytes} bytes`);
  }
  return length;
}

/** Exactly `length` bytes of body; null if the client left first. */
export async function readBody(
  conn: TcpConn,
  already: Uint8Array,
  length: number,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const body = new Uint8Array(length);
  let filled = Math.min(already.length, length);
  body.set(already.subarray(0, filled));
  while (filled < length) {
    const n = await conn.read(body.subarray(filled));
    if (n === null) return null;
    filled += n;
  }
  return body;
}

/** A Web `Request` for the handler, at the bound address `authority`. */
export function toRequest(
  head: Head,
  authority: string,
  body: Uint8Array<ArrayBuffer> | undefined,
): Request {
  try {
    const headers = new Headers();
    for (const [name, value] of head.headers) headers.append(name, value);
    const bodyless = head.method === "GET" || head.method === "HEAD";
    // The URL names the bound address, whatever the Host header says.
    return new Request(`http://${authority}${head.target}`, {
      method: head.method,
      headers,
      ...(body && !bodyless ? { body } : {}),
    });
  } catch (err) {
    throw new Refusal(400, `malformed request: ${err instanceof Error ? err.message : err}`);
  }
}
