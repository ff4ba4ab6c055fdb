/**
 * Rate limits across a fleet against a real redis-server (on a unix socket
 * in a temporary directory): two links stand for two nodes. Counts are
 * shared; with the server killed or stopped (too slow) each node falls back
 * to its local counts, says so once, and returns to shared counts after.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClusterLink } from "../../../src/cluster/client.ts";
import { SharedRateLimits } from "../../../src/cluster/rate_limits.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { RATE_REFUSALS, type RateLimitSettings } from "../../../src/smtp/rate_limits.ts";
import { clusterConfig, redisSuite } from "../../support/redis_server.ts";
import { pollUntil } from "../../support/within.ts";

const OFF: RateLimitSettings = {
  connectionsPerIpPerMinute: 0,
  messagesPerIpPerHour: 0,
  messagesPerUserPerHour: 0,
  failedLoginsPerIpPerHour: 0,
};

describe("SharedRateLimits", () => {
  const { redis, links } = redisSuite();
  let prefix = 0;

  /** Two nodes on the server, each with its own counters and log; waits until both are shared. */
  async function twoNodes(timeoutMs = 2_000) {
    const keyPrefix = `t${++prefix}:`;
    const nodes = ["a", "b"].map((name) => {
      const config = clusterConfig(redis, { keyPrefix, nodeName: name, timeoutMs });
      const counters = new Counters();
      const log: string[] = [];
      const link = new ClusterLink(config, new Logger("info", (l) => log.push(l)), counters);
      links.push(link);
      return {
        link,
        counters,
        log,
        rates: new SharedRateLimits(link, counters),
      };
    });
    await pollUntil(() => nodes.every((n) => n.link.shared), "both links shared");
    return nodes;
  }

  it("counts connections, messages by address and by user across the nodes", async () => {
    const [a, b] = await twoNodes();
    const limits = { ...OFF, connectionsPerIpPerMinute: 3, messagesPerIpPerHour: 2 };
    const connections = [];
    for (let i = 0; i < 5; i++) {
      connections.push(await (i % 2 ? b! : a!).rates.admitConnection("192.0.2.1", limits));
    }
    assert.deepEqual(connections, [
      undefined,
      undefined,
      undefined,
      RATE_REFUSALS.connection,
      RATE_REFUSALS.connection,
    ]);
    // Another address has counts of its own; an IPv6 /64 is one client.
    assert.equal(await a!.rates.admitConnection("192.0.2.2", limits), undefined);
    assert.equal(await a!.rates.admitMessage("2001:db8::1", undefined, limits), undefined);
    assert.equal(await b!.rates.admitMessage("2001:db8::2", undefined, limits), undefined);
    assert.equal(
      await a!.rates.admitMessage("2001:db8::ffff", undefined, limits),
      RATE_REFUSALS.message,
    );
    const userLimits = { ...OFF, messagesPerUserPerHour: 1 };
    assert.equal(
      await a!.rates.admitMessage("192.0.2.9", "Alice@Example.test", userLimits),
      undefined,
    );
    assert.equal(
      await b!.rates.admitMessage("192.0.2.8", "alice@example.test", userLimits),
      RATE_REFUSALS.user,
    );
    assert.equal(a!.counters.get("cluster_local_checks_total"), 0);
  });

  it("a limit of 0 asks no server and counts nothing", async () => {
    const [a] = await twoNodes();
    const answer = a!.rates.admitConnection("192.0.2.1", OFF);
    assert.equal(answer, undefined, "answered at once, not a promise");
    assert.equal(a!.rates.admitMessage("192.0.2.1", undefined, OFF), undefined);
    assert.equal(a!.rates.admitMessage("192.0.2.1", "alice", OFF), undefined);
    assert.equal(a!.counters.get("cluster_local_checks_total"), 0);
  });

  it("falls back to local counts when the server dies, and returns when it is back", async () => {
    const [a, b] = await twoNodes();
    const limits = { ...OFF, messagesPerIpPerHour: 3 };
    // Shared: a 1, b 1, a 1 = 3, the fleet's limit.
    for (const node of [a!, b!, a!]) {
      assert.equal(await node.rates.admitMessage("192.0.2.1", undefined, limits), undefined);
    }
    assert.equal(
      await b!.rates.admitMessage("192.0.2.1", undefined, limits),
      RATE_REFUSALS.message,
    );

    await redis.kill();
    await pollUntil(() => !a!.link.shared && !b!.link.shared, "both links local");
    // Local: a counted 2 of its own, b 1, each up to the limit on its own.
    assert.equal(a!.rates.admitMessage("192.0.2.1", undefined, limits), undefined);
    assert.equal(a!.rates.admitMessage("192.0.2.1", undefined, limits), RATE_REFUSALS.message);
    assert.equal(b!.rates.admitMessage("192.0.2.1", undefined, limits), undefined);
    assert.equal(b!.rates.admitMessage("192.0.2.1", undefined, limits), undefined);
    assert.equal(b!.rates.admitMessage("192.0.2.1", undefined, limits), RATE_REFUSALS.message);
    assert.equal(a!.counters.get("cluster_local_checks_total"), 2);
    assert.equal(a!.counters.get("cluster_state_changes_total", { state: "local" }), 1);
    assert.equal(a!.link.status().state, "local");
    assert.equal(
      a!.log.filter((l) => l.includes("cluster server unavailable; counting locally")).length,
      1,
    );

    await redis.start();
    await pollUntil(() => a!.link.shared && b!.link.shared, "both links shared again");
    assert.equal(a!.counters.get("cluster_state_changes_total", { state: "shared" }), 2);
    // The new server is empty: shared counts start from zero.
    assert.equal(await b!.rates.admitMessage("192.0.2.1", undefined, limits), undefined);
  });

  it("tells one outage a minute in the log, and counts every one", async () => {
    const [a] = await twoNodes();
    const told = (text: string) => a!.log.filter((l) => l.includes(text)).length;
    for (let outage = 1; outage <= 3; outage++) {
      await redis.kill();
      await pollUntil(() => !a!.link.shared, `outage ${outage}`);
      await redis.start();
      await pollUntil(() => a!.link.shared, `return ${outage}`);
    }
    assert.equal(a!.counters.get("cluster_state_changes_total", { state: "local" }), 3);
    assert.equal(a!.counters.get("cluster_state_changes_total", { state: "shared" }), 4);
    assert.equal(told("cluster server unavailable; counting locally"), 1);
    // The first connection and the return from the told outage.
    assert.equal(told("cluster server answers; counting across the fleet"), 2);
  });

  it("falls back when the server is too slow (stopped), within the timeout", async () => {
    const [a] = await twoNodes(300);
    const limits = { ...OFF, messagesPerIpPerHour: 5 };
    redis.pause();
    try {
      // Answered from the local counts once the 300 ms deadline passes.
      assert.equal(await a!.rates.admitMessage("192.0.2.1", undefined, limits), undefined);
      assert.equal(a!.link.shared, false);
      assert.match(a!.link.status().last_error ?? "", /no answer within 300 ms/);
      assert.equal(a!.counters.get("cluster_local_checks_total"), 1);
    } finally {
      redis.resume();
    }
    await pollUntil(() => a!.link.shared, "the link shared again after SIGCONT");
  });
});
