/**
 * The descriptor budget: how many descriptors (sockets, files, pipes) the
 * configuration may need at once, against the process's limit
 * (RLIMIT_NOFILE), and `smtp.max_connections` lowered to what fits.
 *
 * Running out of descriptors (EMFILE) fails whatever needs one next: a spool
 * file, a delivery, a DNS query, a hook's pipes, an accept. So, as Postfix's
 * queue manager does with a setting larger than another allows ("X is
 * larger than Y - adjusting X"), Postern warns and lowers the setting rather
 * than refusing to start: an MTA that will not start in a container with a
 * 1024 limit and its default settings would surprise more than one taking
 * fewer sessions at once. SMTP sessions are what strangers can open, so
 * they are what gives way; the other parts are bounded by settings that
 * only the operator's own traffic reaches.
 *
 * The figures are upper bounds of what each part holds at once (measured
 * on Deno 2.9.6 and Bun 1.4.5: an idle session holds 1 descriptor, one in
 * DATA 2, a module hook worker 6 on Deno and 6 on Bun).
 *
 * @module
 */

import type { Config } from "./types.ts";

/** What each part can hold at once, in descriptors. */
export const DESCRIPTOR_COSTS = {
  /**
   * An SMTP session: its socket, the spool file its message is written to,
   * and a DNS query in flight (SPF, DKIM, DMARC: a UDP socket each).
   */
  smtpSession: 3,
  /**
   * More per session when executable hooks may run (a post-data or alias
   * hook process: its three pipes and its process handle).
   */
  execHook: 4,
  /**
   * A delivery attempt (`delivery.concurrency`): the message's spool file,
   * the Maildir file or LMTP socket it goes to, the directory synced, a DNS
   * query.
   */
  delivery: 4,
  /** An outbound SMTP connection (`outbound.max_connections`). */
  outboundConnection: 1,
  /** A module hook worker: three pipes, its channel and its process handle. */
  hookWorker: 6,
  /** The admin API: its listener and at most 32 connections (src/http/http1_server.ts). */
  admin: 33,
  /**
   * An ACME server: the http-01 challenge server's listener and at most 256
   * connections (src/tls/acme_service.ts); the HTTPS server (MTA-STS
   * policies, or tls-alpn-01 and the policies) has the same cap.
   */
  acmeServer: 257,
  /** A listener (SMTP, submission). */
  listener: 1,
  /**
   * The spool's spare message files, open and ready (`SPARE_TARGET` in
   * src/queue/spare_files.ts: the ready ones and the batch being made
   * never pass it). Those held by transactions are the sessions' spool
   * files, counted above.
   */
  spareFiles: 16,
  /**
   * The server's own beyond what is open at start: log files, the spool
   * directory, the configuration watcher, the cluster link, Dovecot's
   * sockets, TLS files being read.
   */
  reserve: 64,
} as const;

/**
 * The fewest SMTP sessions the cap leaves, however low the limit: fewer
 * would be a refusal of all mail by another name; the warning then names
 * the other settings to lower.
 */
export const MIN_SMTP_CONNECTIONS = 10;

/** What the configuration may need at once, in descriptors, part by part. */
export interface DescriptorNeeds {
  /** Descriptors per SMTP session. */
  perSession: number;
  /** All SMTP sessions: `smtp.max_connections` × `perSession`. */
  smtp: number;
  /** Delivery attempts and outbound connections. */
  delivery: number;
  /** Module hook workers of every hook point. */
  hooks: number;
  /** The admin API and the ACME servers. */
  http: number;
  /** Open at start, the listeners, the spare files and the reserve. */
  fixed: number;
  /** The sum of the above. */
  total: number;
}

/**
 * What `config` may need at once; `openAtStart` is what the process held
 * before it started serving (the runtime's own, inherited descriptors).
 */
