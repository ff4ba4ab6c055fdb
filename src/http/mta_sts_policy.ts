/**
 * The MTA-STS policy Postern publishes for a local domain (RFC 8461), the
 * id of its `_mta-sts` TXT record, and the `_smtp._tls` TLS-RPT record
 * (RFC 8460).
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { MtaStsConfig } from "../config/mod.ts";

/**
 * The policy file's text. RFC 8461 section 3.2: `key: value` lines ending
 * in CRLF, `version` first, one `mx` line per MX pattern.
 */
export function policyText(policy: MtaStsConfig): string {
  const lines = [
    "version: STSv1",
    `mode: ${policy.mode}`,
    ...policy.mx.map((mx) => `mx: ${mx}`),
    `max_age: ${policy.maxAgeSeconds}`,
  ];
  return lines.map((line) => `${line}\r\n`).join("");
}

/**
 * The `id` of the `_mta-sts` record: derived from the policy text, so it
 * changes whenever the policy does (RFC 8461 section 3.1: 1 to 32 letters
 * and digits; senders fetch the policy again when it changes).
 */
export function policyId(policy: MtaStsConfig): string {
  return createHash("sha256").update(policyText(policy)).digest("hex").slice(0, 32);
}

/** The TXT record at `_mta-sts.<domain>` (RFC 8461 section 3.1). */
export function mtaStsRecord(policy: MtaStsConfig): string {
  return `v=STSv1; id=${policyId(policy)}`;
}

/** The TXT record at `_smtp._tls.<domain>` (RFC 8460 section 3). */
export function tlsRptRecord(policy: MtaStsConfig): string {
  return `v=TLSRPTv1; rua=${policy.tlsRptRua}`;
}
