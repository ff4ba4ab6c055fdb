/**
 * Settings that cannot change on a running server: the sockets it listens
 * on, the data directory its spool lives in, and the name it greets with
 * (which is also the authserv-id of the Authentication-Results fields it
 * writes, RFC 8601 section 2.5). A reload keeps their running values and
 * reports them, rather than applying half a change.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";

/** Restart-only settings, by their name in `postern.yaml`. */
const RESTART_ONLY: ReadonlyArray<{
  field: string;
  same: (a: Config, b: Config) => boolean;
  keep: (running: Config, next: Config) => Config;
}> = [
  {
    field: "smtp.listen",
    same: (a, b) => a.smtp.listen.join(" ") === b.smtp.listen.join(" "),
    keep: (running, next) => ({ ...next, smtp: { ...next.smtp, listen: running.smtp.listen } }),
  },
  {
    field: "submission",
    same: (a, b) => JSON.stringify(a.submission) === JSON.stringify(b.submission),
    keep: (running, next) => ({ ...next, submission: running.submission }),
  },
  {
    field: "data_dir",
    same: (a, b) => a.dataDir === b.dataDir,
    keep: (running, next) => ({ ...next, dataDir: running.dataDir }),
  },
  {
    field: "admin",
    same: (a, b) => JSON.stringify(a.admin) === JSON.stringify(b.admin),
    keep: (running, next) => ({ ...next, admin: running.admin }),
  },
  {
    field: "log.mail_file",
    same: (a, b) => a.log.mailFile === b.log.mailFile,
    keep: (running, next) => ({ ...next, log: { ...next.log, mailFile: running.log.mailFile } }),
  },
  {
    field: "cluster",
    same: (a, b) => JSON.stringify(a.cluster) === JSON.stringify(b.cluster),
    keep: (running, next) => ({ ...next, cluster: running.cluster }),
  },
  {
    // The ACME manager, its challenge and HTTPS servers start once; the
    // certificate's names follow hostname and the domains with mta_sts.
    field: "tls.acme",
    same: (a, b) => JSON.stringify(a.acme) === JSON.stringify(b.acme),
    keep: (running, next) => ({ ...next, acme: running.acme }),
  },
  {
    field: "hostname",
    same: (a, b) => a.hostname === b.hostname,
    keep: (running, next) => ({ ...next, hostname: running.hostname }),
  },
];

/**
 * Compares a newly loaded configuration with the running one. Returns the
 * restart-only fields that differ, and `next` with the running values of
 * those fields.
 */
export function restartOnlyChanges(
  running: Config,
  next: Config,
): { changed: string[]; config: Config } {
  const changed: string[] = [];
  let config = next;
  for (const setting of RESTART_ONLY) {
    if (setting.same(running, next)) continue;
    changed.push(setting.field);
    config = setting.keep(running, config);
  }
  return { changed, config };
}
