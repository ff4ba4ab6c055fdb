/**
 * The open file limit of a running server, lowered from outside. The
 * server fits `smtp.max_connections` to its limit at start (see
 * src/config/descriptor_budget.ts), so a test that must run it out of
 * descriptors through port 25 starts it under a generous limit and then
 * lowers the limit with prlimit(1) (util-linux): new descriptors past it
 * fail with EMFILE, as they would on a host whose limit the settings
 * outgrew.
 *
 * @module
 */

import { execFile } from "node:child_process";

/** A wrapper for `startServer` that starts Postern at its hard open file limit. */
export const AT_HARD_FILE_LIMIT: string[] = [
  "bash",
  "-c",
  'ulimit -n "$(ulimit -Hn)"; exec "$@"',
  "bash",
];

/** Sets the soft and hard open file limit of process `pid` to `limit`. */
export function lowerFileLimit(pid: number, limit: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      "prlimit",
      ["--pid", String(pid), `--nofile=${limit}:${limit}`],
      (err, _stdout, stderr) =>
        err ? reject(new Error(`prlimit: ${stderr || err.message}`)) : resolve(),
    );
  });
}
