/**
 * The resolver: one DNS layer for SPF, DKIM, DMARC and MX lookups, with a
 * per-lookup deadline, a TTL-respecting cache, and failures mapped onto the
 * small vocabulary of `errors.ts`.
 *
 * Why not `node:dns`'s `Resolver`: with a custom `host:port` it works on
 * both runtimes, but Deno 2.9 reports NODATA, SERVFAIL and REFUSED all as
 * ENOTFOUND (a SERVFAIL would count as an SPF void lookup instead of a
 * temperror), and Bun 1.4 splits a TXT record's character-strings into
 * separate records (which breaks every DKIM key longer than 255 bytes),
 * reports NODATA as ENOTFOUND and ignores the `timeout` option. So queries
 * go out on our own UDP/TCP client (`transport.ts`), which also gives us the
 * TTL of every record type.
 *
 * @module
 */

import type { Answer, DecodedPacket, OptAnswer } from "dns-packet";
import { DnsError, type DnsErrorCode, isVoidLookup } from "./errors.ts";
import { TtlCache } from "./cache.ts";
import { formatServer, parseServer, type ServerAddress, systemServers } from "./servers.ts";
import { exchange, TransportError } from "./transport.ts";

/** Record types `resolve()` answers, the ones mailauth and delivery ask for. */
export type DnsRecordType = "A" | "AAAA" | "TXT" | "MX" | "PTR" | "CNAME" | "NS";

/** An MX record as mailauth (and `node:dns`) shape it. */
export interface MxRecord {
  /** Host name without the trailing dot; "" for a null MX (RFC 7505). */
  exchange: string;
  /** Preference: lower is tried first. */
  priority: number;
}

/** An address of a host. */
export interface HostAddress {
  /** The IP address. */
  address: string;
  /** 4 for an A record, 6 for AAAA. */
  family: 4 | 6;
}

/**
 * What `resolve()` returns, shaped like `node:dns` `resolve()`: TXT as one
 * array of character-strings per record, MX as `{exchange, priority}`, every
 * other type as strings (addresses or names without the trailing dot).
 */
export type DnsAnswer = string[] | string[][] | MxRecord[];

/** The shape of mailauth's `resolver` option. */
export type ResolveFunction = (name: string, rrtype: string) => Promise<DnsAnswer>;

/** Settings of a resolver. */
export interface DnsResolverOptions {
  /**
   * Servers as `host:port` or `[v6]:port` (port 53 when left out), tried in
   * order. Empty or absent: the system's servers.
   */
  servers?: readonly string[];
  /** Time allowed for one lookup, retries, TCP and CNAME chasing included. Default 5000. */
  timeoutMs?: number;
  /** Cached answers at most; 0 disables the cache. Default 10000. */
  cacheMaxEntries?: number;
  /** Upper bound on how long a positive answer is kept, in seconds. Default 86400. */
  maxTtlSeconds?: number;
  /** Upper bound on how long NXDOMAIN/NODATA is kept, in seconds. Default 300. */
  maxNegativeTtlSeconds?: number;
  /** How long a failed lookup (timeout, SERVFAIL…) is remembered, in ms. Default 5000. */
  failureTtlMs?: number;
  /**
   * The clock cached answers expire by, in milliseconds. Default `Date.now`;
   * tests pass their own. A lookup's deadline stays on real time: it races
   * real sockets.
   */
  now?: () => number;
}

/** A record of the answer section (OPT only ever appears in the additional one). */
type ResourceRecord = Exclude<Answer, OptAnswer>;

type Outcome = { ok: true; value: DnsAnswer } | { ok: false; code: DnsErrorCode };

const SUPPORTED = new Set<string>(["A", "AAAA", "TXT", "MX", "PTR", "CNAME", "NS"]);
const RCODE_NOERROR = 0;
const RCODE_FORMERR = 1;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;
const RCODE_REFUSED = 5;
/** CNAME hops followed before giving up on a chain (BIND and Unbound stop near here too). */
const MAX_CNAME_HOPS = 8;
const decoder = new TextDecoder();

