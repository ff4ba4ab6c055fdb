/**
 * Wires the daemon together: spool, queue, couriers, TLS and listeners,
 * and applies each new policy to them when the configuration is reloaded.
 *
 * @module
 */

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { type CertificatePair, type Config, ConfigError, SessionCap } from "./config/mod.ts";
import { startAdmin } from "./admin/server.ts";
import {
  ClusterSharedStore,
  Fleet,
  openClusterLink,
  SharedFailures,
  SharedRateLimits,
} from "./cluster/mod.ts";
import { DkimKeyring } from "./auth/mod.ts";
import {
  describeHookRuntime,
  EmbeddedDeno,
  embeddedRuntime,
  HookRunner,
  hookRuntimeReporter,
} from "./hooks/mod.ts";
import { Counters, FileSink, type Logger, MailLog } from "./log/mod.ts";
import {
  confirmRemovals,
  consistentLoad,
  isWithin,
  PolicyStore,
  refuseUnfinishedSaves,
  startReloader,
} from "./policy/mod.ts";
import { FreeSpace, Spool } from "./queue/mod.ts";
import * as runtime from "./runtime/mod.ts";
import { ConnectionLimits, Intake, LoginChecker, RateLimits, startListeners } from "./smtp/mod.ts";
import { listenerSettings, livePolicy, newDns, queueOptions } from "./serve_policy.ts";
import { startDelivery } from "./serve_delivery.ts";
import { tlsMaterial } from "./tls/mod.ts";
import type { AcmeService } from "./tls/acme_service.ts";
import { VERSION } from "./version.ts";

/** A running server. */
export interface RunningServer {
  /** Bound SMTP addresses. */
  addresses: string[];
  counters: Counters;
  /** The admin API's bound address, when it is on. */
  adminAddress: string | undefined;
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
  /**
   * Subscribes a handler to SIGHUP (a forced reload; logs opened again by
   * name); several may subscribe. Returns the unsubscribe function.
   */
  onHangup?: ((handler: () => void) => () => void) | undefined;
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
  // What the process holds before it serves: the runtime's own, inherited.
  const openAtStart = runtime.openDescriptorCount() ?? 32;
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const counters = new Counters();
  const mailLog = new MailLog(mailSink, counters);
  const sessionCap = new SessionCap({
    limit: runtime.openFileLimit(),
    openAtStart,
    lower: true,
    report: (fit, effective, warning) => {
      mailLog.descriptorLimit(fit.limit, fit.needed, fit.configured, effective);
      logger.warn(warning, { limit: fit.limit, needed: fit.needed, max_connections: effective });
    },
  });

  const spool = new Spool(config.dataDir);
  await spool.init();
  const { items, corrupt, unfinished } = await spool.load();
  for (const bad of corrupt) mailLog.quarantined(bad.file, bad.reason);
  for (const qid of unfinished) mailLog.unfinished(qid);

  // The pre-delivery-attempt hook has its own log, as GreenArrow's has. It
  // is created on its first line, so a server without that hook has none.
  await mkdir(join(config.dataDir, "log"), { recursive: true, mode: 0o700 });
  let hookLogFile: FileSink | undefined;
  const hookLog = (line: string) => {
    hookLogFile ??= new FileSink(join(config.dataDir, "log", "pre-delivery-attempt.log"));
    hookLogFile.write(line);
  };
  // The binary's own deno: only its manifest is read here; the runtime
  // itself is read (extracted or checked) when a TypeScript hook needs it.
  const embedded = await embeddedRuntime();
  const embeddedDeno = embedded && new EmbeddedDeno(embedded, config.dataDir, logger);
  // A fleet counts in its shared server; a node on its own never needs one.
  const link = config.cluster && await openClusterLink(config.cluster, logger, counters);
  const hooks = await HookRunner.start({
    embeddedDeno,
    shared: link && new ClusterSharedStore(link),
    outputFor: (point) => point === "pre-delivery-attempt" ? hookLog : undefined,
    configDir: config.configDir,
    dataDir: config.dataDir,
    config: config.hooks,
    logger,
    counters,
    env: runtime.env,
    execPath: runtime.execPath(),
  });

