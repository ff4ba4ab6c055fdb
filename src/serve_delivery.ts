/**
 * The delivery side of the daemon (see serve.ts): outbound connections,
 * MTA-STS, the remote, LMTP and local couriers, and the queue that hands
 * them its messages, with bounces queued back into it.
 *
 * @module
 */

import { join } from "node:path";
import type { RecipientResolver } from "./aliases/mod.ts";
import type { Config } from "./config/mod.ts";
import { DispatchCourier, LmtpCourier, LocalCourier } from "./delivery/mod.ts";
import type { DnsResolver } from "./dns/mod.ts";
import { aliasHookTargets, type HookRunner } from "./hooks/mod.ts";
import type { Counters, Logger, MailLog } from "./log/mod.ts";
import { Bouncer, ConnectionPool, MtaStsPolicies, RemoteCourier } from "./outbound/mod.ts";
import type { PolicyStore } from "./policy/mod.ts";
import { Queue, type Spool } from "./queue/mod.ts";
import { queueOptions } from "./serve_policy.ts";

/** What the delivery side works with. */
export interface DeliveryDeps {
  /** The policy in force, read at each use. */
  policy: PolicyStore;
  /** The resolver in force (a reload may replace it). */
  dns: () => DnsResolver;
  /** The local recipients in force. */
  recipients: () => RecipientResolver;
  hooks: HookRunner;
  /** Appends a line to the pre-delivery-attempt hook's log. */
  hookLog: (line: string) => void;
  spool: Spool;
  mailLog: MailLog;
  logger: Logger;
  counters: Counters;
  /** The process environment (PATH for the alias hook's run grants). */
  env: (name: string) => string | undefined;
}

/** The running delivery side. */
export interface Delivery {
  pool: ConnectionPool;
  lmtp: LmtpCourier;
  courier: LocalCourier;
  queue: Queue;
}

/** Builds the delivery side for `config` (the MTA-STS policy cache is read first). */
export async function startDelivery(config: Config, deps: DeliveryDeps): Promise<Delivery> {
  const pool = new ConnectionPool(
    config.outbound.maxConnections,
    config.outbound.connectionIdleMs,
  );
  const mtaSts = new MtaStsPolicies({
    resolver: (name, type) => deps.dns().resolve(name, type),
    cacheFile: join(config.dataDir, "mta-sts.json"),
  });
  const mtaStsError = await mtaSts.load();
  if (mtaStsError !== undefined) {
    deps.logger.warn("MTA-STS policy cache ignored", { error: mtaStsError });
  }
  const remote = new RemoteCourier({
    config: () => deps.policy.current.config.outbound,
    resolver: deps.dns,
    pool,
    mtaSts,
    preDeliveryHook: (input) => deps.hooks.preDeliveryAttempt(input),
    hookLog: (line) => {
      deps.hookLog(`${new Date().toISOString()} ${line}\n`);
      deps.logger.warn("pre-delivery-attempt hook error", { detail: line });
    },
    logger: deps.logger,
    counters: deps.counters,
  });
  const lmtp = new LmtpCourier({
    hostname: config.hostname,
    connectTimeoutMs: config.outbound.connectTimeoutMs,
    commandTimeoutMs: config.outbound.commandTimeoutMs,
    idleMs: config.outbound.connectionIdleMs,
  });
  const courier = new LocalCourier(deps.recipients, {
    mailRoot: join(config.dataDir, "mail"),
    hostname: config.hostname,
    pipeTimeoutMs: config.delivery.pipeTimeoutMs,
    pipeCwd: config.dataDir,
    // Looked up per delivery, so a hook added later is used at once.
    extraTargets: config.configDir === undefined ? undefined : aliasHookTargets({
      resolve: (address) => deps.hooks.aliasResolve(address),
      // The grants in force, looked up where the hook's workers look (Postern's PATH, config dir).
      runGrants: () => ({
        run: deps.policy.current.config.hooks.points["alias-resolve"].allow.run,
        path: deps.env("PATH"),
        cwd: config.configDir ?? ".",
      }),
      logger: deps.logger,
      counters: deps.counters,
    }),
    // An alias's remote targets in one call: those of one domain share a transaction.
    forward: (item, recipients, open) => remote.deliver(item, recipients, open),
    // The domain's LMTP server in the policy in force (delivery.lmtp).
    lmtp: {
      courier: lmtp,
      endpointOf: (domain) => deps.policy.current.config.domains.get(domain)?.lmtp,
    },
  });
  const dispatch = new DispatchCourier(
    courier,
    (item, recipients, open) => remote.deliver(item, recipients, open),
    (domain) => deps.recipients().isLocalDomain(domain),
  );
  const queue = new Queue(deps.spool, dispatch, deps.mailLog, deps.logger, queueOptions(config));
  queue.setNotifier(
    new Bouncer({
      spool: deps.spool,
      hostname: () => deps.policy.current.config.hostname,
      onQueued: (item) => queue.add(item),
      mailLog: deps.mailLog,
      logger: deps.logger,
      maxQueueLifetimeMs: () => deps.policy.current.config.delivery.maxQueueLifetimeMs,
    }),
  );
  return { pool, lmtp, courier, queue };
}
