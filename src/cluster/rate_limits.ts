/**
 * Rate limits counted across the fleet, in the shared server.
 *
 * Each counter is one hash per client key, with one field per fixed
 * window; the check is a Lua script, so one check costs one round trip
 * and is atomic across nodes. It estimates a sliding window from the
 * current and the previous fixed window, as the local counter does
 * (`src/smtp/rate_limits.ts`), with the server's clock (TIME), so that the
 * nodes' clocks need not agree. Failed logins are counted exactly instead,
 * in `login_failures.ts`: they are few, and a brute-force guard must not let
 * a burst through at a window's edge.
 *
 * When the server is unreachable or slow, the node falls back to its own
 * local counts: it fails open to the per-node limits rather than refuse
 * all mail because a counter store is down (as Postfix's smtpd does when
 * its anvil rate server cannot be reached: the limit is skipped with a
 * warning, and mail flows). The local counts are kept up to date all the
 * while, so the fallback starts from this node's real share.
 *
 * @module
 */

import type { Redis } from "ioredis";
import type { Counters } from "../log/mod.ts";
import {
  clientKey,
  RATE_REFUSALS,
  type RateLimiter,
  RateLimits,
  type RateLimitSettings,
  type RateRefusal,
} from "../smtp/rate_limits.ts";
import type { ClusterLink } from "./client.ts";
import { ClusterUnavailable } from "./unavailable.ts";

/**
 * Lua that reads the sliding window of the counter hash KEYS[1], with the
 * window in ms in ARGV[1], on the server's clock: it sets `now`, `cur` and
 * `curField` (the current fixed window) and `estimate` (the count).
 */
const LUA_WINDOW_ESTIMATE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(ARGV[1])
local cur = math.floor(now / w)
local curField = string.format('%d', cur)
local c = tonumber(redis.call('HGET', KEYS[1], curField) or '0')
local p = tonumber(redis.call('HGET', KEYS[1], string.format('%d', cur - 1)) or '0')
local estimate = p * (1 - (now - cur * w) / w) + c
`;

/** Lua that counts one event in KEYS[1], after {@linkcode LUA_WINDOW_ESTIMATE}. */
const LUA_WINDOW_ADD = `
redis.call('HINCRBY', KEYS[1], curField, 1)
redis.call('HDEL', KEYS[1], string.format('%d', cur - 2))
redis.call('PEXPIRE', KEYS[1], 2 * w)
`;

/**
 * KEYS[1]: the counter's hash. ARGV[1]: the window in ms; ARGV[2]: the
 * limit. Counts one event unless the limit is reached: 1 admitted, 0 not.
 */
const SLIDING_WINDOW_SCRIPT = LUA_WINDOW_ESTIMATE + `
if estimate >= tonumber(ARGV[2]) then return 0 end
` + LUA_WINDOW_ADD + `
return 1
`;

const MINUTE = 60_000;
const HOUR = 3_600_000;

/** The client with the script defined on it. */
type ScriptedRedis = Redis & {
  posternWindow(key: string, windowMs: number, limit: number): Promise<number>;
};

/** Defines the script on the link's client (EVALSHA, loaded on first use). */
function scripted(link: ClusterLink): ScriptedRedis {
  const redis = link.redis as ScriptedRedis;
  if (typeof redis.posternWindow !== "function") {
    redis.defineCommand("posternWindow", { numberOfKeys: 1, lua: SLIDING_WINDOW_SCRIPT });
  }
  return redis;
}

/** Per-client rate limits counted across the fleet, falling back to local counts. */
export class SharedRateLimits implements RateLimiter {
  #link: ClusterLink;
  #local: RateLimits;
  #counters: Counters;

  /** Counts through `link`; `local` counts this node's share, for the fallback. */
  constructor(link: ClusterLink, counters: Counters, local: RateLimits = new RateLimits()) {
    this.#link = link;
    this.#local = local;
    this.#counters = counters;
    scripted(link);
  }

  /** Counts a connection across the fleet, or returns the 421 that refuses it. */
  admitConnection(
    ip: string,
    limits: RateLimitSettings,
  ): RateRefusal | undefined | Promise<RateRefusal | undefined> {
    const limit = limits.connectionsPerIpPerMinute;
    if (limit <= 0 || !this.#link.shared) {
      return this.#fallback("connection", ip, undefined, limits);
    }
    return this.#admit("connection", ["conn", clientKey(ip)], MINUTE, limit, ip, undefined, limits);
  }

  /** Counts a message across the fleet (by user, else by address), or returns the 451. */
  admitMessage(
    ip: string,
    user: string | undefined,
    limits: RateLimitSettings,
  ): RateRefusal | undefined | Promise<RateRefusal | undefined> {
    const kind = user === undefined ? "message" : "user";
    const limit = user === undefined ? limits.messagesPerIpPerHour : limits.messagesPerUserPerHour;
    if (limit <= 0 || !this.#link.shared) return this.#fallback(kind, ip, user, limits);
    const key = user === undefined
      ? ["msg", "ip", clientKey(ip)]
      : ["msg", "user", user.toLowerCase()];
    return this.#admit(kind, key, HOUR, limit, ip, user, limits);
  }

  async #admit(
    kind: "connection" | "message" | "user",
    key: string[],
    windowMs: number,
    limit: number,
    ip: string,
    user: string | undefined,
    limits: RateLimitSettings,
  ): Promise<RateRefusal | undefined> {
    let admitted: number;
    try {
      admitted = await this.#link.call((redis) =>
        (redis as ScriptedRedis).posternWindow(
          this.#link.key("rate", ...key),
          windowMs,
          limit,
        )
      );
    } catch (err) {
      if (!(err instanceof ClusterUnavailable)) throw err;
      return this.#fallback(kind, ip, user, limits);
    }
    if (admitted !== 1) return RATE_REFUSALS[kind];
    // This node's share, counted locally too: the fallback starts from it.
    if (kind === "connection") this.#local.admitConnection(ip, limits);
    else this.#local.admitMessage(ip, user, limits);
    return undefined;
  }

  /** This node's own counts: the server is unreachable (counted as such) or the limit is off. */
  #fallback(
    kind: "connection" | "message" | "user",
    ip: string,
    user: string | undefined,
    limits: RateLimitSettings,
  ): RateRefusal | undefined {
    const limit = kind === "connection"
      ? limits.connectionsPerIpPerMinute
      : kind === "message"
      ? limits.messagesPerIpPerHour
      : limits.messagesPerUserPerHour;
    if (limit > 0) this.#countLocal();
    return kind === "connection"
      ? this.#local.admitConnection(ip, limits)
      : this.#local.admitMessage(ip, user, limits);
  }

  #countLocal(): void {
    this.#counters.inc("cluster_local_checks_total");
  }
}
