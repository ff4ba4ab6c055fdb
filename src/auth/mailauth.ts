/**
 * The one place that loads mailauth. It is CommonJS; the deep paths with
 * an explicit `index.js` are the ones that resolve on both runtimes (Deno
 * refuses the directory import `mailauth/lib/spf`), and they leave out the
 * BIMI code and its HTTP client, which the main entry loads at start-up
 * (about 100 ms more on either runtime).
 *
 * The modules are loaded on first use (issue 17), by the first message
 * from an untrusted client, the first DKIM signature or the first MTA-STS
 * lookup: resident, they are 8 MB of the compiled binary's 67 MB when idle,
 * and a server whose clients are all trusted never needs them. The first
 * use waits for the load: 14 ms in the binary, about 50 ms on Deno. The
 * specifiers stay static strings, so that `bun build --compile` still
 * bundles them.
 *
 * @module
 */

import type { DNSResolver } from "mailauth";
import type { ResolveFunction } from "../dns/mod.ts";

export type { ARCResult, DKIMResult, DKIMVerifyResult, DMARCResult, SPFResult } from "mailauth";

type SpfModule = typeof import("mailauth/lib/spf/index.js");
type VerifyModule = typeof import("mailauth/lib/dkim/verify.js");
type SignModule = typeof import("mailauth/lib/dkim/sign.js");
type ArcModule = typeof import("mailauth/lib/arc/index.js");
type DmarcModule = typeof import("mailauth/lib/dmarc/index.js");
type MtaStsModule = typeof import("mailauth/lib/mta-sts.js");

/** The mailauth functions Postern uses, once loaded. */
export interface Mailauth {
  spf: SpfModule["spf"];
  dkimVerify: VerifyModule["dkimVerify"];
  dkimSign: SignModule["dkimSign"];
  arc: ArcModule["arc"];
  evaluateDmarc: DmarcModule["evaluateDmarc"];
  getMtaStsPolicy: MtaStsModule["getPolicy"];
  validateMx: MtaStsModule["validateMx"];
}

let loading: Promise<Mailauth> | undefined;

/** Loads mailauth once; later calls share the first load. */
export function loadMailauth(): Promise<Mailauth> {
  loading ??= (async () => {
    const [spfModule, verify, sign, arcModule, dmarc, mtaSts] = await Promise.all([
      import("mailauth/lib/spf/index.js"),
      import("mailauth/lib/dkim/verify.js"),
      import("mailauth/lib/dkim/sign.js"),
      import("mailauth/lib/arc/index.js"),
      import("mailauth/lib/dmarc/index.js"),
      // MTA-STS (RFC 8461) for outbound delivery.
      import("mailauth/lib/mta-sts.js"),
    ]);
    return {
      spf: spfModule.spf,
      dkimVerify: verify.dkimVerify,
      dkimSign: sign.dkimSign,
      arc: arcModule.arc,
      evaluateDmarc: dmarc.evaluateDmarc,
      getMtaStsPolicy: mtaSts.getPolicy,
      validateMx: mtaSts.validateMx,
    };
  })();
  // A failed load is tried again on the next use.
  loading.catch(() => loading = undefined);
  return loading;
}

/** mailauth's `spf()`, loaded on first use. */
export async function spf(...args: Parameters<Mailauth["spf"]>): ReturnType<Mailauth["spf"]> {
  return await (await loadMailauth()).spf(...args);
}

/** mailauth's `dkimVerify()`, loaded on first use. */
export async function dkimVerify(
  ...args: Parameters<Mailauth["dkimVerify"]>
): ReturnType<Mailauth["dkimVerify"]> {
  return await (await loadMailauth()).dkimVerify(...args);
}

/** mailauth's `dkimSign()`, loaded on first use. */
export async function dkimSign(
  ...args: Parameters<Mailauth["dkimSign"]>
): ReturnType<Mailauth["dkimSign"]> {
  return await (await loadMailauth()).dkimSign(...args);
}

/** mailauth's `arc()`, loaded on first use. */
export async function arc(...args: Parameters<Mailauth["arc"]>): ReturnType<Mailauth["arc"]> {
  return await (await loadMailauth()).arc(...args);
}

/** mailauth's `evaluateDmarc()`, loaded on first use. */
export async function evaluateDmarc(
  ...args: Parameters<Mailauth["evaluateDmarc"]>
): ReturnType<Mailauth["evaluateDmarc"]> {
  return await (await loadMailauth()).evaluateDmarc(...args);
}

/** mailauth's MTA-STS `getPolicy()`, loaded on first use. */
export async function getMtaStsPolicy(
  ...args: Parameters<Mailauth["getMtaStsPolicy"]>
): ReturnType<Mailauth["getMtaStsPolicy"]> {
  return await (await loadMailauth()).getMtaStsPolicy(...args);
}

/**
 * Our resolver as mailauth's `resolver` option. mailauth's type says
 * `string[][] | string[]`, but its code (and `node:dns`) return MX records
 * as objects, which is what ours does.
 */
export function mailauthResolver(resolve: ResolveFunction): DNSResolver {
  return resolve as unknown as DNSResolver;
}
