/**
 * Certificates from the configuration: either `tls.cert`/`tls.key` in
 * `postern.yaml`, or chasquid's (and certbot's) layout of one folder per
 * name under `certs/`, each with `fullchain.pem` and `privkey.pem`.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { ConfigError, describe, errorCode, readOptional } from "./config_error.ts";
import type { CertificatePair } from "./types.ts";

/** Reads and checks every configured certificate and key. */
export async function loadCertificates(
  configDir: string,
  tls: { cert?: string | undefined; key?: string | undefined } | undefined,
  relativeToConfig: (p: string) => string,
): Promise<CertificatePair[]> {
  if (tls?.cert !== undefined || tls?.key !== undefined) {
    if (tls.cert === undefined || tls.key === undefined) {
      const file = join(configDir, "postern.yaml");
      throw new ConfigError(file, `${file}: tls needs both cert and key, or neither`);
    }
    return [loadPair(relativeToConfig(tls.cert), relativeToConfig(tls.key))];
  }
  const certsDir = join(configDir, "certs");
  let names: string[];
  try {
    names = (await readdir(certsDir, { withFileTypes: true }))
      .filter((e) => e.isDirectory() || e.isSymbolicLink())
      .map((e) => e.name)
      .filter((n) => !n.startsWith("."))
      .sort();
  } catch (err) {
    if (errorCode(err) === "ENOENT") return [];
    throw new ConfigError(certsDir, `${certsDir}: cannot list certificates: ${describe(err)}`);
  }
  const pairs: CertificatePair[] = [];
  for (const name of names) {
    pairs.push(
      loadPair(join(certsDir, name, "fullchain.pem"), join(certsDir, name, "privkey.pem")),
    );
  }
  return pairs;
}

function loadPair(certFile: string, keyFile: string): CertificatePair {
  const certPem = readOptional(certFile);
  if (certPem === undefined) {
    throw new ConfigError(certFile, `${certFile}: the certificate file is missing`);
  }
  const keyPem = readOptional(keyFile);
  if (keyPem === undefined) {
    throw new ConfigError(keyFile, `${keyFile}: the private key file is missing`);
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new ConfigError(certFile, `${certFile}: not a PEM certificate: ${describe(err)}`);
  }
  try {
    const key = createPrivateKey(keyPem);
    if (!cert.checkPrivateKey(key)) {
      throw new ConfigError(keyFile, `${keyFile}: the private key does not match ${certFile}`);
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(keyFile, `${keyFile}: not a PEM private key: ${describe(err)}`);
  }
  try {
    // The whole chain, as TLS will use it: a truncated intermediate is an
    // error now, not when the policy is already in force.
    createSecureContext({ cert: certPem, key: keyPem });
  } catch (err) {
    throw new ConfigError(certFile, `${certFile}: cannot be used for TLS: ${describe(err)}`);
  }
  return { source: certFile, keySource: keyFile, certPem, keyPem };
}
