/**
 * DKIM keys as the configuration holds them, and what DNS says about each:
 * a key signs only once its public key is seen published (RFC 6376 section
 * 3.6.2.2: the verifier fetches `<selector>._domainkey.<domain>` TXT), so
 * mail never leaves signed with a key nobody can verify.
 *
 * @module
 */

import { createPrivateKey, createPublicKey } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ResolveFunction } from "../dns/mod.ts";
import { isVoidLookup } from "../dns/mod.ts";
import { readRegularFile } from "../regular_file.ts";
import { type DkimAlgorithm, dkimDnsRecord } from "./dkim_keys.ts";

/** One private key of a domain. */
export interface DkimKey {
  /** The selector (s=), the file's name without `.pem`. */
  selector: string;
  /** rsa or ed25519. */
  algorithm: DkimAlgorithm;
  /** When the key was written (the file's modification time); the newest published key signs. */
  created: Date;
  /** The private key, PEM. */
  privateKey: string;
  /** The `p=` value its record must publish. */
  publicKey: string;
  /** The record to publish, `v=DKIM1; k=…; p=…`. */
  record: string;
  /** The key file. */
  path: string;
}

/** What DNS says about a key's record. */
export type RecordState =
  /** The record publishes this key. */
  | "published"
  /** There is no record (NXDOMAIN, no TXT, no DKIM record). */
  | "missing"
  /** There is a DKIM record, with another key (or revoked: an empty p=). */
  | "mismatched"
  /** Not looked up yet, or only temporary failures so far. */
  | "unknown";

/** A problem with a domain's key folder or a key in it, naming the path. */
export class DkimKeyError extends Error {
  /** The folder or file at fault. */
  readonly path: string;

  /** Creates the error; `message` names the path. */
  constructor(path: string, message: string) {
    super(message);
    this.name = "DkimKeyError";
    this.path = path;
  }
}

/** A selector: dot-separated labels of letters, digits and hyphens. */
const SELECTOR = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$/;

/**
 * Reads every key in a domain's `dkim/` folder (`<selector>.pem`). No
 * folder: no keys. A folder or key that cannot be read, or a file that is
 * not a private key, throws {@linkcode DkimKeyError}: mail must not leave
 * unsigned in silence because of a permission.
 */
export function loadDkimKeys(dir: string, domain: string): DkimKey[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return [];
    throw new DkimKeyError(dir, `${dir}: cannot read the DKIM key folder: ${message(err)}`);
  }
  const keys: DkimKey[] = [];
  for (const name of names.sort()) {
    if (!name.endsWith(".pem")) continue;
    const selector = name.slice(0, -4);
    if (!SELECTOR.test(selector)) continue;
    const path = join(dir, name);
    let pem: string | undefined;
    let created: Date | undefined;
    try {
      // Never a FIFO waited on: a read that blocks stops the whole server.
      pem = readRegularFile(path);
      created = statSync(path, { throwIfNoEntry: false })?.mtime;
    } catch (err) {
      throw new DkimKeyError(path, `${path}: cannot read the DKIM key: ${message(err)}`);
    }
    // Removed since the folder was listed: not a key any more.
    if (pem === undefined || created === undefined) continue;
    let record;
    try {
      record = dkimDnsRecord(domain, selector, createPublicKey(createPrivateKey(pem)));
    } catch (err) {
      throw new DkimKeyError(path, `${path}: not a usable DKIM private key: ${message(err)}`);
    }
    const publicKey = /p=([^;]*)$/.exec(record.value)?.[1] ?? "";
    keys.push({
      selector,
      algorithm: record.value.includes("k=ed25519") ? "ed25519" : "rsa",
      created,
      privateKey: pem,
      publicKey,
      record: record.value,
      path,
    });
  }
  return keys;
}

/**
 * Looks up a key's record. Temporary DNS failures reject (the caller keeps
 * what it knew); an answer, or its absence, settles the state.
 */
export async function lookUpRecord(
  resolve: ResolveFunction,
  domain: string,
  key: Pick<DkimKey, "selector" | "publicKey" | "algorithm">,
): Promise<RecordState> {
  let answer;
  try {
    answer = await resolve(`${key.selector}._domainkey.${domain}`, "TXT");
  } catch (err) {
    if (isVoidLookup(err)) return "missing";
    throw err;
  }
  let dkimRecords = 0;
  for (const record of answer as Array<string | string[]>) {
    const text = Array.isArray(record) ? record.join("") : record;
    const tags = parseTags(text);
    // RFC 6376 section 3.6.1: v= is optional but must come first and be DKIM1 when there.
    if (tags.has("v") && tags.get("v") !== "DKIM1") continue;
    const p = tags.get("p");
    if (p === undefined) continue;
    dkimRecords++;
    // RFC 6376 section 3.6.1: k= is the key type, rsa when absent; a
    // verifier reads p= as that type, so a record that names another type
    // cannot verify our signatures, whatever its p= holds.
    const type = tags.get("k") ?? "rsa";
    if (p.replace(/\s+/g, "") === key.publicKey && type === key.algorithm) return "published";
  }
  return dkimRecords > 0 ? "mismatched" : "missing";
}

/** `tag=value; …` (RFC 6376 section 3.2), tags and values trimmed. */
function parseTags(text: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of text.split(";")) {
    const at = part.indexOf("=");
    if (at < 0) continue;
    tags.set(part.slice(0, at).trim(), part.slice(at + 1).trim());
  }
  return tags;
}

/**
 * The key that signs: the selector named in the configuration, whatever
 * DNS says; otherwise the newest key whose record is published (ties by
 * selector name); otherwise none.
 */
export function chooseSigningKey(
  keys: readonly DkimKey[],
  stateOf: (key: DkimKey) => RecordState,
  selector: string | undefined,
): DkimKey | undefined {
  if (selector !== undefined) return keys.find((k) => k.selector === selector);
  let best: DkimKey | undefined;
  for (const key of keys) {
    if (stateOf(key) !== "published") continue;
    if (
      !best || key.created.getTime() > best.created.getTime() ||
      (key.created.getTime() === best.created.getTime() && key.selector > best.selector)
    ) {
      best = key;
    }
  }
  return best;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
