/**
 * `postern dkim keygen` and `postern dkim status`: writes a domain's DKIM
 * key with the record to publish, and lists the keys with the state of
 * their records in DNS.
 *
 * @module
 */

import { resolve } from "node:path";
import { normalizeDomain } from "../aliases/mod.ts";
import {
  defaultDkimSelector,
  dkimKeyDir,
  DkimKeyring,
  formatKeyStatus,
  generateDkimKey,
} from "../auth/mod.ts";
import type { Config } from "../config/mod.ts";
import { DnsResolver } from "../dns/mod.ts";
import { Counters, Logger } from "../log/mod.ts";
import * as runtime from "../runtime/mod.ts";

/** `postern dkim keygen`: writes a key and prints the record to publish. */
export async function dkimKeygen(
  domainText: string,
  values: { config?: string | undefined; selector?: string | undefined; algorithm?: string },
): Promise<number> {
  if (values.config === undefined) {
    runtime.writeStderr(
      "postern: dkim keygen needs --config DIR (keys live in the configuration)\n",
    );
    return 2;
  }
  const algorithm = values.algorithm ?? "rsa";
  if (algorithm !== "rsa" && algorithm !== "ed25519") {
    runtime.writeStderr(`postern: unknown DKIM algorithm "${algorithm}" (rsa or ed25519)\n`);
    return 2;
  }
  const domain = normalizeDomain(domainText);
  const selector = values.selector ?? defaultDkimSelector();
  if (!/^[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)*$/i.test(selector)) {
    runtime.writeStderr(`postern: "${selector}" is not a valid DKIM selector\n`);
    return 2;
  }
  try {
    const key = await generateDkimKey({
      configDir: resolve(values.config),
      dir: dkimKeyDir(resolve(values.config), domain),
      domain,
      selector,
      algorithm,
    });
    runtime.writeStdout(
      `Wrote ${key.path}\nPublish this DNS record:\n\n${key.record.zoneLine}\n\n` +
        `The key becomes active (signs ${domain}'s mail) once this record is published: ` +
        `Postern looks for it at start, on every reload and every ` +
        `outbound.dkim_check_interval; until then the previous key keeps signing. ` +
        `"postern dkim status" shows where it stands.\n`,
    );
    return 0;
  } catch (err) {
    const exists = (err as { code?: string }).code === "EEXIST";
    runtime.writeStderr(
      exists
        ? `postern: a DKIM key for selector "${selector}" of ${domain} already exists; ` +
          `choose another --selector (keys are never overwritten)\n`
        : `postern: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 1;
  }
}

/** `postern dkim status [DOMAIN]`: every key and its record, looked up now. */
export async function dkimStatus(config: Config, domain: string | undefined): Promise<number> {
  const resolver = new DnsResolver({
    servers: config.dns.servers,
    timeoutMs: config.dns.timeoutMs,
  });
  const keyring = new DkimKeyring({
    resolve: () => resolver.resolve,
    logger: new Logger("error", runtime.writeStderr),
    counters: new Counters(),
  });
  const wanted = domain === undefined ? undefined : normalizeDomain(domain);
  await keyring.update(
    [...config.domains.values()].filter((d) => wanted === undefined || d.name === wanted),
  );
  const rows = keyring.status();
  if (rows.length === 0) {
    runtime.writeStdout(`no DKIM keys${wanted ? ` for ${wanted}` : ""}\n`);
    return 0;
  }
  runtime.writeStdout(formatKeyStatus(rows));
  return 0;
}