  // Only what was read from an unchanged directory counts (a file written
  // in place is empty for a moment). A main file gone or emptied where the
  // policy in force had one with settings is a save in progress (or a
  // mistake), not a wish to run on the defaults: the last good stays.
  // Additions apply at once; removals after a second look (a write in
  // progress looks like one).
  const reload: (() => Promise<Config>) | undefined = options.reload &&
      config.configDir !== undefined
    ? confirmRemovals(
      refuseUnfinishedSaves(
        consistentLoad(options.reload, config.configDir, (path) => isWithin(path, config.dataDir)),
        (): Config => policy.current.config,
      ),
      {
        current: (): Config => policy.current.config,
        reloadLater: () => void policy.reload("confirm"),
      },
    )
    : options.reload;
  const policy = new PolicyStore(config, {
    load: reload ?? (() => Promise.resolve(config)),
    logger,
    counters,
  });
  let dns = newDns(config);
  // A DKIM key signs once its record is seen in DNS: looked up now, on
  // every reload and periodically.
  const keyring = new DkimKeyring({ resolve: () => dns.resolver.resolve, logger, counters });
  await keyring.update(config.domains.values());
  keyring.startPeriodic(config.outbound.dkimCheckIntervalMs);
  policy.onFailure((err) => {
    if (err instanceof ConfigError && err.kind === "dkim_key") {
      counters.inc("dkim_key_errors_total");
    }
  });
  let live = livePolicy(policy.current, dns, logger, keyring);
  const { pool, lmtp, courier, queue } = await startDelivery(config, {
    policy,
    dns: () => dns.resolver,
    recipients: () => live.intake.resolver,
    hooks,
    hookLog,
    spool,
    mailLog,
    logger,
    counters,
    env: runtime.env,
  });
  for (const item of items) {
    mailLog.recovered(
      item.envelope.id,
      item.state.recipients.filter((r) => r.status === "pending").length,
    );
    queue.add(item);
  }

  // The ACME certificate, once there is one, comes first (the default);
  // configured ones stay for SNI. Renewals are applied like reloads.
  let acmePair: CertificatePair | undefined;
  const withAcme = (pairs: CertificatePair[]) => acmePair ? [acmePair, ...pairs] : pairs;
  let listenersStarted = false;
  const acme: AcmeService | undefined = config.acme === undefined
    ? undefined
    // acme-client is loaded only with tls.acme set, not at every start (issue 17).
    : await (await import("./tls/acme_service.ts")).startAcmeService({
      config: config.acme,
      dataDir: config.dataDir,
      hostname: config.hostname,
      domains: () => policy.current.config.domains,
      logger,
      counters,
      onCertificate: (pair) => {
        acmePair = pair;
        // Before the listeners start, they start with it.
        if (!listenersStarted) return;
        applying = applying.then(() => applyTls(true));
        return applying;
      },
    });
  const tls = await tlsMaterial(withAcme(config.certificates), config.dataDir, config.hostname);
  logger.info("tls certificate", { source: tls.source });
  const connections = new ConnectionLimits(
    sessionCap.maxConnections(config),
    config.smtp.maxConnectionsPerIp,
  );
  const intake = new Intake({
    hostname: config.hostname,
    connections,
    policy: () => live.intake,
    rates: link ? new SharedRateLimits(link, counters) : new RateLimits(),
    logins: link
      ? new LoginChecker(Date.now, new SharedFailures(link, counters))
      : new LoginChecker(),
    spool,
    freeSpace: new FreeSpace(spool.root),
    onQueued: (item) => {
      runtime.noteMessageWork();
      queue.add(item);
    },
    mailLog,
    logger,
    hooks,
  });
  const listeners = await startListeners(
    {
      ...listenerSettings(config),
      tls,
      hostname: config.hostname,
      listen: config.smtp.listen,
      submission: config.submission,
      onRestart: (address, reason) => mailLog.listenerRestarted(address, reason),
    },
    intake,
    logger,
  );
  listenersStarted = true;

