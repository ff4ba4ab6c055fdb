/**
 * The admin API's bearer token: read from its file, or generated on first
 * start (256 random bits) and written with mode 0600, so that only the
 * server's user (and root) can use the API. The token is never logged.
 * `adminProof` lets the server show it holds the token without sending it.
 *
 * @module
 */

import { mkdir, open, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";

/** What {@linkcode loadOrCreateToken} found or did. */
export interface AdminToken {
  token: string;
  /** True when the file was written just now. */
  created: boolean;
  /** A warning about the file's permissions, when others may read it. */
  warning?: string;
}

/** Tokens shorter than this are refused: guessable. */
const MIN_TOKEN_LENGTH = 16;

/**
 * What an HTTP bearer token may hold (RFC 6750, 2.1, b64token): the server
 * reads `Authorization: Bearer <token>` up to the first space, so a token
 * with a space (a passphrase) could never be presented.
 */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Why `token` (read from `path`) cannot be the admin token, or undefined
 * when it can. The message never quotes the token.
 */
export function tokenProblem(token: string, path: string): string | undefined {
  if (token.length < MIN_TOKEN_LENGTH) {
    return `${path}: the admin token must be at least ${MIN_TOKEN_LENGTH} characters`;
  }
  if (!B64TOKEN.test(token)) {
    const what = /\s/.test(token) ? "white space" : "a character outside that set";
    return `${path}: the admin token may hold only the letters A-Z and a-z, the digits 0-9 and ` +
      `- . _ ~ + / (then = signs at its end), as an HTTP bearer token (RFC 6750); it holds ${what}`;
  }
  return undefined;
}

/**
 * Reads the token from `path`, or creates the file with a new one.
 *
 * @throws {Error} naming the file when it cannot be read or written, or
 * holds a token too short to be safe or not fit for a bearer token.
 */
export async function loadOrCreateToken(path: string): Promise<AdminToken> {
  let text: string | undefined;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as { code?: string }).code !== "ENOENT") {
      throw new Error(`${path}: cannot read the admin token: ${(err as Error).message}`);
    }
  }
  if (text !== undefined) {
    const token = text.trim();
    const problem = tokenProblem(token, path);
    if (problem) throw new Error(problem);
    const mode = (await stat(path)).mode & 0o077;
    return {
      token,
      created: false,
      ...(mode !== 0 ? { warning: `${path} is readable by other users; chmod 600 it` } : {}),
    };
  }
  const token = randomBase64url();
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  // "wx": never overwrite a token another process wrote meanwhile.
  const handle = await open(path, "wx", 0o600);
  try {
    await handle.writeFile(`${token}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { token, created: true };
}

/** Compares two strings in time independent of where they differ. */
export function sameToken(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  let difference = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) difference |= (a[i] ?? 0) ^ b[i]!;
  return difference === 0;
}

/** A challenge the command line sends: 128 to 768 bits, base64url. */
export const CHALLENGE_PATTERN = /^[A-Za-z0-9_-]{22,128}$/;

/**
 * The server's answer to a challenge: HMAC-SHA256 keyed by the token over
 * the challenge, base64url. Only a holder of the token can compute it, and
 * it reveals nothing that lets anyone use the API: the command line checks
 * it before it sends the token, so that a program squatting on the port
 * named in a stale `admin.json` (or on `admin.listen`) never receives it.
 */
export async function adminProof(token: string, challenge: string): Promise<string> {
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(token),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  // The label keeps these MACs apart from any other use of the token.
  const mac = await crypto.subtle.sign(
    "HMAC",
    key,
    encoder.encode(`postern-admin-proof:${challenge}`),
  );
  return base64url(new Uint8Array(mac));
}

/** 256 random bits, base64url: a new token, or a challenge. */
export function randomBase64url(): string {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
}
