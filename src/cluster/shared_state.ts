/**
 * The hooks' shared state kept in the cluster's server, one key per hook
 * key under `<prefix>hook:<hook point>:`. `increment` is one script (the
 * count and, when the key is new, its time to live), so a window such as
 * "at most N per hour" starts with the first count and ends on its own.
 *
 * @module
 */

import type { Redis } from "ioredis";
import type { SharedRequest, SharedStore } from "../hooks/shared_state.ts";
import type { ClusterLink } from "./client.ts";

/** KEYS[1]: the key; ARGV[1]: by; ARGV[2]: ttl in ms (0: none), set when the key has none. */
const INCREMENT_SCRIPT = `
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
`;

type ScriptedRedis = Redis & {
  posternIncrement(key: string, by: number, ttlMs: number): Promise<number>;
};

/** Hook state in the fleet's server. */
export class ClusterSharedStore implements SharedStore {
  #link: ClusterLink;

  /** Keeps state through `link`. */
  constructor(link: ClusterLink) {
    this.#link = link;
    const redis = link.redis as ScriptedRedis;
    if (typeof redis.posternIncrement !== "function") {
      redis.defineCommand("posternIncrement", { numberOfKeys: 1, lua: INCREMENT_SCRIPT });
    }
  }

  /**
   * Runs one request of the hook point `hook`.
   *
   * @throws {ClusterUnavailable} while the server does not answer.
   */
  run(hook: string, request: SharedRequest): Promise<number | string | null> {
    const key = this.#link.key("hook", hook, request.key);
    switch (request.op) {
      case "increment":
        return this.#link.call((redis) =>
          (redis as ScriptedRedis).posternIncrement(key, request.by, request.ttl * 1000)
        );
      case "get":
        return this.#link.call((redis) => redis.get(key));
      case "set":
        return this.#link.call(async (redis) => {
          if (request.ttl > 0) await redis.set(key, request.value, "PX", request.ttl * 1000);
          else await redis.set(key, request.value);
          return null;
        });
    }
  }
}