/** A caching stub resolver. */
export class DnsResolver {
  #servers: ServerAddress[];
  #timeoutMs: number;
  #maxTtlMs: number;
  #maxNegativeTtlMs: number;
  #failureTtlMs: number;
  #cache: TtlCache<Outcome>;
  #inflight = new Map<string, Promise<Outcome>>();

  /** Creates a resolver; throws a TypeError for a server that is not `ip[:port]`. */
  constructor(options: DnsResolverOptions = {}) {
    const servers = options.servers ?? [];
    this.#servers = servers.length > 0 ? servers.map(parseServer) : systemServers();
    this.#timeoutMs = positive(options.timeoutMs, 5000);
    this.#maxTtlMs = positive(options.maxTtlSeconds, 86_400) * 1000;
    // RFC 2308 section 5 suggests up to a few hours; we keep misses briefly so
    // that a record published after a failed check is seen within minutes.
    this.#maxNegativeTtlMs = positive(options.maxNegativeTtlSeconds, 300) * 1000;
    this.#failureTtlMs = Math.max(0, options.failureTtlMs ?? 5000);
    this.#cache = new TtlCache(options.cacheMaxEntries ?? 10_000, options.now);
  }

  /** The servers queried, as `host:port`. */
  get servers(): string[] {
    return this.#servers.map(formatServer);
  }

