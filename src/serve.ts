/**
 * Wires the daemon together: spool, queue, couriers, TLS and listeners.
 *
 * @module
 */

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { RecipientResolver } from "./aliases/mod.ts";
import type { Config } from "./config/mod.ts";
import { DnsResolver } from "./dns/mod.ts";
import { LocalCourier } from "./delivery/mod.ts";
import { aliasHookTargets, HookRunner } from "./hooks/mod.ts";
import { Counters, type Logger, MailLog } from "./log/mod.ts";
import { Queue, Spool } from "./queue/mod.ts";
import * as runtime from "./runtime/mod.ts";
import { ConnectionLimits, Intake, startListeners } from "./smtp/mod.ts";
import { tlsMaterial } from "./tls/mod.ts";

/** A running server. */
export interface RunningServer {
  /** Bound SMTP addresses. */
  addresses: string[];
  counters: Counters;
  /** Stops accepting mail, lets deliveries in flight finish, closes files. */
  stop(): Promise<void>;
}

/**
 * Starts serving with `config`; mail events go to `mailSink`.
 *
 * @throws {HookSetupError} when a hook cannot run (no deno for a TypeScript
 * hook, an executable hook that the configuration does not allow).
 */
export async function serve(
  config: Config,
  logger: Logger,
  mailSink: (line: string) => void,
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

  const resolver = new RecipientResolver(config.domains, config.aliases);
  const courier = new LocalCourier(() => resolver, {
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

  const dns = new DnsResolver({ servers: config.dns.servers, timeoutMs: config.dns.timeoutMs });
  const tls = await tlsMaterial(config.certificates, config.dataDir, config.hostname);
  logger.info("tls certificate", { source: tls.source });
  const intake = new Intake({
    hostname: config.hostname,
    maxMessageSize: config.smtp.maxMessageSize,
    maxRecipients: config.smtp.maxRecipients,
    connections: new ConnectionLimits(config.smtp.maxConnections, config.smtp.maxConnectionsPerIp),
    resolver: () => resolver,
    spool,
    onQueued: (item) => queue.add(item),
    mailLog,
    logger,
    hooks,
    auth: {
      hostname: config.hostname,
      resolver: dns.resolve,
      settings: config.auth,
      isLocalDomain: (domain) => resolver.isLocalDomain(domain),
      logger,
    },
  });
  const listeners = await startListeners(
    { ...config.smtp, hostname: config.hostname, tls },
    intake,
    logger,
  );
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
    async stop() {
      await listeners.close();
      await queue.stop();
      hooks.close();
      await spool.close();
    },
  };
}
