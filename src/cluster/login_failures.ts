/**
 * Failed logins counted across the fleet, in the shared server, with the
 * attempts being checked on every node counted as failures until their
 * outcome is known.
 *
 * A node on its own counts an attempt as a failure from its start (see
 * `src/smtp/login.ts`); a fleet must do the same across its nodes, or a
 * client that sends its guesses to N nodes at the same moment gets N times
 * the limit of password checks: each node would see only its own attempts
 * in flight, and the failures of the others' only once they are finished.
 * So each attempt takes a place in the server, in the same Lua script that
 * reads the failures (one round trip, atomic across the nodes), and gives it
 * back, counting its failure if it failed, in a second one:
 *
 * - KEYS[1], `login-failures:<client>`: the failures, a sorted set of ids
 *   scored by the time each failed (on the server's clock, TIME, so that
 *   the nodes' clocks need not agree). It is an exact sliding log, as on a
 *   node (`src/smtp/sliding_log.ts`), not the estimate from two fixed
 *   windows of the other limits (`rate_limits.ts`), which let a burst
 *   through at a window's edge: failures older than the window are dropped
 *   at each step, only the newest `limit` are kept (they alone decide), and
 *   the key expires a window after its last failure;
 * - KEYS[2], `login-checks:<client>`: the places, a sorted set of random
 *   ids scored by the time each expires. A node that dies (or loses the
 *   server) mid-check cannot give its places back; each expires on its own
 *   after `PLACE_MS`, however many attempts come after it (a counter with
 *   a TTL would be kept alive by them).
 *
 * The failures were once a hash of fixed windows under `rate:login:<client>`;
 * the new key has a new name, as a sorted set under the old one would break
 * the scripts of nodes not yet upgraded. While a fleet is being upgraded,
 * old and new nodes thus count failures apart (the places they share).
 *
 * A login costs one round trip more than before on success (the place is
 * given back), none more on failure (giving it back counts the failure).
 *
 * When the server is unreachable or slow, the node falls back to its own
 * counts, failures and attempts in flight, kept up to date all the while:
 * the same fail-open policy as the other limits (`rate_limits.ts`), so a
 * client gets at most each node's limit from each node for a while, rather
 * than nobody logging in because a counter store is down.
 *
 * @module
 */

import type { Redis } from "ioredis";
import type { Counters } from "../log/mod.ts";
import {
  type FailureCounter,
  KEEP_WITHOUT_LIMIT,
  LocalFailures,
  type LoginTicket,
} from "../smtp/login.ts";
import type { ClusterLink } from "./client.ts";
import { ClusterUnavailable } from "./unavailable.ts";

/** Lua that sets `now`, the server's clock in ms (TIME), so that the nodes' clocks need not agree. */
const LUA_NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * KEYS[1]: the failures; KEYS[2]: the places. ARGV[1]: the window in ms;
 * ARGV[2]: the limit; ARGV[3]: how long the place lasts, in ms; ARGV[4]:
 * its id. Takes a place unless the failures within the window and the
 * places reach the limit: 1 taken, 0 not. A failure leaves the window once
 * it is a window old (the same bound as `sliding_log.ts`).
 */
const RESERVE_SCRIPT = LUA_NOW + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - tonumber(ARGV[1])))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now))
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
local lasts = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], string.format('%d', now + lasts), ARGV[4])
redis.call('PEXPIRE', KEYS[2], lasts)
return 1
`;

/**
 * KEYS and ARGV[1] as {@linkcode RESERVE_SCRIPT}. ARGV[2]: "1" counts a
 * failure, as ARGV[4] (a unique id), keeping the newest ARGV[5] of them;
 * ARGV[3]: the id of the place to give back ("" for none). The failure is
 * counted before the place is freed, in the same step.
 */
const SETTLE_SCRIPT = `
if ARGV[2] == '1' then
` + LUA_NOW + `
  local w = tonumber(ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - w))
  redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[4])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -1 - tonumber(ARGV[5]))
  redis.call('PEXPIRE', KEYS[1], w)