  /**
   * Looks up `rrtype` records of `name`, in the shape mailauth's `resolver`
   * option expects; bound, so it can be passed as `resolver.resolve`.
   * Rejects with a DnsError: ENOTFOUND (NXDOMAIN), ENODATA (NODATA),
   * EBADNAME, or a temporary code (ETIMEOUT, ESERVFAIL, EREFUSED, ENOTIMP,
   * EBADRESP, ECONNREFUSED). Every call gets its own arrays and error
   * object: mailauth sorts MX lists and writes onto errors.
   */
  readonly resolve: ResolveFunction = async (name, rrtype) => {
    const type = rrtype.toUpperCase();
    if (!SUPPORTED.has(type)) throw new DnsError("ENOTIMP", name, rrtype);
    const normalized = normalizeName(name);
    if (normalized === undefined) throw new DnsError("EBADNAME", name, type);
    const key = `${type} ${normalized.toLowerCase()}`;
    let outcome = this.#cache.get(key);
    if (!outcome) {
      let pending = this.#inflight.get(key);
      if (!pending) {
        pending = this.#lookup(normalized, type as DnsRecordType, key)
          .finally(() => this.#inflight.delete(key));
        this.#inflight.set(key, pending);
      }
      outcome = await pending;
    }
    if (!outcome.ok) throw new DnsError(outcome.code, name, type);
    return copyAnswer(outcome.value);
  };

  /**
   * Milliseconds the cached answer (or non-existence) of `name`/`rrtype`
   * has left; 0 when nothing usable is cached. What is derived from the
   * answers may be kept no longer than this.
   */
  cachedTtlMs(name: string, rrtype: string): number {
    const normalized = normalizeName(name);
    if (normalized === undefined) return 0;
    const key = `${rrtype.toUpperCase()} ${normalized.toLowerCase()}`;
    return this.#cache.remainingMs(key) ?? 0;
  }

  /**
   * The MX records of `domain`, lowest preference first (ties keep the
   * server's order: RFC 5321 section 5.1 has the sender randomize them,
   * which `mailHosts` does on every attempt, not once per cached answer).
   * A null MX (RFC 7505) is one record with `exchange` "".
   */
  async mx(domain: string): Promise<MxRecord[]> {
    const records = await this.resolve(domain, "MX") as MxRecord[];
    return records.sort((a, b) => a.priority - b.priority);
  }

  /**
   * The IPv4 then IPv6 addresses of `host`. Rejects only when there are
   * none: with the temporary error if either lookup failed that way (an
   * address might exist), else ENOTFOUND or ENODATA.
   */
  async addresses(host: string): Promise<HostAddress[]> {
    const [v4, v6] = await Promise.allSettled([
      this.resolve(host, "A") as Promise<string[]>,
      this.resolve(host, "AAAA") as Promise<string[]>,
    ]);
    const found: HostAddress[] = [
      ...(v4.status === "fulfilled"
        ? v4.value.map((address) => ({ address, family: 4 as const }))
        : []),
      ...(v6.status === "fulfilled"
        ? v6.value.map((address) => ({ address, family: 6 as const }))
        : []),
    ];
    if (found.length > 0) return found;
    const errors = [v4, v6].flatMap((r) => r.status === "rejected" ? [r.reason] : []);
    const temporary = errors.find((err) => !isVoidLookup(err));
    if (temporary) throw temporary;
    const nxdomain = errors.find((err) => (err as DnsError).code === "ENOTFOUND");
    throw nxdomain ?? errors[0];
  }

  /** Forgets every cached answer. */
  clearCache(): void {
    this.#cache.clear();
  }

  async #lookup(name: string, type: DnsRecordType, key: string): Promise<Outcome> {
    const deadline = Date.now() + this.#timeoutMs;
    let target = name;
    let ttl = Infinity;
    for (let hop = 0; hop <= MAX_CNAME_HOPS; hop++) {
      let response: DecodedPacket;
      try {
        response = await this.#ask(target, type, deadline);
      } catch (err) {
        const code = err instanceof TransportError ? err.code : "EBADRESP";
        // RFC 9520 section 3: remember resolution failures briefly, so a dead
        // server is not asked the same question by every session at once.
        return this.#remember(key, { ok: false, code }, this.#failureTtlMs);
      }
      const answers = (response.answers ?? []).filter(isRecord);
      if ((response.flags! & 0xf) === RCODE_NXDOMAIN) {
        return this.#remember(key, { ok: false, code: "ENOTFOUND" }, this.#negativeTtl(response));
      }
      // Follow the CNAME chain inside the answer (RFC 1034 section 3.6.2).
      let owner = target;
      for (let link = 0; type !== "CNAME" && link <= MAX_CNAME_HOPS; link++) {
        const alias = answers.find((a) => a.type === "CNAME" && sameName(a.name, owner));
        if (!alias) break;
        ttl = Math.min(ttl, alias.ttl ?? 0);
        owner = String(alias.data);
      }
      const records = answers.filter((a) => a.type === type && sameName(a.name, owner));
      if (records.length > 0) {
        for (const record of records) ttl = Math.min(ttl, record.ttl ?? 0);
        const value = convert(type, records);
        return this.#remember(key, { ok: true, value }, Math.min(ttl * 1000, this.#maxTtlMs));
      }
      // RFC 2308 section 2.2: NOERROR without records of the type is NODATA;
      // after a CNAME, the SOA says the server spoke for the chain's end.
      if (owner === target || hasSoa(response)) {
        return this.#remember(key, { ok: false, code: "ENODATA" }, this.#negativeTtl(response));
      }
      // The chain ends at a name the server did not answer for; ask for it.
      target = owner;
    }
    return this.#remember(key, { ok: false, code: "ESERVFAIL" }, this.#failureTtlMs);
  }

