/**
 * The embedded default configuration: what `postern serve` runs with when
 * no configuration directory (or no value in it) says otherwise.
 *
 * @module
 */

/** Defaults for every setting of `postern.yaml`, in resolved units. */
export const DEFAULTS = {
  dataDir: "./data",
  smtp: {
    listen: ["127.0.0.1:2525"],
    // Postfix's smtpd_greet_pause is off unless configured; a pause costs
    // every well-behaved client a round of waiting for no benefit.
    greetingDelayMs: 0,
    maxMessageSize: 50 * 1024 * 1024,
    // RFC 5321 section 4.5.3.1.8: at least 100 recipients must be accepted.
    maxRecipients: 100,
    maxConnections: 500,
    // Postfix's smtpd_client_connection_count_limit default. A client that
    // reconnects right after QUIT is briefly counted twice (the old socket's
    // close is seen a moment later), so the limit needs headroom.
    maxConnectionsPerIp: 50,
    // RFC 5321 section 4.5.3.2.7: the server timeout is at least 5 minutes.
    idleTimeoutMs: 5 * 60_000,
    // RFC 5321 section 4.5.3.2.6 gives a client 10 minutes for the DATA
    // transfer; one command line takes far less.
    commandTimeoutMs: 10 * 60_000,
    // RFC 5321 section 4.5.3.1.4 allows 512 octets, and extensions may add
    // to it (RFC 1869 section 4.1.2); leave room for SMTPUTF8 addresses.
    maxCommandLength: 2048,
    // queue_minfree: see defaultQueueMinfree.
    // Postfix's smtpd_min_data_rate: the DATA deadline is command_timeout
    // plus one second per 500 bytes received.
    minDataRate: 500,
    // Postfix's smtpd_hard_error_limit.
    hardErrorLimit: 20,
  },
  aliases: { suffixSeparators: "+", dropCharacters: "." },
  delivery: {
    // Attempts are asynchronous, so a slot is cheap; a remote destination
    // gets at most its connection limit of them (see serve.ts), so that one
    // slow destination leaves room for the others. Postfix runs up to 100
    // delivery agents (default_process_limit).
    concurrency: 32,
    retryInitialMs: 60_000,
    retryMaxMs: 3_600_000,
    maxQueueLifetimeMs: 5 * 86_400_000,
    pipeTimeoutMs: 5 * 60_000,
  },
  // A file written in place is truncated and filled a moment later; the
  // second look comes after this (src/policy/removals.ts).
  reload: { removalDelayMs: 300 },
  dns: { servers: [] as string[], timeoutMs: 5_000 },
  outbound: {
    // RFC 5321 section 4.5.4: the SMTP port.
    port: 25,
    maxConnections: 100,
    // Postfix's default_destination_concurrency_limit is 20; receivers
    // often throttle well below that from one client.
    maxConnectionsPerDestination: 10,
    // Postfix's smtp_connection_reuse_count_limit is unlimited by time
    // only; a count keeps one connection from living forever.
    messagesPerConnection: 100,
    // Postfix's smtp_connection_cache_time_limit is 2s.
    connectionIdleMs: 5_000,
    // RFC 5321 section 4.5.3.2.1 asks for 5 minutes for the greeting; a
    // shorter connect limit lets the next MX host be tried sooner.
    connectTimeoutMs: 30_000,
    // RFC 5321 section 4.5.3.2: 5 minutes for MAIL, RCPT and the data blocks.
    commandTimeoutMs: 5 * 60_000,
    mtaSts: true,
    dkimSign: true,
    // A new key's record is looked for at load and reload, then hourly.
    dkimCheckIntervalMs: 60 * 60_000,
    // Postfix's delay_warning_time is off by default too.
    delayWarningMs: 0,
    sendidHeader: "X-SendID",
    listidHeader: "X-ListID",
  },
  auth: {
    // Postfix's mynetworks_style=host: the machine itself is trusted.
    trustedNetworks: ["127.0.0.0/8", "::1/128"],
    spfEnabled: true,
    verify: true,
    dmarcReject: true,
  },
  // Trusted networks are exempt, as Postfix exempts $mynetworks
  // (smtpd_client_event_limit_exceptions). The limits are generous for a
  // real MTA talking to us and tight for a spam run or a password guesser.
  rateLimits: {
    connectionsPerIpPerMinute: 60,
    messagesPerIpPerHour: 1000,
    messagesPerUserPerHour: 1000,
    // Enough for a user who mistypes a few times; far too few to guess.
    failedLoginsPerIpPerHour: 10,
  },
  // Off unless configured. Redis on loopback answers in well under a
  // millisecond; 50 ms without an answer means it is down or overloaded,
  // and the node counts locally rather than hold up a client.
  cluster: { timeoutMs: 50, heartbeatMs: 5_000, keyPrefix: "postern:" },
  // Off unless configured: the usual ports are 587 and 465.
  submission: { listen: [] as string[], listenTls: [] as string[] },
  hooks: {
    // chasquid's hook reference: 1 minute for post-data, 5 seconds for the
    // alias hooks.
    timeoutMs: {
      "post-data": 60_000,
      "alias-resolve": 5_000,
      "alias-exists": 5_000,
      // GreenArrow's hook "must return very quickly": it runs for every
      // delivery attempt, one at a time.
      "pre-delivery-attempt": 5_000,
    },
    // One worker, so one module state, as GreenArrow's reference has it.
    workers: 1,
    maxMemoryBytes: 256 * 1024 * 1024,
    // A hook's output in the log, per worker and second: the first lines of
    // a flood, then a note (see src/hooks/output_budget.ts).
    outputLinesPerSecond: 200,
    outputBytesPerSecond: 64 * 1024,
  },
  acme: {
    // Let's Encrypt; its staging directory, for trials, is
    // https://acme-staging-v02.api.letsencrypt.org/directory
    directoryUrl: "https://acme-v02.api.letsencrypt.org/directory",
    challenge: "http-01" as const,
    // RFC 8555 section 8.3: HTTP-01 is validated on port 80; RFC 8737
    // section 3: TLS-ALPN-01 on 443, where MTA-STS policies are served too.
    httpListen: "0.0.0.0:80",
    httpsListen: "0.0.0.0:443",
    retryInitialMs: 60_000,
  },
  // RFC 8461 section 3.2: max_age up to 31557600; a week lets a change of
  // MX hosts reach senders' caches in reasonable time.
  mtaStsMaxAgeSeconds: 7 * 86_400,
  // Loopback only: the API can steer the queue. Next to the SMTP default.
  admin: { listen: "127.0.0.1:2526", tokenFileName: "admin.token" },
  /** Used only when no domain is configured anywhere. */
  domains: { localhost: { anyUser: true } },
  log: { level: "info" as const },
} as const;

/** Name of the main configuration file in the configuration directory. */
export const CONFIG_FILE_NAME = "postern.yaml";

/**
 * The default of `smtp.queue_minfree` for a message size limit. Postfix
 * refuses MAIL FROM with less than 1.5 × message_size_limit free (its
 * queue_minfree rule): room for a full-size message besides those already
 * being received, whose size is not known in advance. The 100 MiB floor
 * keeps room for state files, logs and Maildir copies (each delivered
 * message is stored twice until the spool copy goes) when the limit is small.
 */
export function defaultQueueMinfree(maxMessageSize: number): number {
  return Math.max(Math.ceil(1.5 * maxMessageSize), 100 * 1024 * 1024);
}
