/**
 * Message authentication after DATA: DKIM signatures (RFC 6376), ARC
 * (RFC 8617) and DMARC (RFC 7489 and its successor) through mailauth, read
 * from the spooled file, plus the SPF verdict from MAIL FROM, summed up in
 * one Authentication-Results field (RFC 8601).
 *
 * mailauth's own `authenticate()` always runs SPF again and has no option to
 * take a verdict from outside, so this module makes the same calls it makes
 * (dkimVerify, arc, evaluateDmarc, in that order and with the same inputs)
 * with our SPF verdict in place of a second check. BIMI is left out: it is
 * for mail readers, not for an MTA.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { domainToASCII } from "node:url";
import type { ResolveFunction } from "../dns/mod.ts";
import { authorAddresses } from "./author_addresses.ts";
import { authservId, foldHeader } from "./header_text.ts";
import { type DmarcVerdict, evaluateAuthors } from "./dmarc.ts";
import {
  arc,
  type ARCResult,
  dkimVerify,
  type DKIMVerifyResult,
  mailauthResolver,
} from "./mailauth.ts";
import { checkSpf, type SpfVerdict } from "./spf.ts";

/** What `authenticateMessage()` needs. */
export interface AuthenticateOptions {
  /** The file holding the message. */
  path: string;
  /** Where the message starts in the file (the spool puts an envelope line first). */
  offset: number;
  /** The MAIL FROM address; "" for the null sender. */
  sender: string;
  /** The client's IP address. */
  ip: string;
  /** The EHLO/HELO argument. */
  helo: string;
  /** Our host name: the authserv-id of the Authentication-Results field. */
  hostname: string;
  /** The resolver, usually `dnsResolver.resolve`. */
  resolver: ResolveFunction;
  /**
   * Reads the message, instead of opening `path` at `offset`; a spool
   * writer's open file reads back with fewer system calls.
   */
  read?: () => AsyncIterable<Uint8Array>;
  /** The SPF verdict from MAIL FROM; when absent, SPF is checked here; null: not checked. */
  spf?: SpfVerdict | null;
  /** Shortest RSA key accepted for DKIM and ARC, in bits; default 1024 (RFC 8301 section 3.2). */
  minBitLength?: number;
  /** True to skip ARC verification. */
  disableArc?: boolean;
}

/** The verdict on one DKIM signature. */
export interface DkimSignatureVerdict {
  /** pass, fail, neutral, policy, temperror, permerror, or none for an unsigned message. */
  result: string;
  /** The signing domain (d=); absent for "none". */
  domain?: string;
  /** The selector (s=). */
  selector?: string;
  /** The algorithm (a=), such as rsa-sha256. */
  algorithm?: string;
  /** The signing domain when the signature passed and aligns with the From domain, else false. */
  aligned: string | false;
  /** Why, in mailauth's words. */
  comment?: string;
}

export type { DmarcVerdict } from "./dmarc.ts";

/** Everything authentication found out about a message. */
export interface AuthSummary {
  /** The SPF verdict (the one passed in, or the one computed here); null when not checked. */
  spf: SpfVerdict | null;
  /** One entry per DKIM signature; one "none" entry for an unsigned message. */
  dkim: DkimSignatureVerdict[];
  /**
   * The DMARC verdict that decides: the failing one with the strictest
   * policy, else the first; undefined when no Author Domain was evaluated.
   */
  dmarc?: DmarcVerdict;
  /** One verdict per Author Domain evaluated (RFC 7489 section 6.6.1). */
  dmarcVerdicts: DmarcVerdict[];
  /** Why DMARC could not take the message as a whole (mailauth's reason), when it could not. */
  dmarcSkipReason?: string;
  /** Number of From header fields (RFC 5322 section 3.6 allows one). */
  fromFields: number;
  /** True when a From field has a value, white space and line breaks aside. */
  fromHasText: boolean;
  /** Author Domains left unevaluated because there were too many. */
  authorDomainsUnchecked: number;
  /** The ARC chain's result (pass, fail, none); undefined when disabled. */
  arc?: string;
  /** True when DMARC failed for an Author Domain whose policy is p=reject. */
  dmarcReject: boolean;
  /** The complete `Authentication-Results:` field, folded, without the final CRLF. */
  authenticationResults: string;
}

/**
 * Authenticates the message stored in `path` from byte `offset` on. The
 * file is streamed, never read into memory. DNS failures become temperror
 * results, not exceptions; only an unreadable file rejects.
 */
