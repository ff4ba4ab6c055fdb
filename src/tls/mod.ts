/**
 * TLS certificates for STARTTLS: the configured ones (several are chosen by
 * SNI), or else a self-signed certificate generated on first start and kept
 * in the data directory, so that STARTTLS works out of the box and the key
 * does not change on every restart.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { createSecureContext, type SecureContext } from "node:tls";
import type { CertificatePair } from "../config/mod.ts";
import { DirSyncer, writeFileDurably } from "../queue/mod.ts";

/** What the SMTP server needs for STARTTLS. */
export interface TlsMaterial {
  /** Default certificate chain and key (PEM). */
  cert: string;
  key: string;
  /** Picks a certificate by server name; undefined with only one. */
  sniCallback:
    | ((servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void)
    | undefined;
  /** Where the default certificate came from, for the start-up log. */
  source: string;
}

/** Returns the configured certificates, or the self-signed one. */
export async function tlsMaterial(
  certificates: readonly CertificatePair[],
  dataDir: string,
  hostname: string,
): Promise<TlsMaterial> {
  const pairs = certificates.length > 0 ? certificates : [await selfSigned(dataDir, hostname)];
  const first = pairs[0]!;
  return {
    cert: first.certPem,
    key: first.keyPem,
    sniCallback: pairs.length > 1 ? sniCallback(pairs) : undefined,
    source: first.source,
  };
}

function sniCallback(pairs: readonly CertificatePair[]) {
  const entries = pairs.map((pair) => ({
    names: certificateNames(pair.certPem),
    context: createSecureContext({ cert: pair.certPem, key: pair.keyPem }),
  }));
  return (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => {
    const name = servername.toLowerCase();
    const match =
      entries.find((e) =>
        e.names.some((n) => n === name || (n.startsWith("*.") && name.endsWith(n.slice(1))))
      ) ?? entries[0]!;
    cb(null, match.context);
  };
}

/** DNS names a certificate is valid for, lower case. */
export function certificateNames(certPem: string): string[] {
  const cert = new X509Certificate(certPem);
  const names = (cert.subjectAltName ?? "").split(",").map((s) => s.trim())
    .filter((s) => s.startsWith("DNS:")).map((s) => s.slice(4).toLowerCase());
  const cn = /CN=([^\n,]+)/.exec(cert.subject)?.[1];
  return names.length > 0 ? names : cn ? [cn.toLowerCase()] : [];
}

async function selfSigned(dataDir: string, hostname: string): Promise<CertificatePair> {
  const dir = join(dataDir, "tls");
  const certFile = join(dir, "selfsigned.crt");
  const keyFile = join(dir, "selfsigned.key");
  try {
    const [certPem, keyPem] = await Promise.all([
      readFile(certFile, "utf8"),
      readFile(keyFile, "utf8"),
    ]);
    const cert = new X509Certificate(certPem);
    // Renew a month before expiry; clients that pin nothing will not care.
    if (Date.parse(cert.validTo) - Date.now() > 30 * 86_400_000) {
      return { source: `${certFile} (self-signed)`, certPem, keyPem };
    }
  } catch {
    // Missing or unreadable: make a new one below.
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // selfsigned costs about 20 MB once loaded: only load it to make a certificate (issue 17).
  const { generate } = await import("selfsigned");
  const pems = await generate([{ name: "commonName", value: hostname }], {
    keySize: 2048,
    notAfterDate: new Date(Date.now() + 825 * 86_400_000),
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          { type: 2, value: hostname },
          { type: 2, value: "localhost" },
          { type: 7, ip: "127.0.0.1" },
        ],
      },
    ],
  });
  const sync = new DirSyncer(dir);
  const encoder = new TextEncoder();
  await writeFileDurably(`${keyFile}.tmp`, keyFile, encoder.encode(pems.private), sync);
  await writeFileDurably(`${certFile}.tmp`, certFile, encoder.encode(pems.cert), sync);
  await sync.close();
  return {
    source: `${certFile} (self-signed, generated)`,
    certPem: pems.cert,
    keyPem: pems.private,
  };
}
