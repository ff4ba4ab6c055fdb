/**
 * Wires the daemon together: spool, queue, couriers, TLS and listeners,
 * and applies each new policy to them when the configuration is reloaded.
 *
 * @module
 */

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { RecipientResolver } from "./aliases/mod.ts";
import type { Config } from "./config/mod.ts";
import { SpfVerdictCache } from "./auth/mod.ts";
import { DnsResolver } from "./dns/mod.ts";
import { LocalCourier } from "./delivery/mod.ts";
import { aliasHookTargets, HookRunner } from "./hooks/mod.ts";
import { Counters, type Logger, MailLog } from "./log/mod.ts";
import { type PolicySnapshot, PolicyStore, startReloader } from "./policy/mod.ts";
import { Queue, Spool } from "./queue/mod.ts";
import * as runtime from "./runtime/mod.ts";
import {
  ConnectionLimits,
  Intake,
  type IntakePolicy,
  type LiveListenerSettings,
  RateLimits,
  startListeners,
} from "./smtp/mod.ts";
import { type TlsMaterial, tlsMaterial } from "./tls/mod.ts";

/** A running server. */
export interface RunningServer {
  /** Bound SMTP addresses. */
  addresses: string[];
  counters: Counters;
  /** The policy in force, its epoch and the last reload error. */
  policy: PolicyStore;
  /** Stops accepting mail, lets deliveries in flight finish, closes files. */
  stop(): Promise<void>;
}

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /**
   * Reads the configuration again for a reload, with the same command-line
   * overrides; without it (embedded defaults) nothing is reloaded.
   */
  reload?: (() => Promise<Config>) | undefined;
}

/**
 * Starts serving with `config`; mail events go to `mailSink`. With a
 * configuration directory, changes to it are applied live.
 *
 * @throws {HookSetupError} when a hook cannot run (no deno for a TypeScript
 * hook, an executable hook that the configuration does not allow).
 */
export async function serve(
  config: Config,
  logger: Logger,
  mailSink: (line: string) => void,
  options: ServeOptions = {},
): Promise<RunningServer> {
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const counters = new Counters();
  const mailLog = new MailLog(mailSink, counters);

  const spool = new Spool(config.dataDir);
  await spool.init();
  const { items, corrupt } = await spool.load();
  for (const bad of corrupt) mailLog.quarantined(bad.file, bad.reason);

  const hooks = await HookRunner.start({
    configDir: config.configDir,
    dataDir: config.dataDir,
    config: config.hooks,
    logger,
    counters,
    env: runtime.env,
    execPath: runtime.execPath(),
  });

  const policy = new PolicyStore(config, {
    load: options.reload ?? (() => Promise.resolve(config)),
    logger,
    counters,
  });
  let dns = newDns(config);
  let live = livePolicy(policy.current, dns, logger);
  const courier = new LocalCourier(() => live.intake.resolver, {
    mailRoot: join(config.dataDir, "mail"),
    hostname: config.hostname,
    pipeTimeoutMs: config.delivery.pipeTimeoutMs,
    pipeCwd: config.dataDir,
    // Looked up per delivery, so a hook added later is used at once.
    extraTargets: config.configDir === undefined ? undefined : aliasHookTargets(hooks),
  });
  const queue = new Queue(spool, courier, mailLog, logger, config.delivery);
  for (const item of items) {
    mailLog.recovered(
      item.envelope.id,
      item.state.recipients.filter((r) => r.status === "pending").length,
    );
    queue.add(item);
  }

  let tls = await tlsMaterial(config.certificates, config.dataDir, config.hostname);
  logger.info("tls certificate", { source: tls.source });
  const connections = new ConnectionLimits(
    config.smtp.maxConnections,
    config.smtp.maxConnectionsPerIp,
  );
  const intake = new Intake({
    hostname: config.hostname,
    connections,
    policy: () => live.intake,
    rates: new RateLimits(),
    spool,
    onQueued: (item) => queue.add(item),
    mailLog,
    logger,
    hooks,
  });
  const listeners = await startListeners(
    { ...listenerSettings(config, tls), hostname: config.hostname, listen: config.smtp.listen },
    intake,
    logger,
  );

  // A new policy: derive what depends on it, then hand each part its
  // settings. Sessions keep the snapshot of their transaction.
  policy.onSwap((next, previous) => {
    const nextConfig = next.config;
    if (JSON.stringify(nextConfig.dns) !== JSON.stringify(previous.config.dns)) {
      dns = newDns(nextConfig);
    }
    live = livePolicy(next, dns, logger);
    connections.setLimits(nextConfig.smtp.maxConnections, nextConfig.smtp.maxConnectionsPerIp);
    queue.setOptions(nextConfig.delivery);
    courier.setPipeTimeout(nextConfig.delivery.pipeTimeoutMs);
    logger.setLevel(nextConfig.log.level);
    const certificatesChanged = JSON.stringify(nextConfig.certificates) !==
      JSON.stringify(previous.config.certificates);
    void (async () => {
      if (certificatesChanged) {
        tls = await tlsMaterial(nextConfig.certificates, nextConfig.dataDir, nextConfig.hostname);
        logger.info("tls certificate", { source: tls.source, epoch: next.epoch });
      }
      listeners.update(listenerSettings(nextConfig, tls));
      await hooks.reconfigure(nextConfig.hooks);
    })().catch((err) =>
      logger.error("applying the policy failed in part", {
        epoch: next.epoch,
        error: err instanceof Error ? err.message : String(err),
      })
    );
  });
  const reloader = config.configDir === undefined || options.reload === undefined
    ? undefined
    : startReloader({
      store: policy,
      onHangup: (handler) => runtime.onSignal("SIGHUP", handler),
    });
  for (const address of listeners.addresses) mailLog.listening(address);
  logger.info("postern started", {
    data: config.dataDir,
    config: config.configDir ?? "(embedded defaults)",
    domains: [...config.domains.keys()].join(","),
    dns: config.dns.servers.join(",") || "system",
    spf: config.auth.spf ? "on" : "off",
    queued: items.length,
  });

  return {
    addresses: listeners.addresses,
    counters,
    policy,
    async stop() {
      reloader?.close();
      policy.close();
      await listeners.close();
      await queue.stop();
      hooks.close();
      await spool.close();
    },
  };
}

/** A resolver, and the SPF verdicts built from its answers. */
interface Dns {
  resolver: DnsResolver;
  spfCache: SpfVerdictCache;
}

function newDns(config: Config): Dns {
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
interface LivePolicy {
  intake: IntakePolicy;
}

function livePolicy(
  snapshot: PolicySnapshot,
  dns: Dns,
  logger: Logger,
): LivePolicy {
  const config = snapshot.config;
  const resolver = new RecipientResolver(config.domains, config.aliases);
  return {
    intake: {
      epoch: snapshot.epoch,
      maxMessageSize: config.smtp.maxMessageSize,
      maxRecipients: config.smtp.maxRecipients,
      resolver,
      trustedNetworks: config.auth.trustedNetworks,
      rateLimits: config.rateLimits,
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

function listenerSettings(config: Config, tls: TlsMaterial): LiveListenerSettings {
  return {
    greetingDelayMs: config.smtp.greetingDelayMs,
    maxMessageSize: config.smtp.maxMessageSize,
    idleTimeoutMs: config.smtp.idleTimeoutMs,
    commandTimeoutMs: config.smtp.commandTimeoutMs,
    maxCommandLength: config.smtp.maxCommandLength,
    tls,
  };
}
