/**
 * The limits of the public HTTP servers of ACME and MTA-STS: the http-01
 * challenge server on port 80, and the HTTPS server on port 443 (MTA-STS
 * policies, and the tls-alpn-01 handshakes when that is the challenge).
 * All are open to anyone on the Internet and served by the bounded
 * HTTP/1.1 server (src/http/http1_server.ts).
 *
 * @module
 */

import type { Http1Limits } from "../http/http1_server.ts";

/**
 * The limits of the http-01 challenge server: a CA validates with a few
 * requests at once from a few places (GET, no body); anyone else on the
 * Internet can connect too, so idle and slow connections are closed, and
 * the cap leaves room for the CA behind a few slow clients. One client
 * may hold 8 connections, so that a single host cannot take all 256 (and
 * with them the CA's validations, and every renewal); the server of an
 * order with more names allows as many ({@linkcode challengeLimits}).
 */
export const CHALLENGE_HTTP_LIMITS: Http1Limits = {
  name: "ACME challenge server",
  maxConnections: 256,
  maxConnectionsPerAddress: 8,
  headTimeoutMs: 10_000,
  bodyTimeoutMs: 10_000,
  writeTimeoutMs: 30_000,
  maxHeadBytes: 8 * 1024,
  maxBodyBytes: 1024,
};

/**
 * The challenge server's limits for an order of `names` names. The
 * challenges of an order are all answered at once (acme_order.ts), and a
 * CA fetches each name from each of its validation places, so one of its
 * addresses may fetch every name at the same moment: the share of a
 * client is at least that many.
 */
export function challengeLimits(names: number): Http1Limits {
  return withShare(CHALLENGE_HTTP_LIMITS, names);
}

/**
 * The limits of the MTA-STS policy server (port 443): sending servers
 * fetch one small policy now and then, with a GET and no body (RFC 8461
 * section 3.3); anyone on the Internet can connect too, so the TLS
 * handshake and the request head must both arrive within the head
 * deadline, and the cap leaves room for the fetchers behind a few slow
 * clients. One client may hold 8 connections (a fetcher uses one per
 * policy, a few at most at once), so that a single host cannot take all
 * 256 and keep senders from the policies.
 */
export const MTA_STS_HTTP_LIMITS: Http1Limits = {
  // The same bounds as the challenge server's: small GETs, no body.
  ...CHALLENGE_HTTP_LIMITS,
  name: "MTA-STS policy server",
};

/**
 * The limits of the HTTPS port under TLS-ALPN-01: those of the MTA-STS
 * policy server, which it serves too. A CA's validation is one handshake,
 * done within the head deadline as a policy fetch is; the share of a
 * client keeps a single host from taking all 256 connections and keeping
 * the CA from validating, and with it every renewal; an order with more
 * names allows as many ({@linkcode alpnLimits}).
 */
export const ALPN_HTTP_LIMITS: Http1Limits = {
  ...MTA_STS_HTTP_LIMITS,
  name: "ACME tls-alpn-01 and MTA-STS server",
};

/**
 * The tls-alpn-01 server's limits for an order of `names` names: a CA
 * validates each name from each of its validation places, so one of its
 * addresses may hold a handshake per name at the same moment, as on the
 * http-01 server ({@linkcode challengeLimits}).
 */
export function alpnLimits(names: number): Http1Limits {
  return withShare(ALPN_HTTP_LIMITS, names);
}

/** `limits` with a client's share raised to `names`, never past the cap. */
function withShare(limits: Http1Limits, names: number): Http1Limits {
  return {
    ...limits,
    maxConnectionsPerAddress: Math.min(
      limits.maxConnections,
      Math.max(limits.maxConnectionsPerAddress, names),
    ),
  };
}
