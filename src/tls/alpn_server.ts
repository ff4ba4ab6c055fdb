/**
 * The HTTPS port when the challenge is TLS-ALPN-01 (RFC 8737): one TLS
 * listener that answers the CA's `acme-tls/1` handshakes with the
 * challenge certificate of the name asked for, and serves the MTA-STS
 * policies to everyone else (one request per connection, RFC 8461
 * section 3.3).
 *
 * Port 443 faces the Internet, so it runs on the parts the other public
 * servers run on, and is bounded as they are: Postern's own TLS listener
 * (src/runtime/tls.ts: the handshake belongs to the connection, a failed
 * accept is survived on every runtime, a renewal swaps the certificate
 * without unbinding) under the bounded HTTP/1.1 server
 * (src/http/http1_server.ts). An `acme-tls/1` connection goes through the
 * same gate as a policy fetch: the share of its client, the cap, and the
 * head deadline, which covers the handshake. So a client stalled in its
 * handshake holds one connection of its own share until the deadline, and
 * neither exhausts the server nor keeps the CA (another client) out.
 *
 * @module
 */

import {
  type Http1Limits,
  type Http1Log,
  type Http1Server,
  serveHttp1,
} from "../http/http1_server.ts";
import { listenTls, type TlsCertificate } from "../runtime/mod.ts";
import type { ChallengeTokens } from "./acme.ts";
import { alpnLimits } from "./http_limits.ts";

export { ALPN_HTTP_LIMITS, alpnLimits } from "./http_limits.ts";

/** The running server. */
export interface AlpnServer {
  /** Bound address, `host:port`. */
  address: string;
  /** The certificate for ordinary HTTPS clients (a renewal); the port stays bound. */
  setCertificate(cert: { certPem: string; keyPem: string }): void;
  /** Connections open now, `acme-tls/1` ones included. */
  connections(): number;
  close(): Promise<void>;
}

/** Options of {@linkcode startAlpnServer}. */
export interface AlpnServerOptions {
  host: string;
  port: number;
  /** The challenges open now; `tokens.alpn` is read at each handshake. */
  tokens: ChallengeTokens;
  /** The certificate of ordinary clients until the first `setCertificate()`. */
  initial: { certPem: string; keyPem: string };
  /** Answers the policy requests. */
  fetch: (request: Request) => Response | Promise<Response>;
  /** The names of an order (`tls.acme.names`): see {@linkcode alpnLimits}. Default 1. */
  names?: number;
  /** The limits; default {@linkcode alpnLimits} of `names`. Tests shorten the deadlines. */
  limits?: Http1Limits;
  /** Where failed accepts and refusals are reported; default nowhere. */
  log?: Http1Log;
}

/** RFC 8737 section 6.2: the ALPN protocol of the challenge. */
const ACME_TLS = "acme-tls/1";

const silentLog: Http1Log = { warn: () => {}, info: () => {} };

/**
 * Listens on `host:port` with `initial` as the certificate of ordinary
 * clients; `fetch` answers their requests.
 *
 * @throws {Error} when the address cannot be bound or `initial` does not load.
 */
export async function startAlpnServer(options: AlpnServerOptions): Promise<AlpnServer> {
  // One certificate object per challenge entry: the listener loads each
  // once, however many handshakes ask for it.
  const challengeCertificates = new WeakMap<object, TlsCertificate>();
  const listener = await listenTls(options.host, options.port, pair(options.initial), {
    alpnProtocols: [ACME_TLS, "http/1.1"],
    // While a challenge for the name is open, its certificate is shown to
    // the CA's validation, which offers acme-tls/1 (RFC 8737 section 3:
    // only that protocol); an ordinary client asking for the same name in
    // those seconds (a sender fetching our MTA-STS policy) gets the
    // listener's certificate, as at any other time.
    certificateFor: (name, offered) => {
      if (!offered.includes(ACME_TLS)) return undefined;
      const challenge = options.tokens.alpn.get(name.toLowerCase());
      if (challenge === undefined) return undefined;
      let certificate = challengeCertificates.get(challenge);
      if (certificate === undefined) {
        certificate = pair(challenge);
        challengeCertificates.set(challenge, certificate);
      }
      return certificate;
    },
    // RFC 8737 section 3: the handshake is the whole answer; nothing is
    // read or served on such a connection.
    endsAtHandshake: (protocol) => protocol === ACME_TLS,
  });
  const server: Http1Server = serveHttp1(
    listener,
    options.fetch,
    options.log ?? silentLog,
    options.limits ?? alpnLimits(options.names ?? 1),
  );
  return {
    address: server.address,
    setCertificate: (cert) => listener.setCertificate(pair(cert)),
    connections: () => server.connections(),
    close: () => server.close(),
  };
}

function pair(cert: { certPem: string; keyPem: string }): TlsCertificate {
  return { cert: cert.certPem, key: cert.keyPem };
}