export async function authenticateMessage(options: AuthenticateOptions): Promise<AuthSummary> {
  const resolver = mailauthResolver(options.resolver);
  const minBitLength = options.minBitLength ?? 1024;
  // null: SPF was deliberately not checked (a trusted client, or SPF off).
  const spf = options.spf === null ? null : options.spf ?? await checkSpf(options);
  const dkim: DKIMVerifyResult = await dkimVerify(
    options.read
      ? Readable.from(options.read(), { objectMode: false })
      : createReadStream(options.path, { start: options.offset }),
    { resolver, sender: options.sender, minBitLength },
  );
  for (const row of dkim.results) {
    // mailauth's lenient mode reports a body hash mismatch as neutral; RFC
    // 6376 section 6.1.3 makes it a permanent failure, which RFC 8601
    // section 2.7.1 reports as "fail".
    if (
      row.status.result === "neutral" && /body hash did not verify/i.test(row.status.comment ?? "")
    ) {
      row.status.result = "fail";
      if (typeof row.info === "string") row.info = row.info.replace(/^dkim=neutral/, "dkim=fail");
    }
  }
  let arcResult: ARCResult | undefined;
  if (!options.disableArc && dkim.arc) {
    arcResult = await arc(dkim.arc as Parameters<typeof arc>[0], {
      resolver,
      minBitLength,
      ip: options.ip,
    });
  }
  // The authors as author_addresses.ts reads them (comments in an address
  // cannot hide its domain), from the From fields mailauth collected.
  const fromFields = fromFieldsOf(dkim);
  const headerFrom = fromFields ? authorAddresses(fromFields) : dkim.headerFrom;
  const authors = headerFrom
    ? await evaluateAuthors({
      headerFrom,
      fromFields: dkim.fromFields ?? 0,
      // RFC 7489 section 4.2: SPF counts for DMARC only when it passed.
      spfDomains: spf?.result === "pass" ? [spf.domain] : [],
      // A signature that covers only the start of the body (its l= tag)
      // vouches for nothing after it: text appended there would pass as
      // the signer's (RFC 6376 section 8.2). It counts for DMARC only when
      // nothing follows the signed part.
      dkimDomains: dkim.results
        .filter((r) => r.status.result === "pass" && !((r.status.underSized ?? 0) > 0))
        .map((r) => ({
          id: r.id,
          domain: r.signingDomain,
          aligned: r.status.aligned,
          underSized: r.status.underSized,
        })),
      ...(arcResult ? { arcResult } : {}),
      resolver,
    })
    : undefined;
  if (authors && authors.verdicts.length > 0) {
    // As mailauth does: a passing signature aligns as DMARC decided.
    for (const row of dkim.results) {
      if (row.status.result === "pass") {
        const aligned = authors.dkimAligned.has(domainKey(row.signingDomain ?? ""));
        row.status.aligned = aligned ? row.signingDomain! : false;
      }
    }
  }
  const verdicts = authors?.verdicts ?? [];
  const rows = [
    ...dkim.results.map((r) => r.info),
    spf?.authResults,
    arcResult?.info,
    ...verdicts.map((v) => v.info),
  ].filter((row): row is string => typeof row === "string" && row !== "");
  const summary: AuthSummary = {
    spf,
    dkim: dkim.results.map(signatureVerdict),
    dmarcVerdicts: verdicts,
    fromFields: dkim.fromFields ?? 0,
    fromHasText: (fromFields ?? []).some((field) => field.replace(/^[^:]*:/, "").trim() !== ""),
    authorDomainsUnchecked: authors?.unchecked ?? 0,
    dmarcReject: verdicts.some((v) => v.result === "fail" && v.policy === "reject"),
    authenticationResults: [
      `Authentication-Results: ${authservId(options.hostname)};`,
      ...rows.map((row, i) => foldHeader(` ${row}${i < rows.length - 1 ? ";" : ""}`)),
    ].join("\r\n"),
  };
  const deciding = strictestFailure(verdicts) ?? verdicts[0];
  if (deciding) summary.dmarc = deciding;
  if (authors?.reason) summary.dmarcSkipReason = authors.reason;
  if (arcResult) summary.arc = arcResult.status.result;
  return summary;
}

const POLICY_STRENGTH: Record<string, number> = { none: 0, quarantine: 1, reject: 2 };

/** The failing verdict with the strictest policy (RFC 7489 section 6.6.1), if any failed. */
function strictestFailure(verdicts: readonly DmarcVerdict[]): DmarcVerdict | undefined {
  let worst: DmarcVerdict | undefined;
  for (const verdict of verdicts) {
    if (verdict.result !== "fail") continue;
    if (!worst || (POLICY_STRENGTH[verdict.policy] ?? 0) > (POLICY_STRENGTH[worst.policy] ?? 0)) {
      worst = verdict;
    }
  }
  return worst;
}

function signatureVerdict(row: DKIMVerifyResult["results"][number]): DkimSignatureVerdict {
  const verdict: DkimSignatureVerdict = {
    result: row.status.result,
    aligned: row.status.result === "pass" ? row.status.aligned ?? false : false,
  };
  if (row.signingDomain) verdict.domain = row.signingDomain;
  if (row.selector) verdict.selector = row.selector;
  if (row.algo) verdict.algorithm = row.algo;
  if (row.status.comment) verdict.comment = row.status.comment;
  return verdict;
}

/** A domain as mailauth keys its alignment sets: A-label, lower case, no trailing dot. */
function domainKey(domain: string): string {
  const trimmed = domain.trim().toLowerCase();
  return (domainToASCII(trimmed) || trimmed).replace(/\.+$/, "");
}

/**
 * The From header fields of the message, whole, as mailauth's DKIM verifier
 * parsed them (its result's `headers`, a property it does not enumerate);
 * undefined when it has none.
 */
function fromFieldsOf(result: DKIMVerifyResult): string[] | undefined {
  const parsed = (result as { headers?: { parsed?: unknown } }).headers?.parsed;
  if (!Array.isArray(parsed)) return undefined;
  const decoder = new TextDecoder();
  return parsed
    .filter((h): h is { key: string; line: Uint8Array | string } => h?.key === "from")
    .map((h) => typeof h.line === "string" ? h.line : decoder.decode(h.line));
}
