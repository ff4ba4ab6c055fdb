/**
 * Password hashes for submission users: scrypt (RFC 7914), salted, in a
 * PHC-style string, `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64 without
 * padding), so that the cost can be raised later while old hashes keep
 * verifying. N = 2^15, r = 8 (32 MiB, tens of milliseconds) is the cost
 * RFC 7914 section 2 and OWASP suggest for interactive logins.
 *
 * @module
 */

import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

const PREFIX = "$scrypt$";
const DEFAULT = { ln: 15, r: 8, p: 1 };
const KEY_BYTES = 32;
const SALT_BYTES = 16;

function derive(
  password: string,
  salt: Uint8Array,
  params: { ln: number; r: number; p: number },
): Promise<Uint8Array> {
  const N = 2 ** params.ln;
  return new Promise((resolve, reject) => {
    scrypt(
      password.normalize("NFC"),
      salt,
      KEY_BYTES,
      // 128 * N * r bytes, with room for the rest of the computation.
      { N, r: params.r, p: params.p, maxmem: 256 * N * params.r },
      (err, key) => err ? reject(err) : resolve(new Uint8Array(key)),
    );
  });
}

const encode = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes)).replace(/=+$/, "");
const decode = (text: string) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

/** Hashes `password` with a new random salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = new Uint8Array(randomBytes(SALT_BYTES));
  const key = await derive(password, salt, DEFAULT);
  return `${PREFIX}ln=${DEFAULT.ln},r=${DEFAULT.r},p=${DEFAULT.p}$${encode(salt)}$${encode(key)}`;
}

/** True when `text` has the shape of a hash from {@linkcode hashPassword}. */
export function isPasswordHash(text: string): boolean {
  return parse(text) !== undefined;
}

/**
 * True when `password` matches `hash`. A malformed hash matches nothing.
 * The comparison takes the same time wherever the keys differ.
 */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const parsed = parse(hash);
  if (!parsed) return false;
  const key = await derive(password, parsed.salt, parsed.params);
  return key.length === parsed.key.length && timingSafeEqual(key, parsed.key);
}

function parse(
  hash: string,
): { params: { ln: number; r: number; p: number }; salt: Uint8Array; key: Uint8Array } | undefined {
  const match =
    /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/
      .exec(hash);
  if (!match) return undefined;
  const params = { ln: Number(match[1]), r: Number(match[2]), p: Number(match[3]) };
  // Bounds that keep a hash file from asking for absurd memory or time.
  if (params.ln < 10 || params.ln > 20 || params.r < 1 || params.r > 32) return undefined;
  if (params.p < 1 || params.p > 16) return undefined;
  try {
    return { params, salt: decode(match[4]!), key: decode(match[5]!) };
  } catch {
    return undefined;
  }
}
