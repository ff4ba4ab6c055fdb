/**
 * LocalCourier and mail forwarding loops: a message whose header already
 * has Delivered-To for the address it is about to be delivered to has been
 * here before (Postfix local(8)); it fails with 5.4.6, and every copy local
 * delivery makes, forwards included, says where it was delivered.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { RecipientResolver } from "../../../src/aliases/mod.ts";
import { type LmtpCourier, LocalCourier } from "../../../src/delivery/mod.ts";
import { type DeliveryResult, Spool, type SpoolItem } from "../../../src/queue/mod.ts";
import type { Endpoint } from "../../../src/users/endpoint.ts";
import { collectText, listDir, makeTempDir, removeDir, retain } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "../queue/fixtures.ts";
import { BODY, RECEIVED_AT, resolverFor } from "./local_fixtures.ts";

const LMTP: Endpoint = { kind: "unix", path: "/run/test/lmtp" };

describe("LocalCourier: mail forwarding loops (Delivered-To)", () => {
  let root: string;
  let mailRoot: string;
  let spool: Spool;

  beforeEach(async () => {
    root = await makeTempDir("postern-local-loop-");
    mailRoot = join(root, "mail");
    spool = new Spool(join(root, "data"));
    await spool.init();
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(root);
  });

  function courier(resolver: RecipientResolver, lmtp?: LmtpCourier): LocalCourier {
    return retain(
      new LocalCourier(() => resolver, {
        mailRoot,
        hostname: "mx.ex.test",
        pipeTimeoutMs: 10_000,
        pipeCwd: root,
        ...(lmtp ? { lmtp: { courier: lmtp, endpointOf: () => LMTP } } : {}),
      }),
    );
  }

  async function item(to: string[], body = BODY): Promise<SpoolItem> {
    return await spoolMessage(spool, makeEnvelope({ to, received_at: RECEIVED_AT }), body);
  }

  function deliver(c: LocalCourier, it: SpoolItem, index: number): Promise<DeliveryResult> {
    return c.deliver(it, { address: it.envelope.to[index]!, index }, () => spool.openMessage(it));
  }

  function newDir(domain: string, user: string): string {
    return join(mailRoot, domain, user, "new");
  }

  async function looped(to: string, deliveredTo: string): Promise<SpoolItem> {
    return await item([to], `Delivered-To: ${deliveredTo}\r\n${BODY}`);
  }

  it("deliver() fails, 5.4.6, a message whose header already has Delivered-To for its mailbox", async () => {
    const c = courier(resolverFor(""));
    const msg = await looped("alice@ex.test", "Alice@EX.test");
    assert.deepEqual(await deliver(c, msg, 0), {
      status: "failed",
      error: "mail forwarding loop for alice@ex.test",
      dsnStatus: "5.4.6",
    });
    assert.deepEqual(await listDir(join(mailRoot)).catch(() => []), []);
  });

  it("deliver() fails an alias the message went through before, delivering to none of it", async () => {
    const c = courier(resolverFor("team: alice, bob\n"));
    const msg = await looped("team@ex.test", "team@ex.test");
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "failed");
    assert.ok(result.status === "failed");
    assert.equal(result.dsnStatus, "5.4.6");
    assert.equal(result.error, "mail forwarding loop for team@ex.test");
    assert.deepEqual(await listDir(join(mailRoot)).catch(() => []), []);
  });

  it("deliver() does not deliver again to a member mailbox the message reached before", async () => {
    const c = courier(resolverFor("team: alice, bob\n"));
    const msg = await looped("team@ex.test", "bob@ex.test");
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "failed");
    assert.ok(result.status === "failed");
    assert.match(result.error, /mail forwarding loop for bob@ex\.test/);
    assert.equal((await listDir(newDir("ex.test", "alice"))).length, 1);
    assert.deepEqual(await listDir(join(mailRoot, "ex.test")), ["alice"]);
  });

  it("deliver() delivers a message whose Delivered-To names another address, or is in its body", async () => {
    const c = courier(resolverFor(""));
    const other = await looped("alice@ex.test", "alice@other.test");
    assert.equal((await deliver(c, other, 0)).status, "sent");
    const inBody = await spoolMessage(
      spool,
      makeEnvelope({ to: ["bob@ex.test"], received_at: RECEIVED_AT }),
      `${BODY}Delivered-To: bob@ex.test\r\n`,
    );
    assert.equal((await deliver(c, inBody, 0)).status, "sent");
  });

  it("deliver() adds Delivered-To with the alias to the copy it forwards", async () => {
    const forwarded: string[] = [];
    const c = retain(
      new LocalCourier(() => resolverFor("fwd: x@remote.test\n"), {
        mailRoot,
        hostname: "mx.ex.test",
        pipeTimeoutMs: 10_000,
        pipeCwd: root,
        forward: async (_item, recipients, open) => {
          forwarded.push(await collectText(open()));
          return recipients.map(() => ({ status: "sent", detail: "smtp" }));
        },
      }),
    );
    const msg = await item(["Fwd@ex.test"]);
    assert.equal((await deliver(c, msg, 0)).status, "sent");
    assert.deepEqual(forwarded, [`Delivered-To: Fwd@ex.test\r\n${BODY}`]);
    // Back here, it is a loop.
    const back = await looped("fwd@ex.test", "Fwd@ex.test");
    assert.equal((await deliver(c, back, 0)).status, "failed");
    assert.equal(forwarded.length, 1);
  });

  it("deliverAll() reads the header once for every recipient of the message", async () => {
    const c = courier(resolverFor(""));
    const msg = await spoolMessage(
      spool,
      makeEnvelope({ to: ["alice@ex.test", "bob@ex.test"], received_at: RECEIVED_AT }),
      `Delivered-To: bob@ex.test\r\n${BODY}`,
    );
    let opened = 0;
    const results = await c.deliverAll(
      msg,
      msg.envelope.to.map((address, index) => ({ address, index, attempts: 0 })),
      () => {
        opened++;
        return spool.openMessage(msg);
      },
    );
    assert.deepEqual(results.map((r) => r.status), ["sent", "failed"]);
    // Once for the header, once for alice's copy.
    assert.equal(opened, 2);
  });

  it("deliverAll() leaves a mailbox the message reached before out of the LMTP transaction", async () => {
    const transactions: string[][] = [];
    const lmtp = {
      deliver(_endpoint: Endpoint, envelope: { to: readonly string[] }) {
        transactions.push([...envelope.to]);
        return Promise.resolve(
          new Map(envelope.to.map((a) => [a, { status: "sent" as const, detail: `lmtp:${a}` }])),
        );
      },
    } as unknown as LmtpCourier;
    const c = courier(resolverFor("team: alice, bob\n"), lmtp);
    const msg = await looped("team@ex.test", "bob@ex.test");
    const [result] = await c.deliverAll(
      msg,
      [{ address: "team@ex.test", index: 0, attempts: 0 }],
      () => spool.openMessage(msg),
    );
    assert.deepEqual(transactions, [["alice@ex.test"]]);
    assert.equal(result?.status, "failed");
    assert.ok(result?.status === "failed");
    assert.match(result.error, /mail forwarding loop for bob@ex\.test/);
  });
});
