/**
 * Opening an outbound session: the hosts of a destination in preference
 * order, a few addresses of each, with the virtual MTA's address family,
 * and plain text again after a failed opportunistic STARTTLS.
 *
 * @module
 */

import type { Logger } from "../log/mod.ts";
import { type SmtpError, SmtpSession, type TlsMode } from "./client.ts";
import type { MailHost } from "./mx.ts";
import type { OutboundConfig, VirtualMta } from "./settings.ts";

/**
 * Addresses tried per attempt at most, as Postfix's smtp_mx_address_limit
 * (RFC 5321 section 5.1 allows a limit, and asks for at least two): a
 * domain with dozens of dead MX hosts cannot hold an attempt for dozens of
 * connect timeouts.
 */
const MAX_ADDRESSES = 5;

/**
 * Opens a session to the first host that answers, in preference order
 * (RFC 5321 section 5.1); each host's addresses in turn, at most
 * `MAX_ADDRESSES` of them. A failed opportunistic TLS handshake is
 * retried in plain text (RFC 7435 section 3).
 */
export async function openSession(
  hosts: MailHost[],
  mta: VirtualMta,
  config: OutboundConfig,
  tls: TlsMode,
  logger: Logger,
): Promise<{ session: SmtpSession } | { error: string }> {
  const errors: string[] = [];
  const auth = config.smarthost?.auth;
  let tried = 0;
  for (const host of hosts) {
    const addresses = mta.bind
      ? host.addresses.filter((a) => (a.family === 6) === mta.bind!.includes(":"))
      : host.addresses;
    for (const { address } of addresses) {
      if (tried++ === MAX_ADDRESSES) {
        errors.push(`(${MAX_ADDRESSES} addresses tried, the limit of an attempt)`);
        return { error: `could not reach any host: ${errors.join("; ")}` };
      }
      const base = {
        address,
        port: config.smarthost?.port ?? config.port,
        serverName: host.name,
        ehlo: mta.ehlo,
        bind: mta.bind,
        ca: config.smarthost?.ca,
        auth,
        connectTimeoutMs: config.connectTimeoutMs,
        commandTimeoutMs: config.commandTimeoutMs,
      };
      try {
        return { session: await SmtpSession.open({ ...base, tls }) };
      } catch (err) {
        let failure = err as SmtpError;
        // RFC 7435 section 3: a failed opportunistic handshake falls back
        // to plain text rather than not delivering: any failure after
        // STARTTLS was sent (a TLS alert, non-TLS bytes, a close), however
        // the TLS library words it. Never where TLS is required (MTA-STS
        // enforce, the smarthost): there the mode is not opportunistic.
        if (tls === "opportunistic" && failure.afterStarttls) {
          try {
            return { session: await SmtpSession.open({ ...base, tls: "none" }) };
          } catch (plain) {
            failure = plain as SmtpError;
          }
        }
        errors.push(`${host.name}[${address}]: ${failure.message}`);
        logger.debug("outbound connection failed", {
          host: host.name,
          address,
          error: failure.message,
        });
      }
    }
  }
  return { error: `could not reach any host: ${errors.join("; ") || "no usable address"}` };
}
