/**
 * The window of the fleet's failed logins against a real redis-server (on
 * a unix socket in a temporary directory), with the window shortened so
 * that the test runs in seconds: counted exactly, on the server's clock,
 * never more than the limit of password checks within any window-long
 * span, even across the edge of a fixed window; each failure leaves the
 * count once it is a window old, the key vanishes after it, and a key
 * holds no more failures than the limit needs.
 *
 * Times are the server's (TIME), read before and after each attempt, so
 * that the assertions hold however slow the machine: a span is counted as
 * shorter than the window only if it certainly was.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClusterLink } from "../../../src/cluster/client.ts";
import { SharedFailures } from "../../../src/cluster/mod.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { clusterConfig, redisSuite } from "../../support/redis_server.ts";
import { pollUntil } from "../../support/within.ts";

const CLIENT = "192.0.2.1";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

describe("SharedFailures window (exact, on the server's clock)", () => {
  const { redis, links } = redisSuite();
  let prefix = 0;

  /** A node counting failures over `windowMs`; waits until its link is shared. */
  async function node(windowMs: number) {
    const keyPrefix = `window${++prefix}:`;
    const config = clusterConfig(redis, { keyPrefix });
    const counters = new Counters();
    const link = new ClusterLink(config, new Logger("info", () => {}), counters);
    links.push(link);
    await pollUntil(() => link.shared, "the link shared");
    const failures = new SharedFailures(link, counters, { windowMs });
    /** The server's clock, in ms. */
    const serverNow = async () => {
      const [seconds, micros] = await link.redis.time();
      return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    };
    const failuresKey = `${keyPrefix}login-failures:${CLIENT}`;
    return { link, counters, failures, serverNow, failuresKey };
  }

  it("checks at most the limit in any window-long span, across the edge of a fixed window", async () => {
    const WINDOW = 2_000;
    const LIMIT = 10;
    const { counters, failures, serverNow } = await node(WINDOW);
    // Start 400 ms before the server's clock crosses a multiple of the
    // window (where the fixed windows of the estimate turned over).
    const now = await serverNow();
    let edge = Math.ceil(now / WINDOW) * WINDOW;
    if (edge - now < 600) edge += WINDOW;
    await sleep(edge - 400 - now);
    // Guess until 1 s past the edge: 1.4 s in all, under the window. Before,
    // 10 failures before the edge and about 5 more after it were checked.
    const checked: { before: number; after: number }[] = [];
    for (let i = 0; i < 300; i++) {
      const before = await serverNow();
      if (before >= edge + 1_000) break;
      const ticket = await failures.reserve(CLIENT, LIMIT);
      const after = await serverNow();
      if (ticket) {
        checked.push({ before, after });
        await ticket.settle(true);
      }
      await sleep(10);
    }
    assert.ok(checked.length >= LIMIT, `only ${checked.length} checks`);
    // Any LIMIT + 1 checks certainly within one window would break the limit.
    for (let i = 0; i + LIMIT < checked.length; i++) {
      const span = checked[i + LIMIT]!.after - checked[i]!.before;
      assert.ok(
        span >= WINDOW,
        `${LIMIT + 1} checks within ${span} ms: ${
          JSON.stringify(checked.map((c) => c.before - edge))
        } ms from the edge`,
      );
    }
    assert.equal(counters.get("cluster_local_checks_total"), 0);
  });

  it("lets a failure go once it is a window old, and the key vanishes after the window", async () => {
    const WINDOW = 500;
    const { link, failures, serverNow, failuresKey } = await node(WINDOW);
    const firstAt = await serverNow();
    for (let i = 0; i < 2; i++) await (await failures.reserve(CLIENT, 3))!.settle(true);
    const lastAt = await serverNow();
    await (await failures.reserve(CLIENT, 3))!.settle(true);
    assert.equal(await failures.reserve(CLIENT, 3), undefined);
    const ttl = await link.redis.pttl(failuresKey);
    assert.ok(ttl > 0 && ttl <= WINDOW, `pttl ${ttl}`);
    let ticket: Awaited<ReturnType<SharedFailures["reserve"]>>;
    await pollUntil(async () => {
      ticket = await failures.reserve(CLIENT, 3);
      return ticket !== undefined;
    }, "the first failure a window old");
    // Not before: the first failure was counted at firstAt or later.
    assert.ok((await serverNow()) - firstAt >= WINDOW, "the first failure lasted the window");
    await ticket!.settle(false);
    await pollUntil(
      async () => (await link.redis.exists(failuresKey)) === 0,
      "the failures' key expired",
    );
    assert.ok((await serverNow()) - lastAt >= WINDOW, "the key lasted the window");
  });

  it("keeps no more failures per client than the limit needs", async () => {
    const { link, failures, failuresKey } = await node(60_000);
    // No limit: failures are still counted, a bounded number of them.
    for (let i = 0; i < 120; i++) await (await failures.reserve(CLIENT, 0))!.settle(true);
    assert.equal(await link.redis.zcard(failuresKey), 100);
    // With a limit, its newest `limit` are kept, whatever limit came before.
    await link.redis.del(failuresKey);
    for (let i = 0; i < 3; i++) await (await failures.reserve(CLIENT, 3))!.settle(true);
    assert.equal(await failures.reserve(CLIENT, 3), undefined);
    // The limit raised live: the failures before still count toward it.
    await (await failures.reserve(CLIENT, 5))!.settle(true);
    await (await failures.reserve(CLIENT, 5))!.settle(true);
    assert.equal(await failures.reserve(CLIENT, 5), undefined);
    assert.equal(await link.redis.zcard(failuresKey), 5);
    // Raised again to 6: one more check, and all 6 are kept.
    await (await failures.reserve(CLIENT, 6))!.settle(true);
    assert.equal(await link.redis.zcard(failuresKey), 6);
    assert.equal(await failures.reserve(CLIENT, 6), undefined);
    const ttl = await link.redis.pttl(failuresKey);
    assert.ok(ttl > 0 && ttl <= 60_000, `pttl ${ttl}`);
  });
});
