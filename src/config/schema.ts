/**
 * The valibot schema of the main configuration file, `postern.yaml`. Every
 * field is optional; `defaults.ts` holds the value a missing field takes.
 * Unknown keys are errors, so a misspelt setting never passes silently.
 *
 * @module
 */

import * as v from "valibot";
import { parseClusterUrl } from "../cluster/settings.ts";
import { LOG_LEVELS } from "../log/mod.ts";
import {
  Count,
  DnsServer,
  Duration,
  Endpoint,
  ListenAddress,
  MTA_STS_MAX_AGE,
  Names,
  QUEUE_SPAN,
  Size,
  Text,
  TIMER,
} from "./fields.ts";

/**
 * Worker processes of one hook at most: each is a deno process with a heap
 * of its own, and the pool starts them all at once.
 */
const MAX_HOOK_WORKERS = 64;

/** Settings of one hook point. */
const HookPointSchema = v.nullish(v.strictObject({
  /** Time allowed per call. Default: 1m for post_data, 5s for the alias hooks. */
  timeout: v.optional(Duration(TIMER)),
  /** Worker processes of a module hook, each with its own state. Default: 1. */
  workers: v.optional(Count(1, MAX_HOOK_WORKERS)),
  /**
   * Memory limit of each worker: its V8 heap, and (Linux) everything it
   * allocates, within deno's margin (see `withDataLimit`). Default: 256MiB.
   */
  max_memory: v.optional(Size),
  /** Lines of a worker's output logged per second; the rest is dropped. Default: 200. */
  output_lines_per_second: v.optional(Count(1)),
  /** Bytes of a worker's output logged per second; the rest is dropped. Default: 64KiB. */
  output_bytes_per_second: v.optional(Size),
  /** What the hook may do beyond reading its own files. Default: nothing. */
  allow: v.optional(v.strictObject({
    /** Hosts (`host` or `host:port`) it may connect to. */
    net: v.optional(Names("a host or host:port")),
    /** Paths it may read, relative to the config directory. */
    read: v.optional(Names("a path")),
    /** Paths it may write, relative to the config directory. */
    write: v.optional(Names("a path")),
    /** Environment variables it may read. */
    env: v.optional(Names("a variable name")),
    /** Programs it may run (they run outside the sandbox). */
    run: v.optional(Names("a program")),
  })),
}));

const SpfActionSchema = v.optional(
  v.picklist(["accept", "reject", "defer"], "must be accept, reject or defer"),
);

const SPF_RESULTS = [
  "pass",
  "fail",
  "softfail",
  "neutral",
  "none",
  "temperror",
  "permerror",
] as const;

/** `tls.acme`: certificates obtained and renewed from an ACME CA. */
const AcmeSchema = v.strictObject({
  /** Contact address of the ACME account (expiry notices). Required. */
  email: v.pipe(Text("an email address"), v.email("must be an email address")),
  /** Names of the certificate. Default: hostname, plus mta-sts.<domain> per MTA-STS domain. */
  names: v.optional(v.pipe(Names("a host name"), v.minLength(1, "must list a name"))),
  /** The CA's directory URL. Default: Let's Encrypt production. */
  directory: v.optional(v.pipe(Text("a URL"), v.url("must be a URL"))),
  /** Extra PEM CA certificates to trust for the directory's HTTPS. Default: none. */
  ca_file: v.optional(Text("a file path")),
  /** Challenge type: http-01 (port 80) or tls-alpn-01 (port 443, RFC 8737). Default: http-01. */
  challenge: v.optional(
    v.picklist(["http-01", "tls-alpn-01"], "must be http-01 or tls-alpn-01"),
  ),
  /** Where the HTTP-01 challenge server listens. Default: "0.0.0.0:80". */
  http_listen: v.optional(ListenAddress),
  /** Where HTTPS (MTA-STS policies, TLS-ALPN-01) listens. Default: "0.0.0.0:443". */
  https_listen: v.optional(ListenAddress),
  /** First retry after a failed order; doubles up to 6h. Default: 1m. */
  retry_initial: v.optional(Duration(TIMER)),
  /** This node obtains and renews; false: it only reads <data>/acme/ (shared). Default: true. */
  renew: v.optional(v.boolean("must be true or false")),
});

