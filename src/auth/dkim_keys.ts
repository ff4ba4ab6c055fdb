/**
 * DKIM keys (RFC 6376): generating a key pair for one of our domains,
 * storing the private key, the TXT record to publish, and signing a spooled
 * message with mailauth.
 *
 * Keys live in the configuration directory, one PEM file per selector:
 *
 * ```text
 * <config>/domains/<domain>/dkim/<selector>.pem     PKCS#8 private key, mode 0640
 * ```
 *
 * and the public half is published as
 * `<selector>._domainkey.<domain> TXT "v=DKIM1; k=rsa; p=…"`.
 *
 * @module
 */

import { generateKeyPair, type KeyObject } from "node:crypto";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { makeConfigDirs, writeNewConfigFile } from "../config/file_modes.ts";
import { dkimSign as mailauthSign } from "./mailauth.ts";

/** Key types: RSA (RFC 6376) or Ed25519 (RFC 8463). */
export type DkimAlgorithm = "rsa" | "ed25519";

/** The TXT record that publishes a public key. */
export interface DkimDnsRecord {
  /** The owner name, `<selector>._domainkey.<domain>`. */
  name: string;
  /** The record's text, `v=DKIM1; k=…; p=…`. */
  value: string;
  /** `value` cut into character-strings of at most 255 bytes (RFC 1035 section 3.3). */
  strings: string[];
  /** A zone-file line to paste: `name. IN TXT ( "…" "…" )`. */
  zoneLine: string;
}

/** A key written by `generateDkimKey()`. */
export interface GeneratedDkimKey {
  /** The signing domain (d=). */
  domain: string;
  /** The selector (s=). */
  selector: string;
  /** The key type. */
  algorithm: DkimAlgorithm;
  /** Where the private key was written. */
  path: string;
  /** The private key, PKCS#8 PEM. */
  privateKey: string;
  /** The record to publish. */
  record: DkimDnsRecord;
}

/** What `generateDkimKey()` needs. */
export interface GenerateDkimKeyOptions {
  /** The directory to write `<selector>.pem` into (see `dkimKeyDir()`). */
  dir: string;
  /** The signing domain. */
  domain: string;
  /** The selector; see `defaultDkimSelector()`. */
  selector: string;
  /** Key type; default "rsa". */
  algorithm?: DkimAlgorithm;
  /** RSA modulus length; default 2048 (RFC 8301 section 3.2 asks for at least 1024). */
  bits?: number;
  /**
   * The configuration directory `dir` is in: new folders and the key take
   * its group (see `config/file_modes.ts`). Default: `dir` itself.
   */
  configDir?: string;
}

const generatePair = promisify(generateKeyPair);

/** A selector or domain: dot-separated labels of letters, digits and hyphens. */
const NAME = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$/;

/** The directory holding a domain's keys: `<configDir>/domains/<domain>/dkim`. */
export function dkimKeyDir(configDir: string, domain: string): string {
  checkName("domain", domain);
  return join(configDir, "domains", domain.toLowerCase(), "dkim");
}

/** A selector made from the date, `YYYYMMDD` in UTC, as chasquid-util names its keys. */
export function defaultDkimSelector(date: Date = new Date()): string {
  return date.toISOString().slice(0, 10).replaceAll("-", "");
}

/**
 * Generates a key pair and writes the private key to `<dir>/<selector>.pem`,
 * fsynced, with mode 0640 in the configuration directory's group (folders
 * it creates: 0750), so the service's group can read it and nobody else.
 * Refuses to overwrite an existing key: a key whose record is published
 * must not change under it.
 */
export async function generateDkimKey(options: GenerateDkimKeyOptions): Promise<GeneratedDkimKey> {
  checkName("domain", options.domain);
  checkName("selector", options.selector);
  const algorithm = options.algorithm ?? "rsa";
  const { privateKey, publicKey } = algorithm === "rsa"
    ? await generatePair("rsa", { modulusLength: options.bits ?? 2048 })
    : await generatePair("ed25519");
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  await makeConfigDirs(options.configDir ?? options.dir, options.dir);
  const path = join(options.dir, `${options.selector}.pem`);
  await writeNewConfigFile(options.configDir, path, pem);
  return {
    domain: options.domain,
    selector: options.selector,
    algorithm,
    path,
    privateKey: pem,
    record: dkimDnsRecord(options.domain, options.selector, publicKey),
  };
}

/**
 * The TXT record for a public key. RSA keys are published as the base64 of
 * their SubjectPublicKeyInfo (RFC 6376 section 3.6.1), Ed25519 keys as the
 * bare 32-byte key (RFC 8463 section 4.2).
 */
export function dkimDnsRecord(
  domain: string,
  selector: string,
  publicKey: KeyObject,
): DkimDnsRecord {
  const der = publicKey.export({ type: "spki", format: "der" });
  const ed25519 = publicKey.asymmetricKeyType === "ed25519";
  // An Ed25519 SubjectPublicKeyInfo is a 12-byte header and then the key.
  const p = (ed25519 ? der.subarray(der.length - 32) : der).toString("base64");
  const value = `v=DKIM1; k=${ed25519 ? "ed25519" : "rsa"}; p=${p}`;
  const strings: string[] = [];
  for (let i = 0; i < value.length; i += 255) strings.push(value.slice(i, i + 255));
  const name = `${selector}._domainkey.${domain.toLowerCase()}`;
  return {
    name,
    value,
    strings,
    zoneLine: `${name}. IN TXT ( ${strings.map((s) => `"${s}"`).join(" ")} )`,
  };
}

/** What `dkimSign()` signs with. */
export interface DkimSignOptions {
  /** The signing domain (d=). */
  domain: string;
  /** The selector (s=). */
  selector: string;
  /** The private key, PEM. */
  privateKey: string;
}

/**
 * Signs the message stored in `path` from byte `offset` on (streamed, never
 * read whole) with relaxed/relaxed canonicalization, and returns the
 * `DKIM-Signature:` field to prepend, ending in CRLF. Rejects when mailauth
 * could not sign (no From field, an unusable key).
 */
export async function dkimSign(
  path: string,
  offset: number,
  options: DkimSignOptions,
): Promise<string> {
  const signature = {
    signingDomain: options.domain,
    selector: options.selector,
    privateKey: options.privateKey,
    canonicalization: "relaxed/relaxed",
  };
  // mailauth signs only what is listed in signatureData; its type also wants
  // the fields at the top level, where the signer ignores them.
  const result = await mailauthSign(createReadStream(path, { start: offset }), {
    ...signature,
    signatureData: [signature],
  });
  if (!result.signatures) {
    const why = result.errors.map((e) => e.err.message).join("; ") || "no signature was made";
    throw new Error(`Cannot sign the message for "${options.domain}": ${why}`);
  }
  return result.signatures;
}

function checkName(what: string, value: string): void {
  if (!NAME.test(value) || value.length > 253) {
    throw new TypeError(
      `Cannot use "${value}" as a DKIM ${what}: expected letters, digits, "-" and "."`,
    );
  }
}
