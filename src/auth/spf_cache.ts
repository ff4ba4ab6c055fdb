/**
 * SPF verdicts remembered for as long as the DNS answers they were built
 * from. A sender that sends many messages in a row from one host (a
 * mailing list run, a burst of notifications) is evaluated once: every
 * later check of the same sender, client address and HELO name, with the
 * same DNS answers, must give the same result (RFC 7208 section 4), so it
 * is taken from here while all those answers are still cached.
 *
 * @module
 */

import { type ResolveFunction, TtlCache } from "../dns/mod.ts";
import { checkSpf, type SpfCheckOptions, type SpfResult, type SpfVerdict } from "./spf.ts";

/** Results worth keeping: those that depend on DNS answers only, not on a DNS failure. */
const CACHEABLE: ReadonlySet<SpfResult> = new Set([
  "pass",
  "fail",
  "softfail",
  "neutral",
  "none",
  "permerror",
]);

/** Options of {@linkcode SpfVerdictCache}. */
export interface SpfVerdictCacheOptions {
  /**
   * Milliseconds the resolver's cached answer for a name and type has left
   * (0 when none): `dnsResolver.cachedTtlMs`.
   */
  ttlOf: (name: string, rrtype: string) => number;
  /** Verdicts kept at most. Default: 10000. */
  maxEntries?: number;
  /** Longest a verdict is kept, whatever the TTLs. Default: 60 s. */
  maxTtlMs?: number;
  /** The clock, in milliseconds. */
  now?: () => number;
}

/** {@linkcode checkSpf} with the verdicts remembered. */
export class SpfVerdictCache {
  #options: SpfVerdictCacheOptions;
  #verdicts: TtlCache<SpfVerdict>;

  /** Creates an empty cache. */
  constructor(options: SpfVerdictCacheOptions) {
    this.#options = options;
    this.#verdicts = new TtlCache(options.maxEntries ?? 10_000, options.now);
  }

  /** Verdicts held. */
  get size(): number {
    return this.#verdicts.size;
  }

  /**
   * The verdict for `options`: a remembered one while every DNS answer it
   * was built from is still cached, else a fresh check.
   */
  async check(options: SpfCheckOptions): Promise<SpfVerdict> {
    // The sender as given: macros may expand its local part (%{l}, %{s}).
    const key = `${options.ip} ${options.helo.toLowerCase()} ${options.sender}`;
    const remembered = this.#verdicts.get(key);
    if (remembered) return remembered;
    const consulted: Array<[string, string]> = [];
    const resolver: ResolveFunction = (name, rrtype) => {
      consulted.push([name, rrtype]);
      return options.resolver(name, rrtype);
    };
    const verdict = await checkSpf({ ...options, resolver });
    if (CACHEABLE.has(verdict.result)) {
      let ttl = this.#options.maxTtlMs ?? 60_000;
      for (const [name, rrtype] of consulted) {
        ttl = Math.min(ttl, this.#options.ttlOf(name, rrtype));
      }
      this.#verdicts.set(key, verdict, ttl);
    }
    return verdict;
  }
}
