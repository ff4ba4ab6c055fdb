/**
 * Certificates from an ACME CA (RFC 8555) through acme-client: obtained on
 * first start without holding up intake, renewed at two thirds of their
 * lifetime or in the CA's ARI window (RFC 9773), retried with backoff, and
 * handed to `onCertificate` to be applied live. A node with `renew: false`
 * only watches the shared files and applies what another node stored.
 *
 * @module
 */

import { Agent } from "node:https";
import acme from "acme-client";
import type { AcmeConfig } from "../config/mod.ts";
import type { Counters, Logger } from "../log/mod.ts";
import {
  ariCertId,
  fetchRenewalWindow,
  type JsonGet,
  offersRenewalInfo,
  type RenewalWindow,
} from "./ari.ts";
import { placeOrder } from "./acme_order.ts";
import { AcmeStore, type StoredCertificate } from "./acme_store.ts";
import { backoffMs, MAX_TIMER_MS, renewalTime } from "./renewal.ts";

/** Challenge answers being published, read by the challenge servers. */
export class ChallengeTokens {
  /** HTTP-01 key authorizations by token (RFC 8555 section 8.3). */
  readonly http = new Map<string, string>();
  /** TLS-ALPN-01 certificates by host name (RFC 8737 section 3). */
  readonly alpn = new Map<string, { keyPem: string; certPem: string }>();
}

/** What /status shows. */
export interface AcmeStatus {
  names: string[];
  directory: string;
  /** This node renews (false: reads the shared files). */
  renews: boolean;
  /** "issued" once a certificate is in use; "pending" before the first. */
  state: "pending" | "issued";
  not_after: string | null;
  renew_at: string | null;
  /** Failed orders since the last success. */
  consecutive_failures: number;
  last_error: string | null;
  next_attempt_at: string | null;
}

/** Options of {@linkcode AcmeManager}. */
export interface AcmeManagerOptions {
  config: AcmeConfig;
  dataDir: string;
  challenges: ChallengeTokens;
  logger: Logger;
  counters: Counters;
  /** Applies a certificate (STARTTLS, the HTTPS server). */
  onCertificate: (cert: StoredCertificate) => void | Promise<void>;
  /** How often a node that does not renew looks at the shared file. Default: 1m. */
  watchIntervalMs?: number;
}

/** Obtains, renews and applies the ACME certificate. */
export class AcmeManager {
  readonly #o: AcmeManagerOptions;
  readonly #store: AcmeStore;
  #current: StoredCertificate | undefined;
  #window: RenewalWindow | undefined;
  #renewAt: number | undefined;
  #failures = 0;
  #lastError: string | undefined;
  #nextAttempt: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  /** Orders run one after another (a timer's and the admin API's). */
  #orders: Promise<void> = Promise.resolve();
  #closed = false;

  /** Creates the manager; nothing happens before {@linkcode start}. */
  constructor(options: AcmeManagerOptions) {
    this.#o = options;
    this.#store = new AcmeStore(options.dataDir);
    // One quick retry of a failed request (acme-client's default is five,
    // over 75 s); longer outages are the manager's backoff's to wait out.
    (acme.axios.defaults as { acmeSettings?: { retryMaxAttempts: number } })
      .acmeSettings!.retryMaxAttempts = 1;
    if (options.config.caPem !== undefined) {
      // acme-client talks through its own axios instance (Node's http
      // adapter): a private CA (a test CA, pebble) is trusted there.
      acme.axios.defaults.httpsAgent = new Agent({ ca: options.config.caPem });
    }
  }

  /** The stored certificate in use, if any. */
  get current(): StoredCertificate | undefined {
    return this.#current;
  }

