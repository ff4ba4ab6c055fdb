/**
 * The resolved configuration the daemon runs with: every default applied,
 * every path absolute, every domain's files read.
 *
 * @module
 */

import type { AliasTable } from "../aliases/mod.ts";
import type { DkimKey, Network, SpfPolicy } from "../auth/mod.ts";
import type { HooksConfig } from "../hooks/mod.ts";
import type { LogLevel } from "../log/mod.ts";
import type { OutboundConfig } from "../outbound/settings.ts";
import type { RateLimitSettings } from "../smtp/rate_limits.ts";
import type { Endpoint } from "../users/endpoint.ts";
import type { ClusterConfig } from "../cluster/settings.ts";

/** One local domain. */
export interface DomainConfig {
  /** The domain in lower case ASCII (A-labels for IDNs). */
  name: string;
  /** Every local part is accepted and delivered to its own mailbox. */
  anyUser: boolean;
  /** Mailbox names from `domains/<name>/users`, normalized. */
  users: ReadonlySet<string>;
  /** Aliases from `domains/<name>/aliases`. */
  aliases: AliasTable;
  /** Password hashes of the users who may submit mail, by lower-case name. */
  passwords: ReadonlyMap<string, string>;
  /**
   * The DKIM keys in `domains/<name>/dkim/`; the newest one whose record is
   * published signs (see `DkimKeyring`).
   */
  dkimKeys: DkimKey[];
  /** `domains.<name>.dkim.selector`: this key signs, whatever DNS says. */
  dkimSelector: string | undefined;
  /** The LMTP server its mailboxes go to; undefined: Maildirs. */
  lmtp?: Endpoint | undefined;
  /** The MTA-STS policy Postern publishes for the domain, if any. */
  mtaSts?: MtaStsConfig | undefined;
}

/** `domains.<name>.mta_sts`: the policy served at mta-sts.<name> (RFC 8461). */
export interface MtaStsConfig {
  mode: "testing" | "enforce" | "none";
  maxAgeSeconds: number;
  /** MX host patterns, lower case. */
  mx: string[];
  /** The rua= of the `_smtp._tls` record (RFC 8460 section 3). */
  tlsRptRua: string;
}

/** `tls.acme`: certificates from an ACME CA (RFC 8555). */
export interface AcmeConfig {
  email: string;
  /** Names of the certificate, lower case; the first is its subject. */
  names: string[];
  directoryUrl: string;
  /** Extra CA certificates (PEM) trusted for the directory's HTTPS. */
  caPem: string | undefined;
  challenge: "http-01" | "tls-alpn-01";
  httpListen: string;
  httpsListen: string;
  /** This node obtains and renews; otherwise it only reads the files. */
  renew: boolean;
  /** First wait after a failed order (it doubles up to 6 hours). */
  retryInitialMs: number;
}

/** A certificate with its key, both PEM. */
export interface CertificatePair {
  /** The certificate file, for log lines and the reload watcher. */
  source: string;
  /** The private key file, when read from one. */
  keySource?: string;
  certPem: string;
  keyPem: string;
}

/** The complete, resolved configuration. */
export interface Config {
  /** The configuration directory, when one was given. */
  configDir: string | undefined;
  /** The main file (`postern.yaml`), when one was read. */
  mainFile: string | undefined;
  /**
   * The main file was read and held nothing but white space: on a reload,
   * most likely a save in progress (truncated, not yet written again).
   */
  mainFileEmpty: boolean;
  /** Absolute path of the data directory. */
  dataDir: string;
  /** Name used in the greeting and in Received headers. */
  hostname: string;
  smtp: {
    listen: string[];
    greetingDelayMs: number;
    maxMessageSize: number;
    maxRecipients: number;
    maxConnections: number;
    maxConnectionsPerIp: number;
    idleTimeoutMs: number;
    commandTimeoutMs: number;
    maxCommandLength: number;
    /** Bytes kept free on the spool's file system at MAIL FROM. */
    queueMinfree: number;
    /** Bytes per second a message must arrive at, at least. */
    minDataRate: number;
    /** Refused or bad commands that end a session; 0: no limit. */
    hardErrorLimit: number;
  };
  /** Submission listeners: STARTTLS (587-style) and implicit TLS (465-style). */
  submission: { listen: string[]; listenTls: string[] };
  /** Certificates configured explicitly; empty means generate one. */
  certificates: CertificatePair[];
  /** ACME, when `tls.acme` is set. */
  acme: AcmeConfig | undefined;
  aliases: { suffixSeparators: string; dropCharacters: string };
  delivery: {
    concurrency: number;
    retryInitialMs: number;
    retryMaxMs: number;
    maxQueueLifetimeMs: number;
    pipeTimeoutMs: number;
  };
  /** Live reloads. */
  reload: {
    /** How long dropped recipients wait for a second look before they go. */
    removalDelayMs: number;
  };
  dns: { servers: string[]; timeoutMs: number };
  /** Delivery to other domains. */
  outbound: OutboundConfig;
  auth: {
    /** Clients whose mail is not SPF-checked. */
    trustedNetworks: Network[];
    /** SPF policy, or undefined when SPF is off. */
    spf: SpfPolicy | undefined;
    /** DKIM, ARC and DMARC after DATA. */
    verify: boolean;
    /** Refuse DMARC failures of p=reject domains. */
    dmarcReject: boolean;
    /** Dovecot's auth-client socket, which checks submission logins. */
    dovecot?: Endpoint | undefined;
    /** Dovecot's auth-userdb socket, which knows the mailboxes of LMTP domains. */
    dovecotUserdb?: Endpoint | undefined;
  };
  /** Per-client rate limits (trusted networks are exempt); 0 switches one off. */
  rateLimits: RateLimitSettings;
  /** The fleet's shared Redis or Valkey; undefined: a node on its own. */
  cluster: ClusterConfig | undefined;
  /** Hook settings (the hooks themselves are in `<configDir>/hooks/`). */
  hooks: HooksConfig;
  /** Local domains by name. */
  domains: ReadonlyMap<string, DomainConfig>;
  /** The admin HTTP API; `listen` undefined when it is off. */
  admin: { listen: string | undefined; tokenFile: string };
  /** `mailFile` undefined: the mail log goes to standard output. */
  log: { level: LogLevel; mailFile: string | undefined };
}
