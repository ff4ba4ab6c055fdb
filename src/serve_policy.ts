/**
 * What the daemon derives from one configuration (see serve.ts): its DNS
 * resolver and SPF cache, the policy intake works with, and the settings
 * of the queue and the listeners. Each is made again when a reload
 * changes the configuration.
 *
 * @module
 */

import { RecipientResolver } from "./aliases/mod.ts";
import type { Config } from "./config/mod.ts";
import { type DkimKeyring, SpfVerdictCache } from "./auth/mod.ts";
import { DnsResolver } from "./dns/mod.ts";
import type { Logger } from "./log/mod.ts";
import type { PolicySnapshot } from "./policy/mod.ts";
import type { QueueOptions } from "./queue/mod.ts";
import type { IntakePolicy, LiveListenerSettings } from "./smtp/mod.ts";
import { dovecotMailboxes } from "./smtp/mailboxes.ts";
import { DovecotAuth } from "./users/dovecot_auth.ts";

/** A resolver, and the SPF verdicts built from its answers. */
export interface Dns {
  resolver: DnsResolver;
  spfCache: SpfVerdictCache;
}

/** A resolver for `config`'s DNS settings, with an SPF cache of its own. */
export function newDns(config: Config): Dns {
  const resolver = new DnsResolver({
    servers: config.dns.servers,
    timeoutMs: config.dns.timeoutMs,
  });
  return {
    resolver,
    spfCache: new SpfVerdictCache({ ttlOf: (name, type) => resolver.cachedTtlMs(name, type) }),
  };
}

/** What one policy snapshot gives intake and delivery. */
export interface LivePolicy {
  intake: IntakePolicy;
}

/** The intake policy of one snapshot, over `dns` and `keyring`. */
export function livePolicy(
  snapshot: PolicySnapshot,
  dns: Dns,
  logger: Logger,
  keyring: DkimKeyring,
): LivePolicy {
  const config = snapshot.config;
  const resolver = new RecipientResolver(config.domains, config.aliases);
  const dovecot = config.auth.dovecot || config.auth.dovecotUserdb
    ? new DovecotAuth({ client: config.auth.dovecot, userdb: config.auth.dovecotUserdb })
    : undefined;
  return {
    intake: {
      dovecot,
      mailboxes: dovecot?.looksUpUsers ? dovecotMailboxes(dovecot, config.domains) : undefined,
      epoch: snapshot.epoch,
      maxMessageSize: config.smtp.maxMessageSize,
      maxRecipients: config.smtp.maxRecipients,
      queueMinfree: config.smtp.queueMinfree,
      resolver,
      trustedNetworks: config.auth.trustedNetworks,
      rateLimits: config.rateLimits,
      outbound: {
        sendidHeader: config.outbound.sendidHeader,
        listidHeader: config.outbound.listidHeader,
        dkimSign: config.outbound.dkimSign,
        dkimKey: (domain) => keyring.signingKey(domain),
      },
      auth: {
        hostname: config.hostname,
        resolver: dns.resolver.resolve,
        spfCache: dns.spfCache,
        settings: config.auth,
        isLocalDomain: (domain) => resolver.isLocalDomain(domain),
        logger,
      },
    },
  };
}

/** The queue's settings in `config`. */
export function queueOptions(config: Config): QueueOptions {
  const { outbound } = config;
  return {
    ...config.delivery,
    delayWarningMs: outbound.delayWarningMs,
    // As many attempts per destination as the most generous virtual MTA
    // may open connections to it; more would only wait for a connection.
    destinationConcurrency: Math.max(
      outbound.maxConnectionsPerDestination,
      ...[...outbound.virtualMtas.values()].map((mta) => mta.maxConnectionsPerDestination),
    ),
  };
}

/** The listeners' settings in `config` that a reload may change. */
export function listenerSettings(config: Config): LiveListenerSettings {
  return {
    greetingDelayMs: config.smtp.greetingDelayMs,
    maxMessageSize: config.smtp.maxMessageSize,
    idleTimeoutMs: config.smtp.idleTimeoutMs,
    commandTimeoutMs: config.smtp.commandTimeoutMs,
    minDataRate: config.smtp.minDataRate,
    hardErrorLimit: config.smtp.hardErrorLimit,
    maxCommandLength: config.smtp.maxCommandLength,
  };
}
