/**
 * The one place that imports mailauth. It is CommonJS; the deep paths with
 * an explicit `index.js` are the ones that resolve on both runtimes (Deno
 * refuses the directory import `mailauth/lib/spf`), and they leave out the
 * BIMI code and its HTTP client, which the main entry loads at start-up
 * (about 100 ms more on either runtime).
 *
 * @module
 */

import type { DNSResolver } from "mailauth";
import type { ResolveFunction } from "../dns/mod.ts";

export { spf } from "mailauth/lib/spf/index.js";
export { dkimVerify } from "mailauth/lib/dkim/verify.js";
export { dkimSign } from "mailauth/lib/dkim/sign.js";
export { arc } from "mailauth/lib/arc/index.js";
export { evaluateDmarc } from "mailauth/lib/dmarc/index.js";
// MTA-STS (RFC 8461) for outbound delivery.
export { getPolicy as getMtaStsPolicy, validateMx } from "mailauth/lib/mta-sts.js";
export type { ARCResult, DKIMResult, DKIMVerifyResult, DMARCResult, SPFResult } from "mailauth";

/**
 * Our resolver as mailauth's `resolver` option. mailauth's type says
 * `string[][] | string[]`, but its code (and `node:dns`) return MX records
 * as objects, which is what ours does.
 */
export function mailauthResolver(resolve: ResolveFunction): DNSResolver {
  return resolve as unknown as DNSResolver;
}
