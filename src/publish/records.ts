/**
 * The DNS records a local domain needs, and what DNS says about each: MX,
 * SPF, DKIM, DMARC, and with an MTA-STS policy the `mta-sts` host, the
 * `_mta-sts` record (RFC 8461 section 3.1) and the `_smtp._tls` TLS-RPT
 * record (RFC 8460 section 3). Printed by `postern dns`.
 *
 * @module
 */

import type { Config, DomainConfig } from "../config/mod.ts";
import { isVoidLookup, type ResolveFunction } from "../dns/mod.ts";
import { mtaStsRecord, tlsRptRecord } from "../http/mta_sts_policy.ts";

/** One record to publish. */
export interface WantedRecord {
  name: string;
  type: "MX" | "TXT" | "CNAME";
  value: string;
  /** Does this TXT answer (or MX hosts) satisfy the record? */
  matches: (found: string[]) => boolean;
  /** A record this one stands for (the `v=` tag): "differs" rather than "missing". */
  kind: (found: string) => boolean;
}

/** What DNS says about a wanted record. */
export interface RecordCheck {
  record: WantedRecord;
  state: "ok" | "missing" | "differs" | "unknown";
  /** What was found, or the error. */
  detail: string;
}

const txtOf = (prefix: RegExp) => (found: string) => prefix.test(found);

/** The records `domain` needs, for a server named `config.hostname`. */
export function wantedRecords(config: Config, domain: DomainConfig): WantedRecord[] {
  const host = config.hostname.toLowerCase();
  const name = domain.name;
  const mxHosts = domain.mtaSts?.mx ?? [host];
  const records: WantedRecord[] = [
    {
      name,
      type: "MX",
      value: `10 ${host}.`,
      matches: (found) => found.some((mx) => mxHosts.includes(mx.toLowerCase())),
      kind: () => true,
    },
    {
      name,
      type: "TXT",
      // RFC 7208: the domain's MX hosts may send for it; nothing else.
      value: "v=spf1 mx -all",
      matches: (found) => found.some((t) => /^v=spf1(\s|$)/i.test(t)),
      kind: txtOf(/^v=spf1(\s|$)/i),
    },
    ...domain.dkimKeys.map((key): WantedRecord => ({
      name: `${key.selector}._domainkey.${name}`,
      type: "TXT",
      value: key.record,
      matches: (found) =>
        found.some((t) => /(^|;)\s*p=([^;]*)/.exec(t)?.[2]?.replace(/\s+/g, "") === key.publicKey),
      kind: txtOf(/(^|;)\s*p=/),
    })),
    {
      name: `_dmarc.${name}`,
      type: "TXT",
      value: `v=DMARC1; p=quarantine; rua=mailto:dmarc@${name}`,
      matches: (found) => found.some((t) => /^v=DMARC1\s*(;|$)/.test(t)),
      kind: txtOf(/^v=DMARC1/),
    },
  ];
  const policy = domain.mtaSts;
  if (policy !== undefined) {
    const sts = mtaStsRecord(policy);
    records.push(
      {
        // RFC 8461 section 3.3: the policy host, served by this server.
        name: `mta-sts.${name}`,
        type: "CNAME",
        value: `${host}.`,
        matches: (found) => found.length > 0,
        kind: () => true,
      },
      {
        name: `_mta-sts.${name}`,
        type: "TXT",
        value: sts,
        matches: (found) => found.some((t) => t.replace(/\s+/g, "") === sts.replace(/\s+/g, "")),
        kind: txtOf(/^v=STSv1/),
      },
      {
        name: `_smtp._tls.${name}`,
        type: "TXT",
        value: tlsRptRecord(policy),
        matches: (found) => found.some((t) => /^v=TLSRPTv1\s*;/.test(t)),
        kind: txtOf(/^v=TLSRPTv1/),
      },
    );
  }
  return records;
}

/** Looks up each record. */
export async function checkRecords(
  resolve: ResolveFunction,
  records: readonly WantedRecord[],
): Promise<RecordCheck[]> {
  return await Promise.all(records.map(async (record): Promise<RecordCheck> => {
    let found: string[];
    try {
      found = await lookUp(resolve, record);
    } catch (err) {
      if (isVoidLookup(err)) return { record, state: "missing", detail: "no record" };
      return { record, state: "unknown", detail: err instanceof Error ? err.message : String(err) };
    }
    if (record.matches(found)) return { record, state: "ok", detail: "" };
    const related = found.filter(record.kind);
    return related.length === 0
      ? { record, state: "missing", detail: "no record" }
      : { record, state: "differs", detail: `found ${related.join(" | ")}` };
  }));
}

async function lookUp(resolve: ResolveFunction, record: WantedRecord): Promise<string[]> {
  if (record.type === "MX") {
    const answer = await resolve(record.name, "MX") as Array<{ exchange: string }>;
    return answer.map((mx) => mx.exchange.replace(/\.$/, ""));
  }
  if (record.type === "CNAME") {
    // A CNAME or an address: either way the name must lead somewhere.
    const answer = await resolve(record.name, "A") as string[];
    return answer.map(String);
  }
  const answer = await resolve(record.name, "TXT") as Array<string | string[]>;
  return answer.map((t) => Array.isArray(t) ? t.join("") : t);
}

/** The report of `postern dns`: a zone-file line per record, then its state. */
export function formatChecks(checks: readonly RecordCheck[]): string {
  return checks.map(({ record, state, detail }) => {
    const value = record.type === "TXT" ? `"${record.value}"` : record.value;
    return `${record.name}. IN ${record.type} ${value}\n    ; ${state}${
      detail ? `: ${detail}` : ""
    }\n`;
  }).join("");
}
