/**
 * The addresses a server reports in its `event=listening` mail log lines,
 * for tests whose configuration asks for port 0 on several listeners (the
 * kernel picks free ports, so nothing can clash; the log says which).
 *
 * Postern logs one line per listener, in the order it starts them: the
 * `smtp.listen` (or `--listen`) addresses first, then `submission.listen`,
 * then `submission.listen_tls`.
 *
 * @module
 */

import { eventually, type Server } from "../e2e/harness.ts";

/** Waits for `count` listening lines; returns their `addr=` values in order. */
export async function listenAddresses(server: Server, count: number): Promise<string[]> {
  return await eventually(
    () => {
      const addresses = server.mailLog
        .filter((l) => /\bevent=listening\b/.test(l))
        .map((l) => /\baddr=(\S+)/.exec(l)?.[1] ?? "");
      return Promise.resolve(addresses.length >= count ? addresses : undefined);
    },
    15_000,
    `${count} event=listening lines; stderr:\n${server.stderr()}`,
  );
}

/** The port of a `host:port` or `[v6]:port` address. */
export function portOf(address: string): number {
  const port = Number(/:(\d+)$/.exec(address)?.[1]);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no port in "${address}"`);
  return port;
}
