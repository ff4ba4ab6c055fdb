/**
 * The valibot schema of the main configuration file, `postern.yaml`. Every
 * field is optional; `defaults.ts` holds the value a missing field takes.
 * Unknown keys are errors, so a misspelt setting never passes silently.
 * The larger sections have files of their own: `hooks_schema.ts`,
 * `outbound_schema.ts` and `cluster_schema.ts`.
 *
 * @module
 */

import * as v from "valibot";
import { LOG_LEVELS } from "../log/mod.ts";
import { ClusterSchema } from "./cluster_schema.ts";
import {
  Count,
  DnsServer,
  Duration,
  Endpoint,
  ListenAddress,
  MTA_STS_MAX_AGE,
  Names,
  QUEUE_SPAN,
  REMOVAL_DELAY,
  Size,
  Text,
  TIMER,
} from "./fields.ts";
import { HooksSchema } from "./hooks_schema.ts";
import { OutboundSchema } from "./outbound_schema.ts";

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
  outbound: v.optional(OutboundSchema),
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
  reload: v.optional(v.strictObject({
    /**
     * How long a reload that drops recipients waits for a second look before
     * they go (a file written in place is empty for a moment). Default: 300ms.
     */
    removal_delay: v.optional(Duration(REMOVAL_DELAY)),
  })),
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
  hooks: v.optional(HooksSchema),
  /** A fleet of nodes sharing rate limits and hook state through Redis or Valkey. Default: off. */
  cluster: v.optional(ClusterSchema),
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
