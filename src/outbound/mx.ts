/**
 * Where mail for a domain goes: its MX hosts in preference order, each
 * with its addresses, or the domain itself when it has no MX records.
 *
 * @module
 */

import { isIPv6 } from "node:net";
import {
  DnsError,
  type DnsResolver,
  type HostAddress,
  isVoidLookup,
  type MxRecord,
} from "../dns/mod.ts";

/** One host to try, with its addresses (IPv4 first, as the resolver gives them). */
export interface MailHost {
  /** The host name (for TLS server names, MTA-STS and logs). */
  name: string;
  preference: number;
  addresses: HostAddress[];
}

/** Mail for a domain cannot be routed; `permanent` says whether retrying can help. */
export class RoutingError extends Error {
  /** True when no retry can succeed (null MX, no such domain). */
  readonly permanent: boolean;
  /** Enhanced status code (RFC 3463) for the bounce or the log. */
  readonly status: string;

  /** Creates the error. */
  constructor(message: string, permanent: boolean, status: string) {
    super(message);
    this.name = "RoutingError";
    this.permanent = permanent;
    this.status = status;
  }
}

/**
 * The most MX hosts of a domain that an attempt considers, in order of
 * preference (ties shuffled): far more than any real domain lists.
 */
export const MAX_MX_HOSTS = 100;

/** How many hosts' addresses are looked up at once. */
export const MX_LOOKUPS_AT_ONCE = 10;

/**
 * The hosts that receive mail for `domain`.
 *
 * - RFC 5321 section 5.1: MX records in preference order; with none, the
 *   domain's own A/AAAA records act as an implicit MX of preference 0.
 *   Hosts of equal preference come in a random order, drawn anew on every
 *   call (every attempt), since that section says the sender MUST
 *   randomize them to spread the load; the resolver's cached answer keeps
 *   the server's order.
 * - RFC 7505 section 3: a null MX (one record, "." exchange) means the
 *   domain accepts no mail: a permanent failure (5.1.10).
 * - A name that does not exist is permanent (5.1.2); any other lookup
 *   failure is temporary, since the records may be there.
 *
 * Hosts whose addresses cannot be found are left out, unless every host
 * fails that way (then the first temporary error, or a temporary 4.4.4).
 *
 * @param random A source of numbers in [0, 1), for the order of equal
 * preferences; tests pass their own.
 * @throws {RoutingError} when no host can be found.
 */
export async function mailHosts(
  resolver: DnsResolver,
  domain: string,
  random: () => number = Math.random,
): Promise<MailHost[]> {
  let records: MxRecord[];
  try {
    records = await resolver.mx(domain);
  } catch (err) {
    if (err instanceof DnsError && err.code === "ENOTFOUND") {
      throw new RoutingError(`${domain}: no such domain`, true, "5.1.2");
    }
    if (!isVoidLookup(err)) throw temporary(domain, err);
    records = [];
  }
  if (records.some((r) => r.exchange === "" || r.exchange === ".")) {
    throw new RoutingError(`${domain} accepts no mail (null MX, RFC 7505)`, true, "5.1.10");
  }
  const named = records.length > 0
    ? shuffleTies(
      records.map((r) => ({ name: r.exchange.toLowerCase(), preference: r.priority }))
        .sort((a, b) => a.preference - b.preference),
      random,
    )
    : [{ name: domain, preference: 0 }];

  // Looked up all at once, the hosts of a domain with 1500 MX records had
  // one attempt send 3000 queries, each on a socket of its own, and run
  // Postern out of descriptors. A few at a time, in preference order, and
  // no more hosts than any real domain lists.
  named.splice(MAX_MX_HOSTS);
  const results: PromiseSettledResult<MailHost["addresses"]>[] = [];
  for (let start = 0; start < named.length; start += MX_LOOKUPS_AT_ONCE) {
    const batch = named.slice(start, start + MX_LOOKUPS_AT_ONCE);
    results.push(...await Promise.allSettled(batch.map((host) => resolver.addresses(host.name))));
  }
  const hosts: MailHost[] = [];
  let firstTemporary: unknown;
  for (const [index, result] of results.entries()) {
    if (result.status === "fulfilled") {
      hosts.push({ ...named[index]!, addresses: result.value });
    } else if (!isVoidLookup(result.reason)) {
      firstTemporary ??= result.reason;
    }
  }
  if (hosts.length > 0) return hosts;
  if (firstTemporary !== undefined) throw temporary(domain, firstTemporary);
  if (records.length === 0) {
    throw new RoutingError(`${domain} has no MX and no address records`, true, "5.1.2");
  }
  throw new RoutingError(
    `no address found for the MX hosts of ${domain} (${named.map((h) => h.name).join(", ")})`,
    false,
    "4.4.4",
  );
}

/**
 * Shuffles each run of equal preference in `hosts` (sorted by preference)
 * in place, Fisher-Yates within the run; returns `hosts`.
 */
function shuffleTies<T extends { preference: number }>(hosts: T[], random: () => number): T[] {
  for (let start = 0; start < hosts.length;) {
    let end = start + 1;
    while (end < hosts.length && hosts[end]!.preference === hosts[start]!.preference) end++;
    for (let i = end - 1; i > start; i--) {
      const j = start + Math.min(i - start, Math.floor(random() * (i - start + 1)));
      [hosts[i], hosts[j]] = [hosts[j]!, hosts[i]!];
    }
    start = end;
  }
  return hosts;
}

function temporary(domain: string, err: unknown): RoutingError {
  const why = err instanceof Error ? err.message : String(err);
  return new RoutingError(`DNS lookup for ${domain} failed: ${why}`, false, "4.4.3");
}

/**
 * The smarthost `host` (a name, or an IPv4 or IPv6 address) as the one
 * host of an attempt. An IPv6 literal is of family 6: counted as 4, a
 * virtual MTA bound to an IPv6 address never dialled it. A name goes to
 * the client as it is, resolved by the system as the relay's operator
 * expects (an /etc/hosts entry, say), and counts as IPv4.
 */
export function relayHost(host: string): MailHost {
  return {
    name: host,
    preference: 0,
    addresses: [{ address: host, family: isIPv6(host) ? 6 : 4 }],
  };
}
