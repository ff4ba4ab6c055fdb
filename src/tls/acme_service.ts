/**
 * Everything `tls.acme` runs: the ACME manager, the HTTP-01 challenge
 * server, and the HTTPS server of the MTA-STS policies, which is started
 * with the first certificate and given each renewal's while it runs.
 *
 * @module
 */

import type { AcmeConfig, CertificatePair, DomainConfig } from "../config/mod.ts";
import { challengeApp, mtaStsApp } from "../http/well_known.ts";
import type { Counters, Logger } from "../log/mod.ts";
import {
  type Http1Limits,
  type Http1Log,
  type Http1Server,
  serveHttp1,
} from "../http/http1_server.ts";
import { listenTcp, listenTls, runtimeName, type TlsListener } from "../runtime/mod.ts";
import { AcmeManager, type AcmeStatus, ChallengeTokens } from "./acme.ts";
import type { StoredCertificate } from "./acme_store.ts";
import { type AlpnServer, startAlpnServer } from "./alpn_server.ts";
import { tlsMaterial } from "./mod.ts";

/** The running ACME parts. */
export interface AcmeService {
  /** What /status shows, with the bound addresses. */
  status(): AcmeStatus & { http_listen: string | null; https_listen: string | null };
  /** Orders a certificate now. */
  renewNow(): Promise<void>;
  close(): Promise<void>;
}

/** Options of {@linkcode startAcmeService}. */
export interface AcmeServiceOptions {
  config: AcmeConfig;
  dataDir: string;
  /** For the self-signed certificate shown before the first is issued. */
  hostname: string;
  /** The domains in force (their MTA-STS policies). */
  domains: () => ReadonlyMap<string, DomainConfig>;
  logger: Logger;
  counters: Counters;
  /** Applies a new certificate to STARTTLS. */
  onCertificate: (pair: CertificatePair) => void | Promise<void>;
}

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
  const limits = CHALLENGE_HTTP_LIMITS;
  return {
    ...limits,
    maxConnectionsPerAddress: Math.min(
      limits.maxConnections,
      Math.max(limits.maxConnectionsPerAddress, names),
    ),
  };
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
  name: "MTA-STS policy server",
  maxConnections: 256,
  maxConnectionsPerAddress: 8,
  headTimeoutMs: 10_000,
  bodyTimeoutMs: 10_000,
  writeTimeoutMs: 30_000,
  maxHeadBytes: 8 * 1024,
  maxBodyBytes: 1024,
};

/**
 * Starts the challenge server and the manager (which applies a stored
 * certificate before returning), and serves MTA-STS once there is a
 * certificate. An order runs in the background.
 */
export async function startAcmeService(options: AcmeServiceOptions): Promise<AcmeService> {
  const { config, logger } = options;
  const tokens = new ChallengeTokens();
  const split = (address: string) => {
    const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(address)!;
    return { host: match[1]!, port: Number(match[2]) };
  };
  const http1Log = (server: string): Http1Log => ({
    warn: (msg, fields) => logger.warn(msg, fields),
    info: (msg, fields) => logger.info(msg, fields),
    count: (outcome) => options.counters.inc("http_connections_total", { server, outcome }),
  });
  let challengeServer: Http1Server | undefined;
  if (config.renew && config.challenge === "http-01") {
    const { host, port } = split(config.httpListen);
    const app = challengeApp(tokens);
    // Port 80 faces the Internet: Postern's own bounded HTTP/1.1 server,
    // not the runtime's, whose accept loop ends the process on EMFILE
    // (Deno.serve) and which keeps idle connections open without limit.
    challengeServer = serveHttp1(
      await listenTcp(host, port),
      (request) => app.fetch(request),
      http1Log("acme_challenge"),
      challengeLimits(config.names.length),
    );
    logger.info("acme challenge server", { listen: challengeServer.address });
  }
  const wantsMtaSts = [...options.domains().values()].some((d) => d.mtaSts !== undefined);
  const policyApp = mtaStsApp(options.domains);
  let httpsServer: Http1Server | undefined;
  let httpsListener: TlsListener | undefined;
  let httpsAddress: string | undefined;
  // TLS-ALPN-01 needs the HTTPS port from the start, and a certificate
  // chosen by ALPN: a TLS server of its own, serving MTA-STS too.
  let alpnServer: AlpnServer | undefined;
  if (config.renew && config.challenge === "tls-alpn-01") {
    if (runtimeName === "deno") {
      // RFC 8737 section 3 requires the acmeIdentifier extension to be
      // critical, and Deno's TLS (rustls with webpki) refuses a server
      // certificate with a critical extension it does not know:
      // Deno.listenTls throws UnsupportedCriticalExtension, and the node:tls
      // server ends the handshake ("unsupported protocol") or, with an
      // SNICallback, stalls it. No Deno API takes the certificate unchecked.
      throw new Error(
        "tls.acme.challenge tls-alpn-01 needs the Bun build (the postern binary or bun run): " +
          "Deno's TLS server cannot present the challenge certificate; use http-01 on Deno",
      );
    }
    const { host, port } = split(config.httpsListen);
    const selfSigned = await tlsMaterial([], options.dataDir, options.hostname);
    alpnServer = await startAlpnServer({
      host,
      port,
      tokens,
      initial: { certPem: selfSigned.cert, keyPem: selfSigned.key },
      fetch: (request) => policyApp.fetch(request),
      // Bounded as the MTA-STS server; the CA's share grows with the names.
      names: config.names.length,
      log: http1Log("mta_sts"),
    });
    httpsAddress = alpnServer.address;
    logger.info("acme tls-alpn-01 and mta-sts server", { listen: httpsAddress });
  }
  const serveHttps = async (cert: StoredCertificate) => {
    if (alpnServer !== undefined) {
      alpnServer.setCertificate(cert);
      return;
    }
    if (!wantsMtaSts) return;
    const certificate = { cert: cert.certPem, key: cert.keyPem };
    if (httpsListener !== undefined) {
      // A renewal: the same server on the same port; new connections get
      // the new certificate, those in progress finish on theirs.
      httpsListener.setCertificate(certificate);
      return;
    }
    const { host, port } = split(config.httpsListen);
    // Port 443 faces the Internet: Postern's own bounded HTTP/1.1 server
    // over TLS, for the same reasons as port 80's.
    httpsListener = await listenTls(host, port, certificate);
    httpsServer = serveHttp1(
      httpsListener,
      (request) => policyApp.fetch(request),
      http1Log("mta_sts"),
      MTA_STS_HTTP_LIMITS,
    );
    httpsAddress = httpsServer.address;
    logger.info("mta-sts policy server", { listen: httpsAddress });
  };
  const manager = new AcmeManager({
    config,
    dataDir: options.dataDir,
    challenges: tokens,
    logger,
    counters: options.counters,
    onCertificate: async (cert) => {
      await options.onCertificate({
        source: `${cert.file} (acme)`,
        certPem: cert.certPem,
        keyPem: cert.keyPem,
      });
      await serveHttps(cert);
    },
  });
  await manager.start();
  return {
    status: () => ({
      ...manager.status(),
      http_listen: challengeServer?.address ?? null,
      https_listen: httpsAddress ?? null,
    }),
    renewNow: () => manager.renewNow(),
    async close() {
      await manager.close();
      await challengeServer?.close();
      await httpsServer?.close();
      await alpnServer?.close();
    },
  };
}
