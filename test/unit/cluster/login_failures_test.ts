/**
 * Failed logins across a fleet against a real redis-server (on a unix
 * socket in a temporary directory): two links and two LoginCheckers stand
 * for two nodes. An attempt being checked anywhere in the fleet counts as
 * a failure until its outcome is known, so guesses spread over the nodes
 * at the same moment get at most the fleet's limit of password checks, not
 * the limit once per node; places are given back after each check, and a
 * node that dies mid-check holds its places only for a while.
 */

import assert from "node:assert/strict";
import { scryptSync } from "node:crypto";
import { describe, it } from "node:test";
import { type LocalDomain, RecipientResolver } from "../../../src/aliases/mod.ts";
import { ClusterLink } from "../../../src/cluster/client.ts";
import { SharedFailures } from "../../../src/cluster/mod.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { type LoginAttempt, LoginChecker, type LoginResult } from "../../../src/smtp/login.ts";
import { clusterConfig, redisSuite } from "../../support/redis_server.ts";
import { pollUntil } from "../../support/within.ts";

const PASSWORD = "carol's password";

/** A hash at the lowest cost the verifier accepts (ln=10): a few milliseconds a check. */
function cheapHash(password: string): string {
  const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64").replace(/=+$/, "");
  const salt = new TextEncoder().encode("carol's salt....");
  const key = scryptSync(password, salt, 32, { N: 1024, r: 8, p: 1 });
  return `$scrypt$ln=10,r=8,p=1$${b64(salt)}$${b64(key)}`;
}

/** The users, counting the password checks (each check looks the hash up once). */
class CountingResolver extends RecipientResolver {
  checks = 0;
  override passwordOf(login: string): string | undefined {
    this.checks++;
    return super.passwordOf(login);
  }
}

function makeResolver(): CountingResolver {
  const domain: LocalDomain = {
    name: "example.test",
    anyUser: false,
    users: new Set(["carol"]),
    aliases: new Map(),
    passwords: new Map([["carol", cheapHash(PASSWORD)]]),
  };
  return new CountingResolver(new Map([["example.test", domain]]), {
    suffixSeparators: "+",
    dropCharacters: ".",
  });
}

const attempt = (password: string, ip = "192.0.2.1"): LoginAttempt => ({
  method: "PLAIN",
  username: "carol@example.test",
  password,
  ip,
});

/** "ok", or the reason of the refusal (bad_credentials: 535; login_rate: 454). */
function outcome(result: LoginResult): string {
  return "user" in result ? "ok" : result.reason;
}

function tally(outcomes: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
  return counts;
}

