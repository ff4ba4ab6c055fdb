/**
 * DNS for Postern: one caching resolver shared by SPF, DKIM and DMARC
 * (through mailauth's `resolver` option) and by outbound delivery (MX and
 * address lookups). It talks to the system's servers or to configured
 * `host:port` servers over UDP, with TCP for truncated answers.
 *
 * @example Looking up records
 * ```ts ignore
 * import { DnsResolver } from "./mod.ts";
 *
 * const resolver = new DnsResolver({ servers: ["127.0.0.1:5353"], timeoutMs: 2000 });
 * const txt = await resolver.resolve("example.org", "TXT"); // [["v=spf1 ", "-all"]]
 * const mx = await resolver.mx("example.org"); // [{ exchange: "mx.example.org", priority: 10 }]
 * ```
 *
 * @module
 */

export { DnsError, type DnsErrorCode, isTemporaryDnsError, isVoidLookup } from "./errors.ts";
export {
  type DnsAnswer,
  type DnsRecordType,
  DnsResolver,
  type DnsResolverOptions,
  type HostAddress,
  type MxRecord,
  normalizeName,
  type ResolveFunction,
} from "./resolver.ts";
export { formatServer, parseServer, type ServerAddress } from "./servers.ts";
export { TtlCache } from "./cache.ts";
