/**
 * SPF (RFC 7208) for the MAIL FROM identity, or the HELO identity for the
 * null sender, through mailauth's `spf()`. The verdict carries everything
 * the session needs later: the result for policy and hooks, the
 * `Received-SPF:` field and the Authentication-Results fragment.
 *
 * @module
 */

import type { ResolveFunction } from "../dns/mod.ts";
import { foldHeader, replySafe, unfoldHeader } from "./header_text.ts";
import { mailauthResolver, spf } from "./mailauth.ts";

/** The results of RFC 7208 section 2.6. */
export type SpfResult =
  | "pass"
  | "fail"
  | "softfail"
  | "neutral"
  | "none"
  | "temperror"
  | "permerror";

const RESULTS = new Set<string>([
  "pass",
  "fail",
  "softfail",
  "neutral",
  "none",
  "temperror",
  "permerror",
]);

/** What an SPF check needs. */
export interface SpfCheckOptions {
  /** The MAIL FROM address without angle brackets; "" for the null sender. */
  sender: string;
  /** The client's IP address (IPv4-mapped IPv6 is treated as IPv4). */
  ip: string;
  /** The EHLO/HELO argument. */
  helo: string;
  /** Our host name, for the header fields. */
  hostname: string;
  /** The resolver, usually `dnsResolver.resolve`. */
  resolver: ResolveFunction;
  /** DNS-querying terms allowed; RFC 7208 section 4.6.4 says 10. */
  maxLookups?: number;
  /** Void lookups allowed; RFC 7208 section 4.6.4 suggests 2. */
  maxVoidLookups?: number;
  /**
   * Time allowed for the whole evaluation, after which the result is
   * temperror. RFC 7208 section 4.6.4: "at least 20 seconds"; default 20000.
   */
  timeLimitMs?: number;
}

/** The outcome of one SPF check. */
export interface SpfVerdict {
  /** The result. */
  result: SpfResult;
  /** Which identity was checked: MAIL FROM, or HELO for the null sender (RFC 7208 section 2.4). */
  identity: "mailfrom" | "helo";
  /** The domain whose policy was evaluated. */
  domain: string;
  /** mailauth's one-line reason, such as "mx.example: domain of a@b designates 192.0.2.1 as permitted sender". */
  comment: string;
  /** The domain's `exp=` explanation (RFC 7208 section 6.2); third-party text, fail only. */
  explanation?: string;
  /** The complete `Received-SPF:` field (RFC 7208 section 9.1), folded, without the final CRLF. */
  receivedSpf: string;
  /** The `spf=…` method result for Authentication-Results (RFC 8601 section 2.7.2). */
  authResults: string;
  /** The SPF record evaluated, when one was found. */
  record?: string;
}

/**
 * Checks SPF for a transaction. Never rejects: DNS trouble is temperror,
 * bad records are permerror, and an unexpected failure inside mailauth is
 * reported as temperror too.
 */
export async function checkSpf(options: SpfCheckOptions): Promise<SpfVerdict> {
  const identity = options.sender === "" ? "helo" : "mailfrom";
  try {
    const response = await spf({
      // mailauth checks postmaster@<helo> when the sender is empty (RFC 7208 section 2.4).
      sender: options.sender,
      ip: options.ip,
      helo: options.helo,
      mta: options.hostname,
      resolver: mailauthResolver(options.resolver),
      maxResolveCount: options.maxLookups ?? 10,
      maxVoidCount: options.maxVoidLookups ?? 2,
      maxElapsedTime: options.timeLimitMs ?? 20_000,
    });
    const result = RESULTS.has(response.status.result)
      ? response.status.result as SpfResult
      : "temperror";
    const verdict: SpfVerdict = {
      result,
      identity,
      domain: response.domain,
      comment: response.status.comment ?? "",
      receivedSpf: foldHeader(unfoldHeader(response.header)),
      authResults: response.info,
    };
    if (response.explanation !== undefined) verdict.explanation = response.explanation;
    if (response.rr !== undefined) verdict.record = response.rr;
    return verdict;
  } catch (err) {
    return failedVerdict(options, identity, err);
  }
}

/** A temperror verdict built without mailauth, for when it threw. */
function failedVerdict(
  options: SpfCheckOptions,
  identity: "mailfrom" | "helo",
  err: unknown,
): SpfVerdict {
  const sender = options.sender || `postmaster@${options.helo}`;
  const domain = sender.slice(sender.lastIndexOf("@") + 1).toLowerCase();
  const reason = replySafe(err instanceof Error ? err.message : String(err), 100)
    .replace(/[()\\]/g, "");
  const comment = `${options.hostname}: error in processing during lookup of ${sender}: ${reason}`;
  const quoted = (value: string) =>
    /^[\x21-\x7e]+$/.test(value) && !/[;"\\]/.test(value)
      ? value
      : `"${value.replace(/[\\"]/g, "\\$&").replace(/[^\x20-\x7e]/g, "")}"`;
  const pairs = [`client-ip=${quoted(options.ip)};`];
  if (identity === "mailfrom") pairs.push(`envelope-from=${quoted(sender)};`);
  if (options.helo) pairs.push(`helo=${quoted(options.helo)};`);
  const smtp = identity === "mailfrom"
    ? `smtp.mailfrom=${quoted(sender)}`
    : `smtp.helo=${quoted(options.helo)}`;
  return {
    result: "temperror",
    identity,
    domain,
    comment,
    receivedSpf: foldHeader(`Received-SPF: temperror (${comment}) ${pairs.join(" ")}`),
    authResults: `spf=temperror (${comment}) ${smtp}`,
  };
}