describe("LoginChecker across a fleet (SharedFailures)", () => {
  const { redis, links } = redisSuite();
  let prefix = 0;

  /** Two nodes on the server, each with its own checker; waits until both are shared. */
  async function twoNodes(placeMs?: number) {
    const keyPrefix = `login${++prefix}:`;
    const nodes = ["a", "b"].map((name) => {
      const config = clusterConfig(redis, { keyPrefix, nodeName: name });
      const counters = new Counters();
      const link = new ClusterLink(config, new Logger("info", () => {}), counters);
      links.push(link);
      const failures = new SharedFailures(
        link,
        counters,
        ...(placeMs === undefined ? [] : [{ placeMs }]),
      );
      return { link, counters, failures, checker: new LoginChecker(Date.now, failures) };
    });
    await pollUntil(() => nodes.every((n) => n.link.shared), "both links shared");
    return nodes;
  }

  it("checks at most the fleet's limit of guesses sent to both nodes at the same moment", async () => {
    const [a, b] = await twoNodes();
    const resolver = makeResolver();
    // Before, each node let 3 through (6 password checks for a limit of 3).
    const results = await Promise.all(
      Array.from(
        { length: 12 },
        (_, i) => (i % 2 ? b! : a!).checker.check(attempt(`guess ${i}`), resolver, 3),
      ),
    );
    const counts = tally(results.map(outcome));
    assert.equal(resolver.checks, 3, JSON.stringify(counts));
    assert.deepEqual(counts, { bad_credentials: 3, login_rate: 9 });
    // The lockout holds on both nodes afterwards, even for the right password.
    for (const node of [a!, b!]) {
      assert.equal(outcome(await node.checker.check(attempt(PASSWORD), resolver, 3)), "login_rate");
    }
    assert.equal(resolver.checks, 3);
    // Another client is not touched.
    assert.equal(
      outcome(await b!.checker.check(attempt(PASSWORD, "192.0.2.2"), resolver, 3)),
      "ok",
    );
    assert.equal(a!.counters.get("cluster_local_checks_total"), 0);
  });

  it("counts a place being checked on one node on the other node too", async () => {
    const [a, b] = await twoNodes();
    // A held on a, as a check that takes its time would hold it.
    const held = await a!.failures.reserve("192.0.2.1", 2);
    assert.ok(held, "a place on a");
    const second = await b!.failures.reserve("192.0.2.1", 2);
    assert.ok(second, "the second place, on b");
    // Both places taken: b sees a's, and refuses without a check.
    assert.equal(await b!.failures.reserve("192.0.2.1", 2), undefined);
    assert.equal(await a!.failures.reserve("192.0.2.1", 2), undefined);
    // A success gives its place back; a failure keeps it, as a failure.
    await held.settle(false);
    const third = await b!.failures.reserve("192.0.2.1", 2);
    assert.ok(third, "a's place, given back");
    await second.settle(true);
    await third.settle(true);
    assert.equal(await a!.failures.reserve("192.0.2.1", 2), undefined);
  });

  it("lets the right password in under the limit, and gives places back after each check", async () => {
    const [a, b] = await twoNodes();
    const resolver = makeResolver();
    assert.equal(outcome(await a!.checker.check(attempt("wrong"), resolver, 3)), "bad_credentials");
    // One failure and two places: a round of two at once (one per node)
    // fits under 3 only if the places of the rounds before were given back.
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all(
        [a!, b!].map((n) => n.checker.check(attempt(PASSWORD), resolver, 3)),
      );
      assert.deepEqual(results.map(outcome), ["ok", "ok"], `round ${round + 1}`);
    }
    // Failures still count: two more lock the client out on both nodes.
    assert.equal(outcome(await b!.checker.check(attempt("wrong"), resolver, 3)), "bad_credentials");
    assert.equal(outcome(await a!.checker.check(attempt("wrong"), resolver, 3)), "bad_credentials");
    assert.equal(outcome(await b!.checker.check(attempt(PASSWORD), resolver, 3)), "login_rate");
  });

  it("frees the places of a node that died mid-check once they expire", async () => {
    const [a, b] = await twoNodes(300);
    assert.ok(await a!.failures.reserve("192.0.2.1", 2));
    assert.ok(await a!.failures.reserve("192.0.2.1", 2));
    // Node a is gone without giving its places back.
    a!.link.close();
    assert.equal(await b!.failures.reserve("192.0.2.1", 2), undefined);
    let ticket: Awaited<ReturnType<SharedFailures["reserve"]>>;
    await pollUntil(async () => {
      ticket = await b!.failures.reserve("192.0.2.1", 2);
      return ticket !== undefined;
    }, "a's places expired");
    await ticket!.settle(false);
  });

  it("counts failures without a limit, so that a limit set later applies at once", async () => {
    const [a, b] = await twoNodes();
    const resolver = makeResolver();
    for (let i = 0; i < 2; i++) {
      assert.equal(
        outcome(await a!.checker.check(attempt(`guess ${i}`), resolver, 0)),
        "bad_credentials",
      );
    }
    assert.equal(outcome(await b!.checker.check(attempt(PASSWORD), resolver, 2)), "login_rate");
  });

  it("falls back to each node's own limit while the server is down (fail open, as the other limits)", async () => {
    const [a, b] = await twoNodes();
    const resolver = makeResolver();
    // One failure counted across the fleet, and on a, before the outage.
    assert.equal(outcome(await a!.checker.check(attempt("wrong"), resolver, 3)), "bad_credentials");
    await redis.kill();
    await pollUntil(() => !a!.link.shared && !b!.link.shared, "both links local");
    resolver.checks = 0;
    const results = await Promise.all(
      Array.from(
        { length: 12 },
        (_, i) => (i % 2 ? b! : a!).checker.check(attempt(`guess ${i}`), resolver, 3),
      ),
    );
    // a: 2 more of its own; b: 3. Each node's own limit, still with its
    // own attempts in flight counted as failures.
    assert.deepEqual(tally(results.map(outcome)), { bad_credentials: 5, login_rate: 7 });
    assert.equal(resolver.checks, 5);
    assert.ok(a!.counters.get("cluster_local_checks_total") > 0);
    await redis.start();
    await pollUntil(() => a!.link.shared && b!.link.shared, "both links shared again");
    // A new, empty server: the fleet's counts start again.
    assert.equal(outcome(await b!.checker.check(attempt(PASSWORD), resolver, 3)), "ok");
  });

  it("a check that ends while the server is down still counts its failure on the node", async () => {
    const [a] = await twoNodes();
    const ticket = await a!.failures.reserve("192.0.2.1", 1);
    assert.ok(ticket);
    await redis.kill();
    await pollUntil(() => !a!.link.shared, "the link local");
    await ticket.settle(true);
    assert.equal(await a!.failures.reserve("192.0.2.1", 1), undefined);
    await redis.start();
    await pollUntil(() => a!.link.shared, "the link shared again");
  });
});
