/**
 * The files of ACME in `<data>/acme/`: the account key and the current
 * certificate, each mode 0600 and written atomically (temporary file,
 * fsync, rename, fsync of the folder). The certificate's key and chain are
 * one file, so that a reader (another node sharing the folder) never sees
 * a new chain with an old key.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { mkdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { DirSyncer, writeFileDurably } from "../queue/mod.ts";

/** A certificate with its key, as stored. */
export interface StoredCertificate {
  /** PEM private key. */
  keyPem: string;
  /** PEM chain, leaf first. */
  certPem: string;
  /** Validity of the leaf, in ms since the epoch. */
  notBefore: number;
  notAfter: number;
  /** DNS names of the leaf, lower case. */
  names: string[];
  /** The file it was read from. */
  file: string;
}

const KEY_BLOCK = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----\n?/;

/** Reads and writes `<data>/acme/`. */
export class AcmeStore {
  /** The folder. */
  readonly dir: string;
  /** The certificate file: private key, then the chain. */
  readonly certFile: string;
  readonly accountKeyFile: string;

  /** A store in `<dataDir>/acme`. */
  constructor(dataDir: string) {
    this.dir = join(dataDir, "acme");
    this.certFile = join(this.dir, "certificate.pem");
    this.accountKeyFile = join(this.dir, "account.key");
  }

  /** The account key, or undefined when there is none yet. */
  async accountKey(): Promise<string | undefined> {
    return await readText(this.accountKeyFile);
  }

  /** Saves the account key. */
  async saveAccountKey(keyPem: string): Promise<void> {
    await this.#write(this.accountKeyFile, keyPem);
  }

  /**
   * The stored certificate; undefined when there is none, or when the file
   * cannot be used (a half-copied file from elsewhere, a key that does not
   * fit), which the caller treats as "none" and replaces.
   */
  async certificate(): Promise<StoredCertificate | undefined> {
    const text = await readText(this.certFile);
    if (text === undefined) return undefined;
    return parseStored(text, this.certFile);
  }

  /** Saves a new certificate and its key in one atomic step. */
  async saveCertificate(keyPem: string, chainPem: string): Promise<StoredCertificate> {
    const text = `${keyPem.trim()}\n${chainPem.trim()}\n`;
    const stored = parseStored(text, this.certFile);
    if (stored === undefined) throw new TypeError("Cannot store certificate: it does not parse");
    await this.#write(this.certFile, text);
    return stored;
  }

  async #write(path: string, text: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${path}.tmp`;
    // A temporary file left by a crash is garbage.
    await unlink(tmp).catch(() => {});
    const sync = new DirSyncer(this.dir);
    try {
      await writeFileDurably(tmp, path, new TextEncoder().encode(text), sync);
    } finally {
      await sync.close();
    }
  }
}

/** Splits a stored file into key and chain and reads the leaf's validity. */
export function parseStored(text: string, file: string): StoredCertificate | undefined {
  const key = KEY_BLOCK.exec(text);
  if (!key) return undefined;
  const certPem = text.replace(KEY_BLOCK, "").trim() + "\n";
  try {
    const leaf = new X509Certificate(certPem);
    const names = (leaf.subjectAltName ?? "").split(",").map((s) => s.trim())
      .filter((s) => s.startsWith("DNS:")).map((s) => s.slice(4).toLowerCase());
    return {
      keyPem: key[0].trim() + "\n",
      certPem,
      notBefore: Date.parse(leaf.validFrom),
      notAfter: Date.parse(leaf.validTo),
      names,
      file,
    };
  } catch {
    return undefined;
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return undefined;
    throw err;
  }
}
