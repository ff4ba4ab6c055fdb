/**
 * `postern dns`: the DNS records each local domain needs, each checked
 * against what DNS answers now.
 *
 * @module
 */

import { normalizeDomain } from "../aliases/mod.ts";
import type { Config } from "../config/mod.ts";
import { DnsResolver } from "../dns/mod.ts";
import { checkRecords, formatChecks, wantedRecords } from "../publish/records.ts";
import * as runtime from "../runtime/mod.ts";

/** `postern dns [DOMAIN]`: the records to publish, each looked up now. */
export async function dnsRecords(config: Config, domain: string | undefined): Promise<number> {
  const resolver = new DnsResolver({
    servers: config.dns.servers,
    timeoutMs: config.dns.timeoutMs,
  });
  const wanted = domain === undefined ? undefined : normalizeDomain(domain);
  const domains = [...config.domains.values()].filter((d) =>
    wanted === undefined || d.name === wanted
  );
  if (domains.length === 0) {
    runtime.writeStderr(`postern: ${wanted} is not a local domain\n`);
    return 1;
  }
  let bad = 0;
  for (const d of domains) {
    const checks = await checkRecords(resolver.resolve, wantedRecords(config, d));
    bad += checks.filter((c) => c.state !== "ok").length;
    runtime.writeStdout(`; ${d.name}\n${formatChecks(checks)}\n`);
  }
  return bad === 0 ? 0 : 1;
}