export function descriptorNeeds(config: Config, openAtStart: number): DescriptorNeeds {
  const c = DESCRIPTOR_COSTS;
  const perSession = c.smtpSession + (config.hooks.allowUnsandboxedExec ? c.execHook : 0);
  const smtp = config.smtp.maxConnections * perSession;
  const delivery = config.delivery.concurrency * c.delivery +
    config.outbound.maxConnections * c.outboundConnection;
  const hooks = Object.values(config.hooks.points)
    .reduce((sum, point) => sum + point.workers * c.hookWorker, 0);
  const acme = config.acme;
  const httpsServer = acme !== undefined &&
    (acme.challenge === "tls-alpn-01" ||
      [...config.domains.values()].some((d) => d.mtaSts !== undefined));
  const http = (config.admin.listen === undefined ? 0 : c.admin) +
    (acme !== undefined && acme.renew && acme.challenge === "http-01" ? c.acmeServer : 0) +
    (httpsServer ? c.acmeServer : 0);
  const listeners = config.smtp.listen.length + config.submission.listen.length +
    config.submission.listenTls.length;
  const fixed = openAtStart + listeners * c.listener + c.spareFiles + c.reserve;
  return {
    perSession,
    smtp,
    delivery,
    hooks,
    http,
    fixed,
    total: smtp + delivery + hooks + http + fixed,
  };
}

/** `smtp.max_connections` against the descriptor limit. */
export interface DescriptorFit {
  /** The soft RLIMIT_NOFILE of the process. */
  limit: number;
  /** What the configuration may need at once, with `configured` sessions. */
  needed: number;
  /** `smtp.max_connections` as configured. */
  configured: number;
  /** The most sessions that fit (at least {@linkcode MIN_SMTP_CONNECTIONS}), or `configured`. */
  fits: number;
}

/** How `config`'s `smtp.max_connections` fits within `limit` descriptors. */
export function fitSmtpConnections(
  config: Config,
  limit: number,
  openAtStart: number,
): DescriptorFit {
  const needs = descriptorNeeds(config, openAtStart);
  const configured = config.smtp.maxConnections;
  if (needs.total <= limit) return { limit, needed: needs.total, configured, fits: configured };
  const room = Math.floor((limit - (needs.total - needs.smtp)) / needs.perSession);
  const fits = Math.min(configured, Math.max(room, MIN_SMTP_CONNECTIONS));
  return { limit, needed: needs.total, configured, fits };
}

/**
 * What an operator reads when the limit is short: both numbers, what was
 * lowered and how to fix it; undefined when the limit covers the need.
 */
export function descriptorWarning(fit: DescriptorFit, lowered: boolean): string | undefined {
  if (fit.needed <= fit.limit) return undefined;
  const action = !lowered || fit.fits === fit.configured
    ? `smtp.max_connections ${fit.configured} is kept`
    : `smtp.max_connections ${fit.configured} is lowered to ${fit.fits}`;
  return `the open file limit (${fit.limit}) is below the ${fit.needed} descriptors the ` +
    `configuration may need at once; ${action}. Raise the limit to ${fit.needed} or more ` +
    `(ulimit -n ${fit.needed} before starting, or LimitNOFILE=${fit.needed} in the systemd ` +
    `unit), or lower smtp.max_connections (or outbound.max_connections, delivery.concurrency, ` +
    `hooks.*.workers)`;
}

/** Options of {@linkcode SessionCap}. */
export interface SessionCapOptions {
  /** The soft RLIMIT_NOFILE; undefined when unknown (nothing is lowered then). */
  limit: number | undefined;
  /** Descriptors open before serving started. */
  openAtStart: number;
  /** Lower `smtp.max_connections` to what fits (false: only warn). */
  lower: boolean;
  /** Called when the limit is short, once per change of the figures. */
  report: (fit: DescriptorFit, effective: number, warning: string) => void;
}

/**
 * `smtp.max_connections` in force, for the configuration at start and after
 * each reload (which may change it, or the other settings).
 */
export class SessionCap {
  #options: SessionCapOptions;
  #reported = "";

  /** Creates the cap; see {@linkcode SessionCapOptions}. */
  constructor(options: SessionCapOptions) {
    this.#options = options;
  }

  /** The most SMTP sessions at once for `config`; reports a short limit. */
  maxConnections(config: Config): number {
    const { limit, openAtStart, lower, report } = this.#options;
    if (limit === undefined) return config.smtp.maxConnections;
    const fit = fitSmtpConnections(config, limit, openAtStart);
    const effective = lower ? fit.fits : fit.configured;
    const warning = descriptorWarning(fit, lower);
    const key = `${fit.needed}/${fit.configured}/${effective}`;
    // A reload that changes nothing that counts says nothing again.
    if (warning !== undefined && key !== this.#reported) report(fit, effective, warning);
    this.#reported = warning === undefined ? "" : key;
    return effective;
  }
}
