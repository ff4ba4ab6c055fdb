/**
 * The fleet's failed-login count against a hostile use, on a real
 * redis-server: concurrent reserves from two nodes never let more checks
 * through than the limit, and a ticket settled twice counts one failure
 * (as `LocalFailures` does), with a limit or without one.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClusterLink } from "../../../src/cluster/client.ts";
import { SharedFailures } from "../../../src/cluster/mod.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { clusterConfig, redisSuite } from "../../support/redis_server.ts";

const CLIENT = "192.0.2.7";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("SharedFailures against a hostile use", () => {
  const { redis, links } = redisSuite();
  let prefix = 0;

  /** A node on key prefix `keyPrefix`, once its link is shared. */
  async function node(keyPrefix: string) {
    const config = clusterConfig(redis, { keyPrefix, nodeName: `n${links.length}` });
    const counters = new Counters();
    const link = new ClusterLink(config, new Logger("info", () => {}), counters);
    links.push(link);
    for (let i = 0; i < 500 && !link.shared; i++) await sleep(20);
    assert.ok(link.shared, "the link shared");
    return { link, counters, failures: new SharedFailures(link, counters) };
  }

  it("never lets more checks through than the limit, two nodes reserving at once", async () => {
    const keyPrefix = `review${++prefix}:`;
    const a = await node(keyPrefix);
    const b = await node(keyPrefix);
    const tickets = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).failures.reserve(CLIENT, 5)),
    );
    const taken = tickets.filter((t) => t !== undefined);
    assert.equal(taken.length, 5);
    for (const ticket of taken) await ticket!.settle(true);
    assert.equal(await a.failures.reserve(CLIENT, 5), undefined);
    assert.equal(await b.failures.reserve(CLIENT, 5), undefined);
    assert.equal(a.counters.get("cluster_local_checks_total"), 0);
  });

  it("counts a ticket settled twice once, with a limit and without one", async () => {
    for (const limit of [5, 0]) {
      const keyPrefix = `review${++prefix}:`;
      const { link, failures } = await node(keyPrefix);
      const ticket = (await failures.reserve(CLIENT, limit))!;
      await ticket.settle(true);
      await ticket.settle(true);
      const other = (await failures.reserve(CLIENT, limit))!;
      await other.settle(false);
      await other.settle(true);
      assert.equal(
        await link.redis.zcard(`${keyPrefix}login-failures:${CLIENT}`),
        1,
        `limit ${limit}`,
      );
    }
  });
});