end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
return 1
`;

const HOUR = 3_600_000;

/**
 * How long a place lasts when it is not given back. Longer than any check:
 * scrypt takes ~100 ms, and a Dovecot check at most its connect timeout
 * plus its answer timeout (15 s each, `src/users/dovecot_auth.ts`); a check
 * outlasting its place would no longer count as a failure while it runs.
 * Short beside the hour of the limit: a node that died mid-check holds a
 * client's places for at most a minute.
 */
const PLACE_MS = 60_000;

/** The client with the scripts defined on it. */
type ScriptedRedis = Redis & {
  posternLoginReserve(
    failures: string,
    places: string,
    windowMs: number,
    limit: number,
    placeMs: number,
    id: string,
  ): Promise<number>;
  posternLoginSettle(
    failures: string,
    places: string,
    windowMs: number,
    failed: "1" | "0",
    id: string,
    failure: string,
    keep: number,
  ): Promise<number>;
};

/** Defines the scripts on the link's client (EVALSHA, loaded on first use). */
function scripted(link: ClusterLink): ScriptedRedis {
  const redis = link.redis as ScriptedRedis;
  if (typeof redis.posternLoginReserve !== "function") {
    redis.defineCommand("posternLoginReserve", { numberOfKeys: 2, lua: RESERVE_SCRIPT });
    redis.defineCommand("posternLoginSettle", { numberOfKeys: 2, lua: SETTLE_SCRIPT });
  }
  return redis;
}

/** Options of {@linkcode SharedFailures}. */
export interface SharedFailuresOptions {
  /** How long a place lasts when it is not given back (tests shorten it); default a minute. */
  placeMs?: number;
  /** The window of the failures (tests shorten it); default an hour. */
  windowMs?: number;
}

/** Failed logins and attempts being checked, across the fleet, falling back to local counts. */
export class SharedFailures implements FailureCounter {
  #link: ClusterLink;
  #local: LocalFailures;
  #counters: Counters;
  #placeMs: number;
  #windowMs: number;

  /** Counts through `link`. */
  constructor(link: ClusterLink, counters: Counters, options: SharedFailuresOptions = {}) {
    this.#link = link;
    this.#counters = counters;
    this.#placeMs = options.placeMs ?? PLACE_MS;
    this.#windowMs = options.windowMs ?? HOUR;
    this.#local = new LocalFailures(Date.now, this.#windowMs);
    scripted(link);
  }

  /**
   * A place for an attempt of `key`, unless the fleet's failures of `key`
   * within the hour and its attempts being checked reach `limit`.
   */
  reserve(key: string, limit: number): LoginTicket | undefined | Promise<LoginTicket | undefined> {
    // No limit: nothing to ask; a failure is still counted in the fleet,
    // so that a limit set later (the policy reloads live) applies at once.
    if (limit <= 0) return this.#ticket(key, this.#local.reserve(key, 0)!, "", KEEP_WITHOUT_LIMIT);
    if (!this.#link.shared) return this.#fallback(key, limit);
    return this.#reserveShared(key, limit);
  }

  async #reserveShared(key: string, limit: number): Promise<LoginTicket | undefined> {
    const id = crypto.randomUUID();
    let taken: number;
    try {
      taken = await this.#link.call((redis) =>
        (redis as ScriptedRedis).posternLoginReserve(
          this.#failuresKey(key),
          this.#placesKey(key),
          this.#windowMs,
          limit,
          this.#placeMs,
          id,
        )
      );
    } catch (err) {
      if (!(err instanceof ClusterUnavailable)) throw err;
      return this.#fallback(key, limit);
    }
    if (taken !== 1) return undefined;
    // This node's share, counted locally too: the fallback starts from it.
    return this.#ticket(key, this.#local.reserve(key, 0, limit)!, id, limit);
  }

  /** This node's own counts, the server being unreachable (counted as such). */
  #fallback(key: string, limit: number): LoginTicket | undefined {
    this.#counters.inc("cluster_local_checks_total");
    const local = this.#local.reserve(key, limit);
    return local && this.#ticket(key, local, "", limit);
  }

  /**
   * The ticket for `local`'s place and, unless `id` is "", the place `id`
   * in the server; a failure keeps the newest `keep` failures of `key`.
   */
  #ticket(key: string, local: LoginTicket, id: string, keep: number): LoginTicket {
    // Settled once, as LocalFailures' tickets are: a second settle would
    // count another failure in the fleet (a new id when there is no place).
    let settled = false;
    return {
      settle: (failed) => {
        if (settled) return;
        settled = true;
        local.settle(failed);
        // A success without a place in the server has nothing to tell it.
        if (!failed && id === "") return;
        return this.#settleShared(key, failed, id, keep);
      },
    };
  }

  async #settleShared(key: string, failed: boolean, id: string, keep: number): Promise<void> {
    // Unreachable: the failure is counted locally, and the place expires.
    if (!this.#link.shared) return;
    try {
      await this.#link.call((redis) =>
        (redis as ScriptedRedis).posternLoginSettle(
          this.#failuresKey(key),
          this.#placesKey(key),
          this.#windowMs,
          failed ? "1" : "0",
          id,
          // Each failure a member of its own: the place's id, unique, or a new one.
          id === "" ? crypto.randomUUID() : id,
          keep,
        )
      );
    } catch (err) {
      if (!(err instanceof ClusterUnavailable)) throw err;
    }
  }

  #failuresKey(key: string): string {
    return this.#link.key("login-failures", key);
  }

  #placesKey(key: string): string {
    return this.#link.key("login-checks", key);
  }
}
