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
import { type Http1Log, type Http1Server, serveHttp1 } from "../http/http1_server.ts";
import { listenTcp, listenTls, runtimeName, type TlsListener } from "../runtime/mod.ts";
import { AcmeManager, type AcmeStatus, ChallengeTokens } from "./acme.ts";
import type { StoredCertificate } from "./acme_store.ts";
import { type AlpnServer, startAlpnServer } from "./alpn_server.ts";
import { tlsMaterial } from "./mod.ts";
import { challengeLimits, MTA_STS_HTTP_LIMITS } from "./http_limits.ts";

export { CHALLENGE_HTTP_LIMITS, challengeLimits, MTA_STS_HTTP_LIMITS } from "./http_limits.ts";

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