/** `domains.<d>.mta_sts`: the MTA-STS policy (RFC 8461) Postern publishes for the domain. */
const MtaStsSchema = v.strictObject({
  /** testing, enforce or none (RFC 8461 section 5). Required. */
  mode: v.picklist(["testing", "enforce", "none"], "must be testing, enforce or none"),
  /** How long senders cache the policy. Default: 1w. */
  max_age: v.optional(Duration(MTA_STS_MAX_AGE)),
  /** The domain's MX host names (`*.example.com` allowed). Default: [hostname]. */
  mx: v.optional(v.pipe(Names("a host name"), v.minLength(1, "must list a host"))),
  /** Where TLS reports go (RFC 8460), for the printed _smtp._tls record. Default: mailto:tlsrpt@<domain>. */
  tlsrpt_rua: v.optional(Text("a mailto: or https: URI")),
});

/** Schema of `postern.yaml`. */
export const ConfigFileSchema = v.strictObject({
  /** Name announced in the greeting and in Received headers. Default: the host name. */
  hostname: v.optional(Text("a host name")),
  /** Where the spool, mailboxes and generated keys live. Default: ./data (or --data). */
  data_dir: v.optional(Text("a directory path")),
  smtp: v.optional(v.strictObject({
    /** Addresses to accept SMTP on. Default: ["127.0.0.1:2525"]. */
    listen: v.optional(
      v.pipe(v.array(ListenAddress), v.minLength(1, "must list at least one address")),
    ),
    /** Pause before the 220 greeting; 0 sends it at once. Default: 0s. */
    greeting_delay: v.optional(Duration(TIMER)),
    /** Largest message accepted, advertised with SIZE. Default: 50MiB. */
    max_message_size: v.optional(Size),
    /** Recipients per message. Default: 100 (RFC 5321 section 4.5.3.1.8). */
    max_recipients: v.optional(Count(1)),
    /** Connections at once, in total. Default: 500. */
    max_connections: v.optional(Count(1)),
    /** Connections at once from one client IP address. Default: 50. */
    max_connections_per_ip: v.optional(Count(1)),
    /** Idle time allowed between commands. Default: 5m (RFC 5321 section 4.5.3.2.7). */
    idle_timeout: v.optional(Duration(TIMER)),
    /** Time within which each command, the DATA transfer included, must arrive. Default: 10m. */
    command_timeout: v.optional(Duration(TIMER)),
    /** Longest command line in bytes. Default: 2048. */
    max_command_length: v.optional(Count(512)),
    /**
     * Free space kept on the spool's file system: MAIL FROM gets 452 4.3.1 when
     * less than this plus the declared SIZE is free. Default: 1.5 × max_message_size,
     * at least 100MiB.
     */
    queue_minfree: v.optional(Size),
    /** Bytes per second a message must arrive at, at least (after 354). Default: 500. */
    min_data_rate: v.optional(Count(1)),
    /** Refused or bad commands that end a session with 421 4.7.0; 0: no limit. Default: 20. */
    hard_error_limit: v.optional(Count(0)),
  })),
  submission: v.optional(v.strictObject({
    /** Submission with STARTTLS (port 587): AUTH after TLS, then relaying. Default: none. */
    listen: v.optional(v.array(ListenAddress)),
    /** Submission over implicit TLS (port 465, RFC 8314). Default: none. */
    listen_tls: v.optional(v.array(ListenAddress)),
  })),
  tls: v.optional(v.strictObject({
    /** PEM certificate chain, relative to the config directory. */
    cert: v.optional(Text("a file path")),
    /** PEM private key, relative to the config directory. */
    key: v.optional(Text("a file path")),
    /** Certificates from an ACME CA (RFC 8555), such as Let's Encrypt. Default: off. */
    acme: v.optional(AcmeSchema),
  })),
  aliases: v.optional(v.strictObject({
    /** Characters that start an ignored address suffix (`user+tag`). Default: "+". */
    suffix_separators: v.optional(v.string("must be a string of characters")),
    /** Characters removed from local parts before lookup (`first.last`). Default: ".". */
    drop_characters: v.optional(v.string("must be a string of characters")),
  })),
  delivery: v.optional(v.strictObject({
    /** Deliveries in progress at once. Default: 32. */
    concurrency: v.optional(Count(1)),
    /** First retry delay after a temporary failure. Default: 1m. */
    retry_initial: v.optional(Duration(QUEUE_SPAN)),
    /** Longest retry delay; delays double up to this. Default: 1h. */
    retry_max: v.optional(Duration(QUEUE_SPAN)),
    /** A message still undelivered after this long fails. Default: 5d. */
    max_queue_lifetime: v.optional(Duration(QUEUE_SPAN)),
    /** Time a pipe alias command may run. Default: 5m. */
    pipe_timeout: v.optional(Duration(TIMER)),
    /** Deliver local mailboxes over LMTP (RFC 2033) to this server instead of Maildirs. Default: none. */
    lmtp: v.optional(Endpoint),
  })),
  /** Delivery to other domains' MX hosts (or a smarthost), for authenticated submissions and remote aliases. */
  outbound: v.optional(v.strictObject({
    /** TCP port of MX hosts. Default: 25 (RFC 5321 section 4.5.4). Change only for tests. */
    port: v.optional(v.pipe(Count(1), v.maxValue(65535, "must be at most 65535"))),
    /** Outbound connections open at once, in total. Default: 100. */
    max_connections: v.optional(Count(1)),
    /** Connections at once to one destination domain (per virtual MTA). Default: 10. */
    max_connections_per_destination: v.optional(Count(1)),
    /** Messages sent over one connection before it is closed. Default: 100. */
    messages_per_connection: v.optional(Count(1)),
    /** How long an idle connection is kept for the next message to the same destination. Default: 5s. */
    connection_idle: v.optional(Duration(TIMER)),
    /** Time allowed to connect and receive the greeting. Default: 30s. */
    connect_timeout: v.optional(Duration(TIMER)),
    /** Inactivity allowed while a command or the message is sent. Default: 5m. */
    command_timeout: v.optional(Duration(TIMER)),
    /** Apply MTA-STS policies (RFC 8461) of destination domains. Default: true. */
    mta_sts: v.optional(v.boolean("must be true or false")),
    /** Sign mail of our domains with their DKIM keys (domains/<d>/dkim/). Default: true. */
    dkim_sign: v.optional(v.boolean("must be true or false")),
    /** How often DKIM records are looked up again (also on every reload); 0: only then. Default: 1h. */
    dkim_check_interval: v.optional(Duration(TIMER)),
    /** Send the sender a warning when a message is still queued after this long; 0 never. Default: 0. */
    delay_warning: v.optional(Duration(QUEUE_SPAN)),
    /** Header whose value is the message's SendID; removed before the message leaves. Default: X-SendID. */
    sendid_header: v.optional(Text("a header name")),
    /** Header whose value is the message's ListID; removed before the message leaves. Default: X-ListID. */
    listid_header: v.optional(Text("a header name")),
    /** Deliver everything through this relay instead of MX hosts. */
    smarthost: v.optional(v.strictObject({
      /** host:port of the relay. */
      address: ListenAddress,
      /** "starttls" (port 587) or "implicit" (port 465). Default: starttls. */
      tls: v.optional(v.picklist(["starttls", "implicit"], "must be starttls or implicit")),
      /** User name for AUTH; with it, password_file is required. */
      username: v.optional(Text("a user name")),
      /** File holding the password (first line), relative to the config directory. */
      password_file: v.optional(Text("a file path")),
      /** PEM CA certificates to verify the relay with, besides the system's. */
      ca_file: v.optional(Text("a file path")),
    })),
    /** Named outbound profiles; "default" is used when no route picks another. */
    virtual_mtas: v.optional(v.record(
      v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.\-]+$/, "must be a name of letters, digits, _ . -")),
      v.nullish(v.strictObject({
        /** Source address to bind outbound connections to. Default: the system's choice. */
        bind: v.optional(v.pipe(
          v.string("must be an IP address"),
          v.regex(/^[0-9.]+$|^[0-9a-fA-F:]+$/, "must be an IP address"),
        )),
        /** Name sent in EHLO. Default: hostname. */
        ehlo: v.optional(Text("a host name")),
        /** Overrides max_connections_per_destination for this profile. */
        max_connections_per_destination: v.optional(Count(1)),
      })),
    )),
    /** Rules picking a virtual MTA; the first that matches wins. */
    routes: v.optional(v.array(v.strictObject({
      /** Matches the envelope sender's domain. */
      sender_domain: v.optional(Text("a domain")),
      /** Matches the recipient's domain. */
      recipient_domain: v.optional(Text("a domain")),
      /** The virtual MTA to use. */
      mta: Text("a virtual MTA name"),
    }))),
  })),
  /** Local domains with per-domain settings, besides those in domains/. */
  domains: v.optional(v.record(
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9.\-\u0080-\uffff]+$/, "must be a domain name")),
    v.nullish(v.strictObject({
      /** Accept every local part, each into its own mailbox. Default: false. */
      any_user: v.optional(v.boolean("must be true or false")),
      /** How the domain's mailboxes are delivered. */
      delivery: v.optional(v.strictObject({
        /** LMTP server for this domain, or "off" for Maildirs. Default: delivery.lmtp. */
        lmtp: v.optional(v.union(
          [v.literal("off"), Endpoint],
          'must be "unix:/path/to/socket", an address such as "127.0.0.1:24", or "off"',
        )),
      })),
      /** Publish an MTA-STS policy for the domain (needs tls.acme). Default: none. */
      mta_sts: v.optional(MtaStsSchema),
      /** DKIM signing of the domain's mail. */
      dkim: v.optional(v.strictObject({
        /**
         * The selector that signs, whatever DNS says. Default: the newest key
         * (by file date) whose record is published.
         */
        selector: v.optional(v.pipe(
          v.string("must be a selector"),
          v.regex(/^[A-Za-z0-9][A-Za-z0-9.\-]*$/, "must be a selector (letters, digits, . -)"),
        )),
      })),
    })),
  )),
  dns: v.optional(v.strictObject({
    /** Resolvers to ask, "host:port" ("[v6]:port"); empty means the system's. Default: []. */
    servers: v.optional(v.array(DnsServer)),
    /** Time allowed for one lookup. Default: 5s. */
    timeout: v.optional(Duration(TIMER)),
  })),
  auth: v.optional(v.strictObject({
    /** Clients whose mail is not SPF-checked. Default: ["127.0.0.0/8", "::1/128"]. */
    trusted_networks: v.optional(v.array(v.string("each network must be text"))),
    /** SPF at MAIL FROM (RFC 7208) and what each result does. */
    spf: v.optional(v.strictObject({
      /** Check SPF at all. Default: true. */
      enabled: v.optional(v.boolean("must be true or false")),
      /** Default: accept. */
      pass: SpfActionSchema,
      /** Default: reject (550 5.7.23). */
      fail: SpfActionSchema,
      /** Default: accept. */
      softfail: SpfActionSchema,
      /** Default: accept. */
      neutral: SpfActionSchema,
      /** Default: accept. */
      none: SpfActionSchema,
      /** Default: defer (451 4.4.3). */
      temperror: SpfActionSchema,
      /** Default: accept. */
      permerror: SpfActionSchema,
      /** Results rejected when the sender claims one of our domains. Default: [fail, softfail]. */
      local_domain_reject: v.optional(
        v.array(v.picklist(SPF_RESULTS, `each entry must be one of ${SPF_RESULTS.join(", ")}`)),
      ),
    })),
    /** DKIM, ARC and DMARC checks after DATA, in Authentication-Results. Default: true. */
    verify: v.optional(v.boolean("must be true or false")),
    /** Refuse (550 5.7.1) mail that fails DMARC for a domain with p=reject. Default: true. */
    dmarc_reject: v.optional(v.boolean("must be true or false")),
    /** Dovecot's auth-client socket: submission logins are checked there, not in users files. */
    dovecot: v.optional(Endpoint),
    /** Dovecot's auth-userdb socket: RCPT checks for LMTP domains ask its userdb. */
    dovecot_userdb: v.optional(Endpoint),
  })),
  rate_limits: v.optional(v.strictObject({
    /** New connections from one client address (IPv6: its /64) per minute; 0: no limit. Default: 60. */
    connections_per_ip_per_minute: v.optional(Count(0)),
    /** Messages (MAIL FROM) from one client address per hour; 0: no limit. Default: 1000. */
    messages_per_ip_per_hour: v.optional(Count(0)),
    /** Messages (MAIL FROM) from one authenticated user per hour; 0: no limit. Default: 1000. */
    messages_per_user_per_hour: v.optional(Count(0)),
    /** Failed AUTH attempts from one client address per hour; 0: no limit. Default: 10. */
    failed_logins_per_ip_per_hour: v.optional(Count(0)),
  })),
  hooks: v.optional(v.strictObject({
    /** The deno that runs TypeScript hooks. Default: $DENO_BIN, then deno on $PATH. */
    deno: v.optional(Text("a file path")),
    /** Run executable hooks, which no sandbox contains. Default: false. */
    allow_unsandboxed_exec: v.optional(v.boolean("must be true or false")),
    post_data: HookPointSchema,
    alias_resolve: HookPointSchema,
    alias_exists: HookPointSchema,
    pre_delivery_attempt: HookPointSchema,
  })),
  /** A fleet of nodes sharing rate limits and hook state through Redis or Valkey. Default: off. */
  cluster: v.optional(v.strictObject({
    /** The server: redis://host:port, rediss://host:port (TLS) or unix:/path/to/socket. */
    url: v.pipe(
      v.string('must be a URL such as "redis://127.0.0.1:6379"'),
      v.check((text) => {
        try {
          parseClusterUrl(text);
          return true;
        } catch {
          return false;
        }
      }, (issue) => {
        try {
          parseClusterUrl(String(issue.input));
        } catch (err) {
          return (err as Error).message;
        }
        return "must be a redis://, rediss:// or unix: URL";
      }),
    ),
    /** File whose first line is the server's password. Default: none. */
    password_file: v.optional(Text("a file path")),
    /** PEM file of the CAs a rediss:// server's certificate must chain to. Default: the system's. */
    tls_ca_file: v.optional(Text("a file path")),
    /** This node's name in the fleet. Default: hostname. */
    node_name: v.optional(
      v.pipe(
        Text("a node name"),
        v.regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1 to 64 letters, digits, dots, - or _"),
      ),
    ),
    /** Longest wait for one call before falling back to local counts. Default: 50ms. */
    timeout: v.optional(Duration(TIMER)),
    /** How often the node announces itself; it is gone after 3 missed. Default: 5s. */
    heartbeat: v.optional(Duration(TIMER)),
    /** Prefix of every key Postern uses (several fleets can share a server). Default: "postern:". */
    key_prefix: v.optional(
      v.pipe(
        v.string("must be text"),
        v.regex(/^[A-Za-z0-9:._-]{0,64}$/, "must be at most 64 letters, digits, :, ., - or _"),
      ),
    ),
  })),
  admin: v.optional(v.strictObject({
    /** Address of the admin HTTP API; keep it on loopback. "off" disables it. Default: "127.0.0.1:2526". */
    listen: v.optional(
      v.union(
        [v.literal("off"), ListenAddress],
        'must be an address such as "127.0.0.1:2526", or "off"',
      ),
    ),
    /** The bearer token's file, generated (mode 0600) if missing. Default: <data_dir>/admin.token. */
    token_file: v.optional(Text("a file path")),
  })),
  log: v.optional(v.strictObject({
    /** Application log level. Default: info. */
    level: v.optional(v.picklist(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`)),
    /** File the mail log is appended to (reopened on SIGHUP, for logrotate). Default: stdout. */
    mail_file: v.optional(Text("a file path")),
  })),
});

/** The parsed main configuration file, before defaults are applied. */
export type ConfigFile = v.InferOutput<typeof ConfigFileSchema>;
