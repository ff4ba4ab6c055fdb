/**
 * LocalCourier: what an envelope recipient's result says of its targets:
 * an alias's remote targets in one call, the enhanced status and remote
 * host of the target that decides, a partly delivered alias, and failures
 * no retry can heal (limits of alias expansion, a mailbox name no file
 * system takes).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { RecipientResolver } from "../../../src/aliases/mod.ts";
import { LocalCourier } from "../../../src/delivery/mod.ts";
import { publicText } from "../../../src/outbound/bounce.ts";
import { type DeliveryResult, Spool, type SpoolItem } from "../../../src/queue/mod.ts";
import { listDir, makeTempDir, removeDir, retain } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "../queue/fixtures.ts";
import { BODY, eachTarget, RECEIVED_AT, resolverFor } from "./local_fixtures.ts";

describe("LocalCourier results", () => {
  let root: string;
  let mailRoot: string;
  let spool: Spool;

  beforeEach(async () => {
    root = await makeTempDir("postern-local-results-");
    mailRoot = join(root, "mail");
    spool = new Spool(join(root, "data"));
    await spool.init();
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(root);
  });

  function courier(resolver: RecipientResolver): LocalCourier {
    return retain(
      new LocalCourier(() => resolver, {
        mailRoot,
        hostname: "mx.ex.test",
        pipeTimeoutMs: 10_000,
        pipeCwd: root,
      }),
    );
  }

  async function item(to: string[]): Promise<SpoolItem> {
    return await spoolMessage(spool, makeEnvelope({ to, received_at: RECEIVED_AT }), BODY);
  }

  function deliver(c: LocalCourier, it: SpoolItem, index: number): Promise<DeliveryResult> {
    return c.deliver(it, { address: it.envelope.to[index]!, index }, () => spool.openMessage(it));
  }

  function newDir(domain: string, user: string): string {
    return join(mailRoot, domain, user, "new");
  }

  it("deliver() forwards an alias's remote targets in one call, each with its own result", async () => {
    const calls: string[][] = [];
    const c = retain(
      new LocalCourier(
        () => resolverFor("team: a@remote.test, alice, b@remote.test, c@other.test\n"),
        {
          mailRoot,
          hostname: "mx.ex.test",
          pipeTimeoutMs: 10_000,
          pipeCwd: root,
          forward: (_item, recipients) => {
            calls.push(recipients.map((r) => r.address));
            assert.ok(recipients.every((r) => r.index === 0 && r.attempts === 0));
            // One answer short: the target without one waits.
            return Promise.resolve([
              { status: "sent", detail: "smtp:a" },
              { status: "deferred", error: "b later" },
            ]);
          },
        },
      ),
    );
    const msg = await item(["team@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.deepEqual(calls, [["a@remote.test", "b@remote.test", "c@other.test"]]);
    assert.equal(result.status, "deferred");
    assert.ok(result.status === "deferred");
    assert.equal(
      result.error,
      "partly delivered: the message reached some of this address's destinations, " +
        "not the others: b later; outbound delivery gave no result",
    );
    assert.deepEqual(result.done?.sort(), ["forward:a@remote.test", "mailbox:alice@ex.test"]);
  });

  it("deliver() keeps the enhanced status and remote host of the target that decides the result", async () => {
    let answer: DeliveryResult = {
      status: "deferred",
      error: "mx.far.test said: 451 4.2.1 busy",
      dsnStatus: "4.2.1",
      remoteMta: "mx.far.test",
    };
    const c = retain(
      new LocalCourier(() => resolverFor("list: alice, x@far.test\n"), {
        mailRoot,
        hostname: "mx.ex.test",
        pipeTimeoutMs: 10_000,
        pipeCwd: root,
        forward: eachTarget(() => answer),
      }),
    );
    const msg = await item(["list@ex.test"]);
    const deferred = await deliver(c, msg, 0);
    assert.equal(deferred.status, "deferred");
    assert.ok(deferred.status === "deferred");
    assert.equal(deferred.dsnStatus, "4.2.1");
    assert.equal(deferred.remoteMta, "mx.far.test");
    answer = { status: "failed", error: "far.test accepts no mail", dsnStatus: "5.1.10" };
    const failed = await c.deliver(
      msg,
      { address: "list@ex.test", index: 0, attempts: 1, done: deferred.done },
      () => spool.openMessage(msg),
    );
    assert.equal(failed.status, "failed");
    assert.ok(failed.status === "failed");
    assert.equal(failed.dsnStatus, "5.1.10");
    assert.equal(failed.remoteMta, undefined);
  });

  it("deliver() says an alias was partly delivered when some targets took the message and one failed for good", async () => {
    const c = courier(resolverFor("mixed: alice, p\np: | /bin/false --secret\n"));
    const msg = await item(["mixed@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "failed");
    assert.ok(result.status === "failed");
    assert.equal(
      publicText(result.error),
      "partly delivered: the message reached some of this address's destinations, " +
        "not the others: pipe delivery failed (exit status 1)",
    );
    assert.match(result.error, /--secret/, "the log keeps the command");
    assert.equal((await listDir(newDir("ex.test", "alice"))).length, 1);
    // Nothing delivered: no such words.
    const none = courier(resolverFor("p: | /bin/false\n"));
    const other = await item(["p@ex.test"]);
    const failed = await deliver(none, other, 0);
    assert.ok(failed.status === "failed");
    assert.equal(publicText(failed.error), "pipe delivery failed (exit status 1)");
  });

  it("deliver() fails at once, 5.2.4, past the alias-resolve hook's limit on calls", async () => {
    const c = retain(
      new LocalCourier(() => resolverFor(""), {
        mailRoot,
        hostname: "mx.ex.test",
        pipeTimeoutMs: 10_000,
        pipeCwd: root,
        // A hook that answers each address with 20 new names, 3 levels deep.
        extraTargets: (address) => {
          const local = address.split("@")[0]!;
          return Promise.resolve(
            local.split("-").length > 3 ? [] : Array.from({ length: 20 }, (_, i) => ({
              kind: "address" as const,
              address: `${local}-${i}@ex.test`,
            })),
          );
        },
      }),
    );
    const msg = await item(["alice@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "failed");
    assert.ok(result.status === "failed");
    assert.equal(result.dsnStatus, "5.2.4");
    assert.match(result.error, /the alias-resolve hook was asked more than 1000 times/);
  });

  it("deliver() fails at once, 5.2.0, when a mailbox's name is too long for the file system", async () => {
    const long = "x".repeat(300);
    const c = courier(resolverFor(`longbox: ${long}\n`));
    const msg = await item(["longbox@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "failed");
    assert.ok(result.status === "failed");
    assert.equal(result.dsnStatus, "5.2.0");
    assert.equal(publicText(result.error), "local delivery failed: mailbox unavailable");
    assert.match(result.error, /ENAMETOOLONG/);
  });
});
