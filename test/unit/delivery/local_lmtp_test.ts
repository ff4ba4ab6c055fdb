/**
 * LocalCourier.deliverAll() with LMTP domains: the mailboxes of a whole
 * message (aliases expanded, duplicates once, targets already delivered
 * left out) go in one LMTP transaction per server, and each envelope
 * recipient's result combines its targets' results; other domains keep
 * their Maildirs.
 */

import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type LocalDomain, parseAliases, RecipientResolver } from "../../../src/aliases/mod.ts";
import { type LmtpCourier, LocalCourier } from "../../../src/delivery/mod.ts";
import { type DeliveryResult, Spool } from "../../../src/queue/mod.ts";
import type { Endpoint } from "../../../src/users/endpoint.ts";
import { makeTempDir, removeDir } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "../queue/fixtures.ts";

const LMTP: Endpoint = { kind: "unix", path: "/run/test/lmtp" };

function domain(name: string, aliases = ""): LocalDomain {
  return { name, anyUser: true, users: new Set(), aliases: parseAliases(aliases, name) };
}

/** An LMTP courier that records each transaction and answers from `answers` ("sent" otherwise). */
function fakeLmtp(answers: Record<string, DeliveryResult> = {}) {
  const calls: Array<{ endpoint: Endpoint; from: string; to: string[] }> = [];
  const courier = {
    deliver(endpoint: Endpoint, envelope: { from: string; to: readonly string[] }) {
      calls.push({ endpoint, from: envelope.from, to: [...envelope.to] });
      return Promise.resolve(
        new Map(
          envelope.to.map((a) => [a, answers[a] ?? { status: "sent", detail: `lmtp:${a}` }]),
        ),
      );
    },
  };
  return { calls, courier: courier as unknown as LmtpCourier };
}

describe("LocalCourier.deliverAll() with LMTP", () => {
  let root: string;
  let spool: Spool;
  beforeEach(async () => {
    root = await makeTempDir("postern-local-lmtp-");
    spool = new Spool(join(root, "data"));
    await spool.init();
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(root);
  });

  function courier(lmtp: LmtpCourier): LocalCourier {
    const resolver = new RecipientResolver(
      new Map([
        ["ex.test", domain("ex.test", "team: alice, bob, keep@maildir.test\n")],
        ["maildir.test", domain("maildir.test")],
      ]),
      { suffixSeparators: "+", dropCharacters: "." },
    );
    return new LocalCourier(() => resolver, {
      mailRoot: join(root, "mail"),
      hostname: "mx.test",
      pipeTimeoutMs: 10_000,
      pipeCwd: root,
      lmtp: { courier: lmtp, endpointOf: (d) => d === "ex.test" ? LMTP : undefined },
    });
  }

  it("sends the mailboxes of the whole message in one transaction, each once", async () => {
    const { calls, courier: lmtp } = fakeLmtp({
      "bob@ex.test": { status: "deferred", error: "452 4.2.2 full for now" },
    });
    const to = ["alice@ex.test", "team@ex.test", "carol+tag@ex.test", "dave@maildir.test"];
    const item = await spoolMessage(spool, makeEnvelope({ to }), "Subject: x\r\n\r\nbody\r\n");
    const results = await courier(lmtp).deliverAll(
      item,
      to.map((address, index) => ({ address, index, attempts: 0 })),
      () => spool.openMessage(item),
    );
    assert.equal(calls.length, 1, JSON.stringify(calls));
    assert.deepEqual(calls[0]!.endpoint, LMTP);
    assert.equal(calls[0]!.from, "sender@client.test");
    assert.deepEqual(calls[0]!.to.sort(), ["alice@ex.test", "bob@ex.test", "carol@ex.test"]);
    assert.deepEqual(results[0], { status: "sent", detail: "lmtp:alice@ex.test" });
    // team@ reached alice and the Maildir of keep@, and waits for bob: a
    // retry skips what it delivered.
    assert.equal(results[1]!.status, "deferred");
    assert.deepEqual(
      "done" in results[1]! ? results[1].done?.sort() : undefined,
      ["mailbox:alice@ex.test", "mailbox:keep@maildir.test"],
    );
    assert.deepEqual(results[2], { status: "sent", detail: "lmtp:carol@ex.test" });
    assert.equal(results[3]!.status, "sent");
    assert.equal((await readdir(join(root, "mail", "maildir.test", "dave", "new"))).length, 1);
    assert.equal((await readdir(join(root, "mail", "maildir.test", "keep", "new"))).length, 1);
  });

  it("leaves out the targets an earlier attempt delivered", async () => {
    const { calls, courier: lmtp } = fakeLmtp();
    const item = await spoolMessage(spool, makeEnvelope({ to: ["team@ex.test"] }), "x\r\n");
    const [result] = await courier(lmtp).deliverAll(
      item,
      [{
        address: "team@ex.test",
        index: 0,
        attempts: 1,
        done: ["mailbox:alice@ex.test", "mailbox:keep@maildir.test"],
      }],
      () => spool.openMessage(item),
    );
    assert.deepEqual(calls.map((c) => c.to), [["bob@ex.test"]]);
    assert.equal(result!.status, "sent");
  });
});
