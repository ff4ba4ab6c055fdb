/**
 * Loads a configuration directory (chasquid-like layout):
 *
 * ```text
 * <config>/postern.yaml                 main settings (optional)
 * <config>/domains/<domain>/users       mailbox names, one per line (optional)
 * <config>/domains/<domain>/aliases     chasquid-format aliases (optional)
 * <config>/certs/<name>/fullchain.pem   certificate chain, with privkey.pem
 * <config>/hooks/                       hooks (see the hook runner)
 * ```
 *
 * Every file is optional and what is missing takes the default. Every error
 * names the file, the line where known, the field and the problem
 * (config_error.ts). The sections with their own rules are resolved in
 * their own modules (domains.ts, outbound.ts, acme.ts, cluster.ts, …);
 * this one puts them together with the defaults.
 *
 * @module
 */

import { statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import type { HookPoint } from "../../hooks/mod.ts";
import { parseNetwork, type SpfAction, spfPolicy, type SpfResult } from "../auth/mod.ts";
import type { HooksConfig } from "../hooks/mod.ts";
import { hostname as hostHostname } from "../runtime/mod.ts";
import { resolveAcme } from "./acme.ts";
import { loadCertificates } from "./certificates.ts";
import { ConfigError, describe, readOptional } from "./config_error.ts";
import { endpointOf, lmtpOf, loadDomains } from "./domains.ts";
import { readMainFile } from "./main_file.ts";
import { resolveCluster } from "./cluster.ts";
import { resolveOutbound } from "./outbound.ts";
import { CONFIG_FILE_NAME, defaultQueueMinfree, DEFAULTS } from "./defaults.ts";
import type { ConfigFile } from "./schema.ts";
import type { Config } from "./types.ts";

/** Where to load the configuration from. */
export interface LoadOptions {
  /** The configuration directory; undefined runs on the embedded defaults. */
  configDir?: string | undefined;
  /** The data directory from the command line; wins over the config file. */
  dataDir?: string | undefined;
}

/**
 * Loads and validates the whole configuration.
 *
 * @throws {ConfigError} on the first file that is missing, unreadable or
 * invalid, with a message naming the file, line, field and problem.
 */
export async function loadConfig(options: LoadOptions = {}): Promise<Config> {
  const configDir = options.configDir === undefined ? undefined : resolve(options.configDir);
  if (configDir !== undefined) requireDirectory(configDir);

  const mainPath = configDir === undefined ? undefined : join(configDir, CONFIG_FILE_NAME);
  const read = mainPath === undefined ? undefined : readMainFile(mainPath);
  const file = read?.settings ?? {};
  const smtp = file.smtp ?? {};
  const delivery = file.delivery ?? {};
  const relativeToConfig = (p: string) =>
    isAbsolute(p) || configDir === undefined ? resolve(p) : resolve(configDir, p);

  const domains = configDir === undefined ? new Map() : loadDomains(configDir, file);
  if (domains.size === 0) {
    for (const [name, settings] of Object.entries(DEFAULTS.domains)) {
      domains.set(name, {
        name,
        anyUser: settings.anyUser,
        users: new Set(),
        aliases: new Map(),
        passwords: new Map(),
        dkimKeys: [],
        dkimSelector: undefined,
        lmtp: lmtpOf(undefined, file, relativeToConfig),
      });
    }
  }

  const hostname = file.hostname ?? hostHostname();
  const mainFile = join(configDir ?? ".", CONFIG_FILE_NAME);
  let outbound;
  try {
    outbound = resolveOutbound(file.outbound, {
      hostname,
      mainFile,
      relativeToConfig,
      readText: readOptional,
    });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(mainFile, err instanceof Error ? err.message : String(err));
  }
  const acme = resolveAcme(file, domains, {
    hostname,
    mainFile,
    relativeToConfig,
    readText: readOptional,
  });
  const dataDir = options.dataDir !== undefined
    ? resolve(options.dataDir)
    : file.data_dir !== undefined
    ? relativeToConfig(file.data_dir)
    : resolve(DEFAULTS.dataDir);
  return {
    configDir,
    mainFile: read === undefined ? undefined : mainPath,
    mainFileEmpty: read?.empty ?? false,
    dataDir,
    hostname,
    smtp: {
      listen: smtp.listen ?? [...DEFAULTS.smtp.listen],
      greetingDelayMs: smtp.greeting_delay ?? DEFAULTS.smtp.greetingDelayMs,
      maxMessageSize: smtp.max_message_size ?? DEFAULTS.smtp.maxMessageSize,
      maxRecipients: smtp.max_recipients ?? DEFAULTS.smtp.maxRecipients,
      maxConnections: smtp.max_connections ?? DEFAULTS.smtp.maxConnections,
      maxConnectionsPerIp: smtp.max_connections_per_ip ?? DEFAULTS.smtp.maxConnectionsPerIp,
      idleTimeoutMs: smtp.idle_timeout ?? DEFAULTS.smtp.idleTimeoutMs,
      commandTimeoutMs: smtp.command_timeout ?? DEFAULTS.smtp.commandTimeoutMs,
      maxCommandLength: smtp.max_command_length ?? DEFAULTS.smtp.maxCommandLength,
      queueMinfree: smtp.queue_minfree ??
        defaultQueueMinfree(smtp.max_message_size ?? DEFAULTS.smtp.maxMessageSize),
      minDataRate: smtp.min_data_rate ?? DEFAULTS.smtp.minDataRate,
      hardErrorLimit: smtp.hard_error_limit ?? DEFAULTS.smtp.hardErrorLimit,
    },
    certificates: configDir === undefined
      ? []
      : await loadCertificates(configDir, file.tls, relativeToConfig),
    acme,
    aliases: {
      suffixSeparators: file.aliases?.suffix_separators ?? DEFAULTS.aliases.suffixSeparators,
      dropCharacters: file.aliases?.drop_characters ?? DEFAULTS.aliases.dropCharacters,
    },
    delivery: {
      concurrency: delivery.concurrency ?? DEFAULTS.delivery.concurrency,
      retryInitialMs: delivery.retry_initial ?? DEFAULTS.delivery.retryInitialMs,
      retryMaxMs: delivery.retry_max ?? DEFAULTS.delivery.retryMaxMs,
      maxQueueLifetimeMs: delivery.max_queue_lifetime ?? DEFAULTS.delivery.maxQueueLifetimeMs,
      pipeTimeoutMs: delivery.pipe_timeout ?? DEFAULTS.delivery.pipeTimeoutMs,
    },
    reload: {
      removalDelayMs: file.reload?.removal_delay ?? DEFAULTS.reload.removalDelayMs,
    },
    dns: {
      servers: file.dns?.servers ?? [...DEFAULTS.dns.servers],
      timeoutMs: file.dns?.timeout ?? DEFAULTS.dns.timeoutMs,
    },
    outbound,
    auth: {
      ...resolveAuth(file.auth, join(configDir ?? ".", CONFIG_FILE_NAME)),
      dovecot: endpointOf(file.auth?.dovecot, relativeToConfig),
      dovecotUserdb: endpointOf(file.auth?.dovecot_userdb, relativeToConfig),
    },
    submission: {
      listen: file.submission?.listen ?? [...DEFAULTS.submission.listen],
      listenTls: file.submission?.listen_tls ?? [...DEFAULTS.submission.listenTls],
    },
    rateLimits: {
      connectionsPerIpPerMinute: file.rate_limits?.connections_per_ip_per_minute ??
        DEFAULTS.rateLimits.connectionsPerIpPerMinute,
      messagesPerIpPerHour: file.rate_limits?.messages_per_ip_per_hour ??
        DEFAULTS.rateLimits.messagesPerIpPerHour,
      messagesPerUserPerHour: file.rate_limits?.messages_per_user_per_hour ??
        DEFAULTS.rateLimits.messagesPerUserPerHour,
      failedLoginsPerIpPerHour: file.rate_limits?.failed_logins_per_ip_per_hour ??
        DEFAULTS.rateLimits.failedLoginsPerIpPerHour,
    },
    cluster: resolveCluster(file.cluster, { hostname, mainFile, relativeToConfig }),
    hooks: resolveHooks(file.hooks, relativeToConfig, join(configDir ?? ".", CONFIG_FILE_NAME)),
    domains,
    admin: {
      listen: file.admin?.listen === "off"
        ? undefined
        : file.admin?.listen ?? DEFAULTS.admin.listen,
      tokenFile: file.admin?.token_file !== undefined
        ? relativeToConfig(file.admin.token_file)
        : join(dataDir, DEFAULTS.admin.tokenFileName),
    },
    log: {
      level: file.log?.level ?? DEFAULTS.log.level,
      mailFile: file.log?.mail_file === undefined
        ? undefined
        : relativeToConfig(file.log.mail_file),
    },
  };
}

function resolveAuth(auth: ConfigFile["auth"], configFile: string): Config["auth"] {
  const networks = auth?.trusted_networks ?? DEFAULTS.auth.trustedNetworks;
  const trustedNetworks = networks.map((text) => {
    try {
      return parseNetwork(text);
    } catch (err) {
      throw new ConfigError(
        configFile,
        `${configFile}: auth.trusted_networks: ${err instanceof Error ? err.message : err}`,
      );
    }
  });
  const spf = auth?.spf ?? {};
  const actions: Partial<Record<SpfResult, SpfAction>> = {};
  for (
    const result of [
      "pass",
      "fail",
      "softfail",
      "neutral",
      "none",
      "temperror",
      "permerror",
    ] as const
  ) {
    const action = spf[result];
    if (action !== undefined) actions[result] = action;
  }
  return {
    trustedNetworks,
    spf: spf.enabled === false ? undefined : spfPolicy({
      actions,
      ...(spf.local_domain_reject ? { localDomainReject: spf.local_domain_reject } : {}),
    }),
    verify: auth?.verify ?? DEFAULTS.auth.verify,
    dmarcReject: auth?.dmarc_reject ?? DEFAULTS.auth.dmarcReject,
  };
}

function resolveHooks(
  hooks: ConfigFile["hooks"],
  relativeToConfig: (p: string) => string,
  mainFile: string,
): HooksConfig {
  const point = (
    name: HookPoint,
    key: "post_data" | "alias_resolve" | "alias_exists" | "pre_delivery_attempt",
  ) => {
    const settings = hooks?.[key] ?? {};
    // GreenArrow's reference: one state shared by every call, so one worker.
    if (key === "pre_delivery_attempt" && (settings.workers ?? 1) !== 1) {
      throw new ConfigError(
        mainFile,
        `${mainFile}: hooks.pre_delivery_attempt.workers must be 1: every call shares one state`,
      );
    }
    const allow = settings.allow ?? {};
    return {
      timeoutMs: settings.timeout ?? DEFAULTS.hooks.timeoutMs[name],
      workers: settings.workers ?? DEFAULTS.hooks.workers,
      maxMemoryBytes: settings.max_memory ?? DEFAULTS.hooks.maxMemoryBytes,
      outputLimits: {
        linesPerSecond: settings.output_lines_per_second ?? DEFAULTS.hooks.outputLinesPerSecond,
        bytesPerSecond: settings.output_bytes_per_second ?? DEFAULTS.hooks.outputBytesPerSecond,
      },
      allow: {
        net: allow.net ?? [],
        read: (allow.read ?? []).map(relativeToConfig),
        write: (allow.write ?? []).map(relativeToConfig),
        env: allow.env ?? [],
        run: allow.run ?? [],
      },
    };
  };
  return {
    deno: hooks?.deno === undefined ? undefined : relativeToConfig(hooks.deno),
    allowUnsandboxedExec: hooks?.allow_unsandboxed_exec ?? false,
    points: {
      "post-data": point("post-data", "post_data"),
      "alias-resolve": point("alias-resolve", "alias_resolve"),
      "alias-exists": point("alias-exists", "alias_exists"),
      "pre-delivery-attempt": point("pre-delivery-attempt", "pre_delivery_attempt"),
    },
  };
}

function requireDirectory(dir: string): void {
  try {
    if (statSync(dir).isDirectory()) return;
  } catch (err) {
    throw new ConfigError(dir, `${dir}: cannot read the configuration directory: ${describe(err)}`);
  }
  throw new ConfigError(dir, `${dir}: the configuration path is not a directory`);
}
