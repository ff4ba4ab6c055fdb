/**
 * The link's deadline against a real redis-server (unix socket, temporary
 * directory) while the node's own event loop is busy: a reply that came in
 * while the loop was blocked past `cluster.timeout` is an answer, not an
 * outage (the bench's cluster row fell back to local counts under load).
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ClusterLink, ClusterUnavailable } from "../../../src/cluster/client.ts";
import { type ClusterConfig, parseClusterUrl } from "../../../src/cluster/settings.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { type RedisServer, startRedis } from "../../support/redis_server.ts";

/** Polls `condition` every 20 ms; fails after `limitMs`. */
async function eventually(condition: () => boolean, what: string, limitMs = 10_000) {
  for (let waited = 0; waited <= limitMs; waited += 20) {
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** Keeps the event loop busy for `ms` (as a burst of sessions on a loaded machine does). */
function blockLoop(ms: number): number {
  const start = Date.now();
  let spins = 0;
  while (Date.now() - start < ms) spins++;
  return spins;
}

describe("ClusterLink deadline", () => {
  let redis: RedisServer;

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.close();
  });

  it("takes a reply read late because the loop was busy for an answer, not an outage", async () => {
    const config: ClusterConfig = {
      server: parseClusterUrl(redis.url),
      url: redis.url,
      password: undefined,
      tlsCa: undefined,
      nodeName: "busy",
      timeoutMs: 50,
      heartbeatMs: 1_000,
      keyPrefix: "busy:",
    };
    const log: string[] = [];
    const link = new ClusterLink(config, new Logger("info", (l) => log.push(l)), new Counters());
    try {
      await eventually(() => link.shared, "the link shared");
      // The server answers PING within the 400 ms the loop is blocked (a
      // server descheduled that long on a loaded machine is the one case
      // this cannot tell apart, hence up to 3 tries); the deadline's timer
      // is then overdue, and the reply must win over it.
      const outcomes: string[] = [];
      for (let attempt = 0; attempt < 3 && !outcomes.includes("PONG"); attempt++) {
        await eventually(() => link.shared, "the link shared again");
        const call = link.call((r) => r.ping());
        blockLoop(400);
        try {
          outcomes.push(await call);
        } catch (err) {
          if (!(err instanceof ClusterUnavailable)) throw err;
          outcomes.push(err.message);
        }
      }
      assert.ok(outcomes.includes("PONG"), `every try timed out: ${outcomes.join("; ")}`);
      assert.equal(link.shared, true);
    } finally {
      link.close();
    }
  });
});