  /**
   * Applies the stored certificate when it is usable for the configured
   * names, and plans the next step; returns without waiting for an order.
   */
  async start(): Promise<void> {
    const stored = await this.#store.certificate().catch(() => undefined);
    if (stored !== undefined && this.#usable(stored)) {
      this.#current = stored;
      await this.#o.onCertificate(stored);
      this.#o.logger.info("acme certificate loaded", {
        file: stored.file,
        not_after: new Date(stored.notAfter).toISOString(),
      });
    } else {
      this.#o.logger.warn(
        "acme certificate not issued yet; STARTTLS uses the self-signed certificate until it is",
        { names: this.#o.config.names.join(",") },
      );
    }
    this.#plan(Date.now());
  }

  /** Orders a new certificate now (admin API); resolves when done or failed. */
  async renewNow(): Promise<void> {
    if (!this.#o.config.renew) throw new Error("this node does not renew (tls.acme.renew: false)");
    await this.#attempt();
  }

  /** What /status shows. */
  status(): AcmeStatus {
    const iso = (ms: number | undefined) => ms === undefined ? null : new Date(ms).toISOString();
    return {
      names: this.#o.config.names,
      directory: this.#o.config.directoryUrl,
      renews: this.#o.config.renew,
      state: this.#current ? "issued" : "pending",
      not_after: iso(this.#current?.notAfter),
      renew_at: iso(this.#renewAt),
      consecutive_failures: this.#failures,
      last_error: this.#lastError ?? null,
      next_attempt_at: iso(this.#nextAttempt),
    };
  }

  /** Stops the timers; an order in progress finishes. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running?.catch(() => {});
    await this.#orders;
  }

  /** A certificate covers every configured name and has not expired. */
  #usable(cert: StoredCertificate): boolean {
    return cert.notAfter > Date.now() &&
      this.#o.config.names.every((name) => cert.names.includes(name));
  }

  #plan(now: number): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    let at: number;
    if (!this.#o.config.renew) {
      at = now + (this.#o.watchIntervalMs ?? 60_000);
      this.#renewAt = undefined;
    } else if (this.#failures > 0) {
      at = now + backoffMs(this.#failures, this.#o.config.retryInitialMs);
    } else if (this.#current === undefined) {
      at = now;
    } else {
      at = renewalTime(this.#current, this.#window, now);
      this.#renewAt = at;
      // RFC 9773 section 4.3: ask again when the CA says, at least daily.
      if (this.#window?.retryAfter !== undefined) at = Math.min(at, this.#window.retryAfter);
    }
    this.#nextAttempt = at;
    this.#timer = setTimeout(() => {
      this.#running = this.#tick().finally(() => this.#running = undefined);
    }, Math.min(Math.max(0, at - now), MAX_TIMER_MS));
    (this.#timer as { unref?: () => void }).unref?.();
  }

  async #tick(): Promise<void> {
    const now = Date.now();
    if (!this.#o.config.renew) {
      await this.#watch();
      this.#plan(Date.now());
      return;
    }
    if (this.#current !== undefined && this.#failures === 0) {
      await this.#refreshWindow();
      const due = renewalTime(this.#current, this.#window, now);
      if (due > now && this.#usable(this.#current)) {
        this.#plan(now);
        return;
      }
    }
    await this.#attempt();
  }

  /** Applies the shared file when another node replaced it. */
  async #watch(): Promise<void> {
    try {
      const stored = await this.#store.certificate();
      if (stored === undefined || stored.certPem === this.#current?.certPem) return;
      if (!this.#usable(stored)) return;
      this.#current = stored;
      await this.#o.onCertificate(stored);
      this.#o.logger.info("acme certificate changed on disk; applied", {
        not_after: new Date(stored.notAfter).toISOString(),
      });
    } catch (err) {
      this.#o.logger.warn("acme certificate file unreadable", { error: message(err) });
    }
  }

  /** Asks for the ARI window when the CA offers renewalInfo. */
  async #refreshWindow(): Promise<void> {
    if (this.#current === undefined) return;
    try {
      const directory = await jsonGet(this.#o.config.directoryUrl);
      const url = (directory.data as { renewalInfo?: unknown } | null)?.renewalInfo;
      if (typeof url !== "string") {
        this.#window = undefined;
        return;
      }
      this.#window = await fetchRenewalWindow(jsonGet, url, this.#current.certPem, Date.now());
    } catch (err) {
      // ARI is advice: without it the two-thirds rule holds.
      this.#o.logger.debug("acme renewal information unavailable", { error: message(err) });
    }
  }

  /** One order, one at a time; a failure counts and plans a retry. */
  #attempt(): Promise<void> {
    const run = this.#orders.then(() => this.#attemptNow());
    this.#orders = run.catch(() => {});
    return run;
  }

  async #attemptNow(): Promise<void> {
    if (this.#closed) return;
    try {
      const cert = await this.#order();
      this.#current = cert;
      this.#failures = 0;
      this.#lastError = undefined;
      this.#window = undefined;
      this.#o.counters.inc("acme_orders_total", { result: "issued" });
      this.#o.logger.info("acme certificate issued", {
        names: cert.names.join(","),
        not_after: new Date(cert.notAfter).toISOString(),
        file: cert.file,
      });
      await this.#o.onCertificate(cert);
      await this.#refreshWindow();
    } catch (err) {
      this.#failures++;
      this.#lastError = message(err);
      this.#o.counters.inc("acme_orders_total", { result: "failed" });
      this.#o.logger.error("acme order failed; retrying later", {
        failures: this.#failures,
        retry_in_s: Math.round(backoffMs(this.#failures, this.#o.config.retryInitialMs) / 1000),
        error: this.#lastError,
      });
    }
    this.#plan(Date.now());
  }

  async #order(): Promise<StoredCertificate> {
    const { config, challenges } = this.#o;
    let accountKey = await this.#store.accountKey();
    if (accountKey === undefined) {
      accountKey = (await acme.crypto.createPrivateEcdsaKey()).toString();
      await this.#store.saveAccountKey(accountKey);
    }
    const client = new acme.Client({ directoryUrl: config.directoryUrl, accountKey });
    // RSA: SMTP clients are older than web browsers, and ECDSA-only servers
    // still meet some that cannot talk to them.
    const [key, csr] = await acme.crypto.createCsr(
      { commonName: config.names[0]!, altNames: config.names },
      await acme.crypto.createPrivateRsaKey(2048),
    );
    const chain = await placeOrder(client, {
      names: config.names,
      csr,
      email: config.email,
      challenge: config.challenge,
      replaces: await this.#replaces(),
      logger: this.#o.logger,
      publish: async (authz, challenge, keyAuthorization) => {
        if (challenge.type === "http-01") {
          challenges.http.set(challenge.token, keyAuthorization);
        } else if ((challenge.type as string) === "tls-alpn-01") {
          const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(
            authz,
            keyAuthorization,
          );
          challenges.alpn.set(authz.identifier.value.toLowerCase(), {
            keyPem: alpnKey.toString(),
            certPem: alpnCert.toString(),
          });
        }
      },
      withdraw: (authz, challenge) => {
        challenges.http.delete(challenge.token);
        challenges.alpn.delete(authz.identifier.value.toLowerCase());
        return Promise.resolve();
      },
    });
    return await this.#store.saveCertificate(key.toString(), chain);
  }

  /**
   * The ARI id of the certificate a renewal replaces (RFC 9773 section 5),
   * when there is one and the CA's directory offers renewalInfo.
   */
  async #replaces(): Promise<string | undefined> {
    if (this.#current === undefined) return undefined;
    try {
      const directory = await jsonGet(this.#o.config.directoryUrl);
      return offersRenewalInfo(directory.data) ? ariCertId(this.#current.certPem) : undefined;
    } catch (err) {
      this.#o.logger.debug("acme order without replaces", { error: message(err) });
      return undefined;
    }
  }
}

/** A GET through acme-client's HTTP client (which trusts the configured CA). */
const jsonGet: JsonGet = async (url) => {
  const response = await acme.axios.get(url, { validateStatus: () => true, timeout: 30_000 });
  const retryAfter = response.headers["retry-after"];
  return {
    status: response.status,
    data: response.data,
    retryAfter: typeof retryAfter === "string" ? retryAfter : undefined,
  };
};

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