  #remember(key: string, outcome: Outcome, ttlMs: number): Outcome {
    this.#cache.set(key, outcome, ttlMs);
    return outcome;
  }

  /**
   * How long to keep NXDOMAIN or NODATA: the smaller of the SOA record's TTL
   * and its MINIMUM field (RFC 2308 section 5), within our cap. Without an
   * SOA the answer is not cached, as that section asks.
   */
  #negativeTtl(response: DecodedPacket): number {
    const soa = (response.authorities ?? []).find((a) => a.type === "SOA");
    if (!soa || soa.type !== "SOA") return 0;
    return Math.min((soa.ttl ?? 0) * 1000, (soa.data.minimum ?? 0) * 1000, this.#maxNegativeTtlMs);
  }

  /**
   * Asks the servers in order; a server that timed out gets a second chance
   * once all have been tried. Returns a NOERROR or NXDOMAIN response; other
   * RCODEs move on to the next server.
   */
  async #ask(name: string, type: DnsRecordType, deadline: number): Promise<DecodedPacket> {
    const udpTimeoutMs = Math.max(1, Math.floor(this.#timeoutMs / (2 * this.#servers.length)));
    let failure: DnsErrorCode = "ETIMEOUT";
    const retry: ServerAddress[] = [];
    for (const round of [this.#servers, retry]) {
      for (const server of round) {
        if (Date.now() >= deadline) throw new TransportError("ETIMEOUT", "DNS lookup timed out");
        try {
          let response = await exchange(server, { name, type }, {
            udpTimeoutMs,
            deadline,
            edns: true,
          });
          // RFC 6891 section 7: a server without EDNS answers FORMERR; ask again without.
          if ((response.flags! & 0xf) === RCODE_FORMERR) {
            response = await exchange(server, { name, type }, {
              udpTimeoutMs,
              deadline,
              edns: false,
            });
          }
          const rcode = response.flags! & 0xf;
          if (rcode === RCODE_NOERROR || rcode === RCODE_NXDOMAIN) return response;
          failure = rcode === RCODE_SERVFAIL
            ? "ESERVFAIL"
            : rcode === RCODE_REFUSED
            ? "EREFUSED"
            : "ENOTIMP";
        } catch (err) {
          failure = err instanceof TransportError ? err.code : "EBADRESP";
          if (failure === "ETIMEOUT" && round !== retry) retry.push(server);
        }
      }
    }
    throw new TransportError(failure, `DNS lookup failed: ${failure}`);
  }
}

/**
 * The name without its trailing dot, or undefined when it cannot be a domain
 * name: empty labels, labels over 63 bytes, more than 253 bytes in all
 * (RFC 1035 section 2.3.4), or bytes outside printable ASCII.
 */
export function normalizeName(name: string): string | undefined {
  const bare = name.endsWith(".") ? name.slice(0, -1) : name;
  if (bare.length === 0 || bare.length > 253 || !/^[\x20-\x7e]+$/.test(bare)) return undefined;
  for (const label of bare.split(".")) {
    if (label.length === 0 || label.length > 63) return undefined;
  }
  return bare;
}

function convert(type: DnsRecordType, records: ResourceRecord[]): DnsAnswer {
  switch (type) {
    case "TXT":
      return records.map((r) => {
        const data = r.data as Uint8Array | string | Array<Uint8Array | string>;
        return (Array.isArray(data) ? data : [data]).map((chunk) =>
          typeof chunk === "string" ? chunk : decoder.decode(chunk)
        );
      });
    case "MX":
      return records.map((r) => {
        const data = r.data as { preference?: number; exchange: string };
        return { exchange: bareName(data.exchange), priority: data.preference ?? 0 };
      });
    case "A":
    case "AAAA":
      return records.map((r) => String(r.data));
    default:
      return records.map((r) => bareName(String(r.data)));
  }
}

function copyAnswer(value: DnsAnswer): DnsAnswer {
  return value.map((item) =>
    typeof item === "string" ? item : Array.isArray(item) ? item.slice() : { ...item }
  ) as DnsAnswer;
}

function isRecord(answer: Answer): answer is ResourceRecord {
  return answer.type !== "OPT";
}

function hasSoa(response: DecodedPacket): boolean {
  return (response.authorities ?? []).some((a) => a.type === "SOA");
}

function sameName(a: string, b: string): boolean {
  return bareName(a).toLowerCase() === bareName(b).toLowerCase();
}

function bareName(name: string): string {
  return name === "." ? "" : name.endsWith(".") ? name.slice(0, -1) : name;
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}
