import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Counters, Logger, MailLog } from "../../../src/log/mod.ts";
import { Bouncer, PARTLY_DELIVERED, privateDetail } from "../../../src/outbound/bounce.ts";
import { type NotifiedRecipient, Spool, type SpoolItem } from "../../../src/queue/mod.ts";
import { durabilityFs } from "../../../src/queue/fs_calls.ts";
import { rfc5322Date } from "../../../src/smtp/mod.ts";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { collectText, makeTempDir, removeDir } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "../queue/fixtures.ts";

const NOW = Date.parse("2026-11-22T05:33:00.000Z");
const RECEIVED_AT = "2026-11-20T08:00:00.000Z";
const BODY = "From: alice@ex.test\r\nTo: bob@remote.test\r\nSubject: Hello\r\n\r\nbody\r\n";

const REFUSED: NotifiedRecipient = {
  address: "bob@remote.test",
  error: "mx.remote.test said: 550 5.1.1 No such user",
  status: "5.1.1",
  remoteMta: "mx.remote.test",
};

describe("Bouncer.notify", () => {
  let root: string;
  let spool: Spool;
  let mailLines: string[];
  let counters: Counters;
  let queued: SpoolItem[];
  let bouncer: Bouncer;

  beforeEach(async () => {
    root = await makeTempDir("postern-bounce-");
    spool = new Spool(root);
    await spool.init();
    mailLines = [];
    counters = new Counters();
    queued = [];
    bouncer = new Bouncer({
      spool,
      hostname: () => "mx.ex.test",
      onQueued: (item) => queued.push(item),
      mailLog: new MailLog((line) => mailLines.push(line), counters),
      logger: new Logger("error", () => {}),
      maxQueueLifetimeMs: () => 5 * 86_400_000,
      now: () => NOW,
    });
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(root);
  });

  async function original(from: string, dsn = false): Promise<SpoolItem> {
    const envelope = makeEnvelope({
      from,
      to: ["bob@remote.test"],
      received_at: RECEIVED_AT,
      ...(dsn ? { dsn: true } : {}),
    });
    return await spoolMessage(spool, envelope, BODY);
  }

  /** The spool's items other than `item`: what notify() queued. */
  async function others(item: SpoolItem): Promise<SpoolItem[]> {
    const { items } = await spool.load();
    return items.filter((i) => i.envelope.id !== item.envelope.id);
  }

  it("queues a failure report from the null sender to the sender, logged and counted once", async () => {
    const item = await original("alice@ex.test");
    await bouncer.notify(item, "failed", [REFUSED]);
    assert.equal(queued.length, 1);
    const dsn = queued[0]!;
    assert.equal(dsn.envelope.from, "");
    assert.deepEqual(dsn.envelope.to, ["alice@ex.test"]);
    assert.equal(dsn.envelope.dsn, true);
    assert.notEqual(dsn.envelope.id, item.envelope.id);
    assert.deepEqual((await others(item)).map((i) => i.envelope.id), [dsn.envelope.id]);
    const text = await collectText(spool.openMessage(dsn));
    assert.match(text, /multipart\/report; report-type=delivery-status/);
    assert.match(text, /Final-Recipient: rfc822; ?bob@remote\.test/);
    assert.match(text, /Status: 5\.1\.1/);
    assert.match(text, /Diagnostic-Code: smtp; ?550 5\.1\.1 No such user/);
    assert.equal(mailLines.length, 1);
    assert.equal(counters.get("dsn_total", { kind: "failed" }), 1);
    assert.match(
      mailLines[0]!,
      new RegExp(
        `qid=${item.envelope.id} event=dsn kind=failed dsn_qid=${dsn.envelope.id} to=<alice@ex\\.test>`,
      ),
    );
  });

  it("queues a delay warning that says until when it will retry", async () => {
    const item = await original("alice@ex.test");
    await bouncer.notify(item, "delayed", [{ ...REFUSED, status: "4.2.2" }]);
    assert.equal(queued.length, 1);
    const text = await collectText(spool.openMessage(queued[0]!));
    assert.match(text, /Action: delayed/);
    // Arrival plus the queue lifetime (5 days).
    const until = rfc5322Date(new Date(Date.parse(RECEIVED_AT) + 5 * 86_400_000));
    assert.ok(text.includes(`Will-Retry-Until: ${until}`), text);
    assert.match(mailLines[0]!, / event=dsn kind=delayed /);
  });

  it("gives the notification an envelope of its own: now, from us, no TLS, no retry date when failed", async () => {
    const item = await original("alice@ex.test");
    await bouncer.notify(item, "failed", [REFUSED]);
    const { envelope } = queued[0]!;
    assert.equal(envelope.received_at, new Date(NOW).toISOString());
    assert.deepEqual(envelope.client, { ip: "127.0.0.1", helo: "mx.ex.test", tls: false });
    const text = await collectText(spool.openMessage(queued[0]!));
    assert.ok(text.includes(`Arrival-Date: ${rfc5322Date(new Date(RECEIVED_AT))}`), text);
    assert.ok(text.includes(`Last-Attempt-Date: ${rfc5322Date(new Date(NOW))}`), text);
    assert.doesNotMatch(text, /Will-Retry-Until/);
    assert.match(text, /Remote-MTA: dns; mx\.remote\.test/);
  });

  it("keeps a recipient's own status over one in its error text", async () => {
    const item = await original("alice@ex.test");
    await bouncer.notify(item, "failed", [{ ...REFUSED, status: "5.2.2" }]);
    const text = await collectText(spool.openMessage(queued[0]!));
    assert.match(text, /Status: 5\.2\.2/);
    assert.doesNotMatch(text, /Status: 5\.1\.1/);
  });

  it("uses the clock when no now() is given", async () => {
    const clocked = new Bouncer({
      spool,
      hostname: () => "mx.ex.test",
      onQueued: (i) => queued.push(i),
      mailLog: new MailLog(() => {}, new Counters()),
      logger: new Logger("error", () => {}),
      maxQueueLifetimeMs: () => 86_400_000,
    });
    const item = await original("alice@ex.test");
    const before = Date.now();
    await clocked.notify(item, "failed", [REFUSED]);
    const at = Date.parse(queued[0]!.envelope.received_at);
    assert.ok(at >= before - 1000 && at <= Date.now() + 1000, queued[0]!.envelope.received_at);
  });

  for (const kind of ["failed", "delayed"] as const) {
    it(`takes a ${kind} recipient's status from its error when it has none`, async () => {
      const item = await original("alice@ex.test");
      const error = "connection refused by mx.remote.test";
      await bouncer.notify(item, kind, [
        { address: "bob@remote.test", error, status: undefined, remoteMta: undefined },
      ]);
      const text = await collectText(spool.openMessage(queued[0]!));
      assert.match(text, new RegExp(`Status: ${kind === "failed" ? "5" : "4"}\\.0\\.0`));
      // Our own words when no remote server said anything; no Remote-MTA.
      assert.match(text, /Diagnostic-Code: X-Postern; connection refused by mx\.remote\.test/);
      assert.doesNotMatch(text, /Remote-MTA/);
    });
  }

  it("leaves out of the report what the error marks as private: paths, command lines, output", async () => {
    const item = await original("alice@ex.test");
    const error = "expired after 5d in the queue: local delivery failed: mailbox unavailable" +
      privateDetail("maildir /var/lib/postern/mail/ex.test/bob: EIO 4.2.2") +
      "; pipe delivery failed (exit status 1)" +
      privateDetail('pipe "/srv/secret/filter --key k" exited with status 1: [no] 5.7.1');
    for (const kind of ["failed", "delayed"] as const) {
      queued.length = 0;
      await bouncer.notify(item, kind, [
        { address: "bob@ex.test", error, status: undefined, remoteMta: undefined },
      ]);
      // Unfolded (RFC 5322 section 2.2.3).
      const text = (await collectText(spool.openMessage(queued[0]!))).replace(/\r\n[ \t]+/g, " ");
      assert.match(
        text,
        /Diagnostic-Code: X-Postern; expired after 5d in the queue: local delivery failed: mailbox unavailable; pipe delivery failed \(exit status 1\)\r\n/,
      );
      for (const secret of ["/var/lib/postern", "/srv/secret", "--key", "EIO", "[no]", "private"]) {
        assert.ok(!text.includes(secret), `${kind}: ${secret} in\n${text}`);
      }
      // The status comes from the public text too, not from what a pipe printed.
      assert.match(text, new RegExp(`Status: ${kind === "failed" ? "5" : "4"}\\.0\\.0`));
    }
  });

  it("keeps all of a partly delivered alias's error, remote replies in it included", async () => {
    const item = await original("alice@ex.test");
    const error = `${PARTLY_DELIVERED}: the message reached some of this address's ` +
      "destinations, not the others: mx.remote.test said: 550 5.1.1 No such user";
    await bouncer.notify(item, "failed", [{ ...REFUSED, error }]);
    const text = (await collectText(spool.openMessage(queued[0]!))).replace(/\r\n[ \t]+/g, " ");
    assert.ok(text.includes(`Diagnostic-Code: X-Postern; ${error}\r\n`), text);
  });

  it("leaves Diagnostic-Code out when there is no error text", async () => {
    const item = await original("alice@ex.test");
    await bouncer.notify(item, "failed", [{ ...REFUSED, error: "" }]);
    const text = await collectText(spool.openMessage(queued[0]!));
    assert.doesNotMatch(text, /Diagnostic-Code/);
  });

  it("rejects and leaves nothing half-written when the notification cannot be queued", async () => {
    const item = await original("alice@ex.test");
    // The notification's file cannot be made in queue/, neither by taking
    // a spare nor by creating it (a full or failing disk).
    const { rename, open } = durabilityFs;
    const failing = () => Promise.reject(Object.assign(new Error("I/O error"), { code: "EIO" }));
    durabilityFs.rename = failing;
    durabilityFs.open = failing;
    try {
      await assert.rejects(bouncer.notify(item, "failed", [REFUSED]), { code: "EIO" });
    } finally {
      Object.assign(durabilityFs, { rename, open });
    }
    assert.deepEqual(queued, []);
    assert.deepEqual(mailLines, []);
    assert.deepEqual(await readdir(join(spool.root, "incoming")), []);
    assert.deepEqual(await others(item), []);
  });

  for (
    const [what, from, dsn] of [
      ["mail from the null sender (RFC 5321 section 4.5.5)", "", false],
      ["a notification itself (RFC 3464 section 2)", "", true],
      ["a notification with a sender, should one exist", "alice@ex.test", true],
    ] as const
  ) {
    it(`sends nothing about ${what}, and resolves without an error`, async () => {
      const item = await original(from, dsn);
      await bouncer.notify(item, "failed", [REFUSED]);
      await bouncer.notify(item, "delayed", [REFUSED]);
      assert.deepEqual(queued, []);
      assert.deepEqual(await others(item), []);
      assert.deepEqual(mailLines, []);
      assert.equal(counters.get("dsn_total", { kind: "failed" }), 0);
    });
  }

  it("sends nothing when no recipient is named", async () => {
    const item = await original("alice@ex.test");
    await bouncer.notify(item, "failed", []);
    assert.deepEqual(queued, []);
    assert.deepEqual(await others(item), []);
    assert.deepEqual(mailLines, []);
  });
});
