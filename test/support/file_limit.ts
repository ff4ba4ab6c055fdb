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

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import type { Socket } from "node:net";

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

/**
 * Runs the server `pid` out of descriptors: lowers its limit to `limit`,
 * then opens `limit + 100` connections with `connect`, until the server
 * holds every descriptor it may (the connections beyond wait in its listen
 * queue, and accepting them fails with EMFILE). Checks it holds no more
 * than that: descriptors numbered past the limit, opened before it (the
 * runtime's own), stay, and no new one can be. Returns the connections,
 * for the caller to close.
 */
export async function exhaustDescriptors(
  pid: number,
  limit: number,
  connect: () => Promise<Socket>,
): Promise<Socket[]> {
  await lowerFileLimit(pid, limit);
  const fds = `/proc/${pid}/fd`;
  const above = (await readdir(fds)).filter((fd) => Number(fd) >= limit).length;
  const sockets: Socket[] = [];
  try {
    for (let i = 0; i < limit + 100; i++) sockets.push(await connect());
    // A bound on the wait (20 s), not a measurement.
    let held = 0;
    for (let waited = 0; waited <= 20_000; waited += 50) {
      held = (await readdir(fds)).length;
      if (held >= limit + above) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(held >= limit + above, `the server holds ${held} descriptors, not its last`);
    assert.ok((await readdir(fds)).length <= limit + above, "the lowered limit did not hold");
    return sockets;
  } catch (err) {
    for (const socket of sockets) socket.destroy();
    throw err;
  }
}
