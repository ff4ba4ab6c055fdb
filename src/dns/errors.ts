/**
 * The small error vocabulary of the resolver. The codes are the ones
 * `node:dns` uses, because mailauth branches on them: `ENOTFOUND` and
 * `ENODATA` are "void lookups" (RFC 7208 section 4.6.4) and everything else
 * is a temporary error, except `EBADNAME`, which SPF treats as permanent.
 *
 * @module
 */

/** Why a lookup failed. */
export type DnsErrorCode =
  /** NXDOMAIN: the name does not exist (RFC 1035 section 4.1.1, RCODE 3). */
  | "ENOTFOUND"
  /** NODATA: the name exists but has no records of the type (RFC 2308 section 2.2). */
  | "ENODATA"
  /** No usable answer arrived in time. */
  | "ETIMEOUT"
  /** The server answered SERVFAIL (RCODE 2). */
  | "ESERVFAIL"
  /** The server answered REFUSED (RCODE 5). */
  | "EREFUSED"
  /** The server answered NOTIMP or FORMERR, or an RCODE we do not know. */
  | "ENOTIMP"
  /** The answer could not be decoded or did not match the question. */
  | "EBADRESP"
  /** The server could not be reached (connection refused, network down). */
  | "ECONNREFUSED"
  /** The name is not a valid domain name (label or name too long, bad characters). */
  | "EBADNAME";

const DESCRIPTIONS: Record<DnsErrorCode, string> = {
  ENOTFOUND: "Domain name not found",
  ENODATA: "No records of this type",
  ETIMEOUT: "DNS query timed out",
  ESERVFAIL: "DNS server failure",
  EREFUSED: "DNS query refused",
  ENOTIMP: "DNS query not supported by the server",
  EBADRESP: "Malformed DNS response",
  ECONNREFUSED: "DNS server unreachable",
  EBADNAME: "Invalid domain name",
};

/** A failed lookup. Callers branch on `code`, never on the message. */
export class DnsError extends Error {
  /** Why the lookup failed. */
  readonly code: DnsErrorCode;
  /** The name that was looked up. */
  readonly hostname: string;
  /** The record type that was asked for. */
  readonly rrtype: string;

  /** Creates an error for a lookup of `rrtype` records of `hostname`. */
  constructor(code: DnsErrorCode, hostname: string, rrtype: string) {
    super(`${DESCRIPTIONS[code]} (${rrtype} ${hostname})`);
    this.name = "DnsError";
    this.code = code;
    this.hostname = hostname;
    this.rrtype = rrtype;
  }
}

/** True for NXDOMAIN and NODATA: the DNS answered, and there is nothing. */
export function isVoidLookup(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ENOTFOUND" || code === "ENODATA";
}

/**
 * True for failures that may go away if retried later: timeouts, server
 * failures, refusals and garbage. RFC 7208 section 2.6.6 calls the SPF
 * result of these "temperror".
 */
export function isTemporaryDnsError(err: unknown): boolean {
  return err instanceof DnsError && !isVoidLookup(err) && err.code !== "EBADNAME";
}
