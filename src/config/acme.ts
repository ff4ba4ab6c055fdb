/**
 * Resolves `tls.acme` and each domain's `mta_sts` from `postern.yaml`:
 * defaults applied, names lower case, the CA file read.
 *
 * @module
 */

import type { ConfigFile } from "./schema.ts";
import type { AcmeConfig, DomainConfig, MtaStsConfig } from "./types.ts";
import { DEFAULTS } from "./defaults.ts";
import { ConfigError } from "./config_error.ts";

/** What {@linkcode resolveAcme} needs besides the file. */
export interface AcmeContext {
  hostname: string;
  mainFile: string;
  relativeToConfig: (p: string) => string;
  readText: (path: string) => string | undefined;
}

/**
 * Sets `mtaSts` on every domain that has `mta_sts`, and returns the ACME
 * settings. The certificate's names default to the host name plus
 * `mta-sts.<domain>` for each such domain, since RFC 8461 section 3.3
 * requires the policy host to present a valid certificate for that name.
 *
 * @throws {ConfigError} when a domain has `mta_sts` but there is no
 * `tls.acme`, or when the CA file is missing.
 */
export function resolveAcme(
  file: ConfigFile,
  domains: Map<string, DomainConfig>,
  context: AcmeContext,
): AcmeConfig | undefined {
  const { hostname, mainFile } = context;
  const settingsByName = new Map(
    Object.entries(file.domains ?? {}).map(([key, value]) => [key.toLowerCase(), value]),
  );
  const policyHosts: string[] = [];
  for (const domain of domains.values()) {
    const settings = settingsByName.get(domain.name)?.mta_sts;
    if (settings === undefined) continue;
    if (file.tls?.acme === undefined) {
      throw new ConfigError(
        mainFile,
        `${mainFile}: domains.${domain.name}.mta_sts needs tls.acme (the policy is served ` +
          `over HTTPS with the ACME certificate)`,
      );
    }
    const mtaSts: MtaStsConfig = {
      mode: settings.mode,
      maxAgeSeconds: Math.floor((settings.max_age ?? DEFAULTS.mtaStsMaxAgeSeconds * 1000) / 1000),
      mx: (settings.mx ?? [hostname]).map((name) => name.toLowerCase()),
      tlsRptRua: settings.tlsrpt_rua ?? `mailto:tlsrpt@${domain.name}`,
    };
    domain.mtaSts = mtaSts;
    policyHosts.push(`mta-sts.${domain.name}`);
  }
  const acme = file.tls?.acme;
  if (acme === undefined) return undefined;
  if (file.tls?.cert !== undefined) {
    throw new ConfigError(mainFile, `${mainFile}: tls.acme and tls.cert exclude each other`);
  }
  let caPem: string | undefined;
  if (acme.ca_file !== undefined) {
    const path = context.relativeToConfig(acme.ca_file);
    caPem = context.readText(path);
    if (caPem === undefined) {
      throw new ConfigError(path, `${path}: tls.acme.ca_file is missing`);
    }
  }
  const names = acme.names === undefined
    ? [hostname.toLowerCase(), ...policyHosts]
    : acme.names.map((name) => name.toLowerCase());
  return {
    email: acme.email,
    names: [...new Set(names)],
    directoryUrl: acme.directory ?? DEFAULTS.acme.directoryUrl,
    caPem,
    challenge: acme.challenge ?? DEFAULTS.acme.challenge,
    httpListen: acme.http_listen ?? DEFAULTS.acme.httpListen,
    httpsListen: acme.https_listen ?? DEFAULTS.acme.httpsListen,
    renew: acme.renew ?? true,
    retryInitialMs: acme.retry_initial ?? DEFAULTS.acme.retryInitialMs,
  };
}