  // A new policy: derive what depends on it, then hand each part its
  // settings. Sessions keep the snapshot of their transaction.
  policy.onSwap((next, previous) => {
    const nextConfig = next.config;
    if (JSON.stringify(nextConfig.dns) !== JSON.stringify(previous.config.dns)) {
      dns = newDns(nextConfig);
    }
    live = livePolicy(next, dns, logger, keyring);
    void keyring.update(nextConfig.domains.values());
    if (nextConfig.outbound.dkimCheckIntervalMs !== previous.config.outbound.dkimCheckIntervalMs) {
      keyring.startPeriodic(nextConfig.outbound.dkimCheckIntervalMs);
    }
    connections.setLimits(
      sessionCap.maxConnections(nextConfig),
      nextConfig.smtp.maxConnectionsPerIp,
    );
    queue.setOptions(queueOptions(nextConfig));
    pool.setLimits(nextConfig.outbound.maxConnections, nextConfig.outbound.connectionIdleMs);
    courier.setPipeTimeout(nextConfig.delivery.pipeTimeoutMs);
    logger.setLevel(nextConfig.log.level);
    // The asynchronous part (TLS material, hook workers) runs one swap at
    // a time and always applies the newest policy, so two quick reloads
    // cannot land out of order.
    applying = applying.then(() => applyAsync());
  });
  let applying = Promise.resolve();
  let appliedCertificates = JSON.stringify(config.certificates);
  let stopping = false;
  const applyAsync = async () => {
    if (stopping) return;
    const current = policy.current;
    const nextConfig = current.config;
    const certificates = JSON.stringify(nextConfig.certificates);
    try {
      listeners.update(listenerSettings(nextConfig));
    } catch (err) {
      logger.error("applying the listener settings failed; the previous ones stay", {
        epoch: current.epoch,
        error: err instanceof Error ? err.message : String(err),
      });
    }
    await applyTls(certificates !== appliedCertificates);
    if (stopping) return;
    // The runner logs a refresh that fails, and tries again at the next.
    await hooks.reconfigure(nextConfig.hooks);
  };
  // New TLS material for STARTTLS (a reload, or an ACME certificate);
  // sessions in progress keep theirs.
  const applyTls = async (changed: boolean) => {
    if (stopping || !changed) return;
    const current = policy.current;
    const certificates = JSON.stringify(current.config.certificates);
    try {
      // Key parsing costs: only for new certificate material.
      const material = await tlsMaterial(
        withAcme(current.config.certificates),
        current.config.dataDir,
        current.config.hostname,
      );
      listeners.updateTls(material);
      appliedCertificates = certificates;
      logger.info("tls certificate", { source: material.source, epoch: current.epoch });
    } catch (err) {
      logger.error("applying the TLS settings failed; the previous ones stay", {
        epoch: current.epoch,
        error: err instanceof Error ? err.message : String(err),
      });
    }
  };
  const reloader = config.configDir === undefined || options.reload === undefined
    ? undefined
    : startReloader({
      store: policy,
      ...(options.onHangup ? { onHangup: options.onHangup } : {}),
    });
  // SIGHUP also opens the hook's log again by name, as the mail log is, so
  // that logrotate's rename-and-HUP works for both.
  const unsubscribeHangup = options.onHangup?.(() => hookLogFile?.reopen());
  const startedAt = new Date();
  const fleet = link && new Fleet(link, {
    version: VERSION,
    runtime: `${runtime.runtimeName} ${runtime.runtimeVersion}`,
    startedAt,
    queueSize: () => queue.list().length,
    policyEpoch: () => policy.current.epoch,
  }, logger);
  fleet?.start();
  const hookRuntime = await hookRuntimeReporter(() => hooks.deno, embeddedDeno);
  const admin = config.admin.listen === undefined ? undefined : await startAdmin({
    listen: config.admin.listen,
    tokenFile: config.admin.tokenFile,
    runDir: join(config.dataDir, "run"),
    logger,
    deps: {
      version: VERSION,
      runtime: `${runtime.runtimeName} ${runtime.runtimeVersion}`,
      startedAt,
      listeners: listeners.addresses,
      policy,
      queue,
      spool,
      counters,
      hooks: () => hooks.status(),
      hookRuntime,
      connectionsOpen: () => connections.open,
      outboundConnectionsOpen: () => pool.open,
      ...(link && fleet
        ? { cluster: { status: () => link.status(), nodes: () => fleet.nodes() } }
        : {}),
      ...(acme ? { acme } : {}),
    },
  });
  for (const address of listeners.addresses) mailLog.listening(address);
  logger.info("postern started", {
    data: config.dataDir,
    config: config.configDir ?? "(embedded defaults)",
    domains: [...config.domains.keys()].join(","),
    dns: config.dns.servers.join(",") || "system",
    spf: config.auth.spf ? "on" : "off",
    queued: items.length,
    hook_runtime: describeHookRuntime(hookRuntime()),
  });

  return {
    addresses: listeners.addresses,
    adminAddress: admin?.address,
    counters,
    policy,
    async stop() {
      await fleet?.stop();
      await admin?.close();
      reloader?.close();
      unsubscribeHangup?.();
      policy.close();
      keyring.close();
      stopping = true;
      await acme?.close();
      await applying;
      await listeners.close();
      await queue.stop();
      pool.close();
      lmtp.close();
      hooks.close();
      await hookLogFile?.close();
      await spool.close();
      link?.close();
    },
  };
}
