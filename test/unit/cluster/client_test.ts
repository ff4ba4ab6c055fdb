/**
 * The link's deadline against a real redis-server (unix socket, temporary
 * directory) while the node's own event loop is busy: a reply that came in
 * while the loop was blocked past `cluster.timeout` is an answer, not an
 * outage (the bench's cluster row fell back to local counts under load).
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ClusterLink, ClusterUnavailable } from "../../../src/cluster/client.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { clusterConfig, type RedisServer, startRedis } from "../../support/redis_server.ts";
import { pollUntil } from "../../support/within.ts";

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

  /** A link with `timeoutMs`, once it counts across the fleet. */
  async function sharedLink(timeoutMs: number): Promise<ClusterLink> {
    const config = clusterConfig(redis, { keyPrefix: "busy:", nodeName: "busy", timeoutMs });
    const link = new ClusterLink(config, new Logger("info", () => {}), new Counters());
    await pollUntil(() => link.shared, "the link shared");
    return link;
  }

  it("takes a reply read late because the loop was busy for an answer, not an outage", async () => {
    const link = await sharedLink(50);
    try {
      // The server answers PING within the 400 ms the loop is blocked (a
      // server descheduled that long on a loaded machine is the one case
      // this cannot tell apart, hence up to 3 tries); the deadline's timer
      // is then overdue, and the reply must win over it.
      const outcomes: string[] = [];
      for (let attempt = 0; attempt < 3 && !outcomes.includes("PONG"); attempt++) {
        await pollUntil(() => link.shared, "the link shared again");
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

  it("gives the server its timeout again after the loop was busy past it", async () => {
    const link = await sharedLink(100);
    try {
      // The server is stopped while the loop is busy and answers 20 ms
      // after the loop comes free, well within the timeout: the overdue
      // deadline must not count the time the node was not listening. Up
      // to 3 tries, as a resumed server may take longer than 100 ms on a
      // loaded machine.
      const outcomes: string[] = [];
      for (let attempt = 0; attempt < 3 && !outcomes.includes("PONG"); attempt++) {
        await pollUntil(() => link.shared, "the link shared again");
        redis.pause();
        let resumed: Promise<void>;
        const outcome = link.call((r) => r.ping()).catch((err) => {
          if (!(err instanceof ClusterUnavailable)) throw err;
          return err.message;
        });
        try {
          blockLoop(400);
        } finally {
          resumed = new Promise((r) => setTimeout(r, 20)).then(() => redis.resume());
        }
        await resumed;
        outcomes.push(await outcome);
      }
      assert.ok(outcomes.includes("PONG"), `every try timed out: ${outcomes.join("; ")}`);
      assert.equal(link.shared, true);
    } finally {
      link.close();
    }
  });
});
