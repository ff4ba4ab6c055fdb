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
 * names the file, the line where known, the field and the problem.
 *
 * @module
 */

import { readdirSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import type { HookPoint } from "../../hooks/mod.ts";
import { AliasSyntaxError, normalizeDomain, parseAliases } from "../aliases/mod.ts";
import { parseNetwork, type SpfAction, spfPolicy, type SpfResult } from "../auth/mod.ts";
import type { HooksConfig } from "../hooks/mod.ts";
import { readRegularFile } from "../regular_file.ts";
import { hostname as hostHostname } from "../runtime/mod.ts";
import { type Endpoint, parseEndpoint } from "../users/endpoint.ts";
import { isPasswordHash, parseUserLine } from "../users/mod.ts";
import { resolveAcme } from "./acme.ts";
import { loadCertificates } from "./certificates.ts";
import { loadDkim } from "./dkim.ts";
import { readMainFile } from "./main_file.ts";
import { resolveCluster } from "./cluster.ts";
import { resolveOutbound } from "./outbound.ts";
import { CONFIG_FILE_NAME, defaultQueueMinfree, DEFAULTS } from "./defaults.ts";
import type { ConfigFile } from "./schema.ts";
import type { Config, DomainConfig } from "./types.ts";

/** A configuration problem found at start-up. */
export class ConfigError extends Error {
  /** The file at fault. */
  readonly file: string;
  /** What kind of problem, when it has its own counter ("dkim_key"). */
  readonly kind: string | undefined;

  /** Creates the error; `message` already names the file and field. */
  constructor(file: string, message: string, kind?: string) {
    super(message);
    this.name = "ConfigError";
    this.file = file;
    this.kind = kind;
  }
}

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

/**
 * Reads a text file, or undefined when it does not exist.
 *
 * Synchronous, as are the other reads of the loader: a reload reads every
 * file of the configuration, and on Deno an asynchronous read costs several
 * times the CPU of the same read done in line (a hand-off to a thread pool
 * and back); configuration files are small and local.
 *
 * @throws {ConfigError} naming the file when it exists but cannot be read
 * (a folder on its path the server may not enter, a symlink loop) or is
 * not a regular file (a FIFO, a device, a socket): only a missing file is
 * absent, never one the server cannot see.
 */
export function readOptional(path: string): string | undefined {
  try {
    return readRegularFile(path);
  } catch (err) {
    throw new ConfigError(path, `${path}: cannot read the file: ${describe(err)}`);
  }
}

function loadDomains(
  configDir: string,
  file: ConfigFile,
): Map<string, DomainConfig> {
  const domains = new Map<string, DomainConfig>();
  const domainsDir = join(configDir, "domains");
  let entries: string[] = [];
  try {
    entries = readdirSync(domainsDir, { withFileTypes: true })
      .filter((e) => e.isDirectory() || e.isSymbolicLink())
      .map((e) => e.name)
      .filter((name) => !name.startsWith("."));
  } catch (err) {
    if (errorCode(err) !== "ENOENT") {
      throw new ConfigError(domainsDir, `${domainsDir}: cannot list domains: ${describe(err)}`);
    }
  }
  // Folders and postern.yaml keys may spell a domain in different cases;
  // they are one domain, with the folder's files and the file's settings.
  const folders = new Map(entries.map((dir) => [normalizeDomain(dir), dir]));
  const settingsByName = new Map(
    Object.entries(file.domains ?? {}).map(([key, value]) => [normalizeDomain(key), value]),
  );
  for (const name of new Set([...folders.keys(), ...settingsByName.keys()])) {
    const dir = join(domainsDir, folders.get(name) ?? name);
    domains.set(name, {
      name,
      anyUser: settingsByName.get(name)?.any_user ?? false,
      lmtp: lmtpOf(
        settingsByName.get(name)?.delivery?.lmtp,
        file,
        (p) => resolve(configDir, p),
      ),
      ...loadUsers(join(dir, "users")),
      aliases: loadAliases(join(dir, "aliases"), name),
      ...loadDkim(
        join(dir, "dkim"),
        name,
        settingsByName.get(name)?.dkim?.selector,
        join(configDir, CONFIG_FILE_NAME),
      ),
    });
  }
  return domains;
}

function loadUsers(
  path: string,
): { users: Set<string>; passwords: Map<string, string> } {
  const text = readOptional(path);
  const users = new Set<string>();
  const passwords = new Map<string, string>();
  if (text === undefined) return { users, passwords };
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    // `name` (a mailbox), or `name <scrypt hash>` (a user who may also log
    // in to submit mail).
    const parsed = parseUserLine(raw);
    if (!parsed) continue;
    const { name, credentials } = parsed;
    if (name.includes("@") || name.includes(",")) {
      throw new ConfigError(
        path,
        `${path}:${index + 1}: user "${name}" must be a bare name, without a domain or commas`,
      );
    }
    if (credentials !== "") {
      if (!isPasswordHash(credentials)) {
        throw new ConfigError(
          path,
          `${path}:${index + 1}: the password of "${name}" is not a hash from "postern user add"`,
        );
      }
      passwords.set(name, credentials);
    }
    users.add(name);
  }
  return { users, passwords };
}

function loadAliases(path: string, domain: string) {
  const text = readOptional(path);
  if (text === undefined) return new Map();
  try {
    return parseAliases(text, domain);
  } catch (err) {
    if (err instanceof AliasSyntaxError) {
      throw new ConfigError(path, `${path}:${err.line}: ${err.message}`);
    }
    throw err;
  }
}

/** A parsed endpoint (schema-checked), a relative socket path taken from the config directory. */
function endpointOf(
  text: string | undefined,
  relativeToConfig: (p: string) => string,
): Endpoint | undefined {
  const endpoint = text === undefined ? undefined : parseEndpoint(text);
  if (endpoint?.kind !== "unix") return endpoint;
  return { kind: "unix", path: relativeToConfig(endpoint.path) };
}

/** A domain's LMTP server: its own setting ("off": none), else delivery.lmtp. */
function lmtpOf(
  own: string | undefined,
  file: ConfigFile,
  relativeToConfig: (p: string) => string,
): Endpoint | undefined {
  if (own === "off") return undefined;
  return endpointOf(own ?? file.delivery?.lmtp, relativeToConfig);
}

/** The `code` of a Node-style error, if any. */
export function errorCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err
    ? String((err as { code: unknown }).code)
    : undefined;
}

/** A one-line description of a thrown value. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
