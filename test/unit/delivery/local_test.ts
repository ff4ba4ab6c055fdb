import assert from "node:assert/strict";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type LocalDomain, RecipientResolver } from "../../../src/aliases/mod.ts";
import { LocalCourier } from "../../../src/delivery/mod.ts";
import { publicText } from "../../../src/outbound/bounce.ts";
import { type DeliveryResult, Spool, type SpoolItem } from "../../../src/queue/mod.ts";
import { listDir, makeTempDir, openFileDescriptors, removeDir, retain } from "../helpers.ts";
import { makeEnvelope, spoolMessage } from "../queue/fixtures.ts";
import { BODY, eachTarget, OPTIONS, RECEIVED_AT, resolverFor } from "./local_fixtures.ts";

const SECONDS = Math.floor(Date.parse(RECEIVED_AT) / 1000);
const BODY_LF = "Subject: test\nFrom: sender@client.test\n\nline one\nline two\n";

describe("LocalCourier", () => {
  let root: string;
  let mailRoot: string;
  let spool: Spool;

  beforeEach(async () => {
    root = await makeTempDir("postern-local-");
    mailRoot = join(root, "mail");
    spool = new Spool(join(root, "data"));
    await spool.init();
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(root);
  });

  function courier(resolver: RecipientResolver, hostname = "mx.ex.test"): LocalCourier {
    return retain(
      new LocalCourier(() => resolver, {
        mailRoot,
        hostname,
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

  it("deliver() stores the message in the user's Maildir with trace headers and LF endings", async () => {
    const c = courier(resolverFor(""));
    const msg = await item(["Alice+news@EX.test"]);
    const result = await deliver(c, msg, 0);
    assert.deepEqual(result, { status: "sent", detail: "maildir:alice@ex.test" });
    const name = `${SECONDS}.Q${msg.envelope.id}R0.mx.ex.test`;
    assert.deepEqual(await listDir(newDir("ex.test", "alice")), [name]);
    assert.equal(
      await readFile(join(newDir("ex.test", "alice"), name), "utf8"),
      `Return-Path: <sender@client.test>\nDelivered-To: alice@ex.test\n${BODY_LF}`,
    );
  });

  it("deliver() names the file after the recipient index so each recipient gets its own", async () => {
    const c = courier(resolverFor(""));
    const msg = await item(["alice@ex.test", "a.lice@ex.test"]);
    await deliver(c, msg, 0);
    await deliver(c, msg, 1);
    assert.deepEqual(await listDir(newDir("ex.test", "alice")), [
      `${SECONDS}.Q${msg.envelope.id}R0.mx.ex.test`,
      `${SECONDS}.Q${msg.envelope.id}R1.mx.ex.test`,
    ]);
  });

  it("deliver() escapes / and : of the host name in the file name", async () => {
    const c = courier(resolverFor(""), "odd/host:name");
    const msg = await item(["alice@ex.test"]);
    await deliver(c, msg, 0);
    assert.deepEqual(await listDir(newDir("ex.test", "alice")), [
      `${SECONDS}.Q${msg.envelope.id}R0.odd\\057host\\072name`,
    ]);
  });

  it("deliver() uses the null sender in Return-Path when the envelope sender is empty", async () => {
    const c = courier(resolverFor(""));
    const msg = await spoolMessage(
      spool,
      makeEnvelope({ from: "", to: ["bob@ex.test"], received_at: RECEIVED_AT }),
      BODY,
    );
    await deliver(c, msg, 0);
    const [name] = await listDir(newDir("ex.test", "bob"));
    const text = await readFile(join(newDir("ex.test", "bob"), name!), "utf8");
    assert.ok(text.startsWith("Return-Path: <>\nDelivered-To: bob@ex.test\n"), text);
  });

  it("deliver() expands aliases to every mailbox", async () => {
    const c = courier(resolverFor("team: alice, bob\n"));
    const msg = await item(["team@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "sent");
    assert.ok(result.status === "sent");
    assert.deepEqual(result.detail.split(",").sort(), [
      "maildir:alice@ex.test",
      "maildir:bob@ex.test",
    ]);
    assert.equal((await listDir(newDir("ex.test", "alice"))).length, 1);
    assert.equal((await listDir(newDir("ex.test", "bob"))).length, 1);
    const [name] = await listDir(newDir("ex.test", "bob"));
    const text = await readFile(join(newDir("ex.test", "bob"), name!), "utf8");
    assert.match(text, /^Return-Path: <sender@client\.test>\nDelivered-To: bob@ex\.test\n/);
  });

  it("deliver() does not store twice when the item was recovered and is delivered again", async () => {
    const c = courier(resolverFor(""));
    const msg = await item(["alice@ex.test"]);
    assert.deepEqual(await deliver(c, msg, 0), { status: "sent", detail: "maildir:alice@ex.test" });
    const recovered = { ...msg, recovered: true };
    assert.deepEqual(await deliver(c, recovered, 0), {
      status: "sent",
      detail: "maildir:alice@ex.test(already)",
    });
    assert.equal((await listDir(newDir("ex.test", "alice"))).length, 1);
  });

  it("deliver() does not store twice when the recipient was attempted before", async () => {
    const c = courier(resolverFor(""));
    const msg = await item(["alice@ex.test"]);
    await deliver(c, msg, 0);
    msg.state.recipients[0]!.attempts = 1;
    const again = await deliver(c, msg, 0);
    assert.deepEqual(again, { status: "sent", detail: "maildir:alice@ex.test(already)" });
    assert.equal((await listDir(newDir("ex.test", "alice"))).length, 1);
  });

  it("deliver() runs a pipe alias with the message and its environment", async () => {
    const script = join(root, "filter.sh");
    const out = join(root, "piped.txt");
    await writeFile(
      script,
      `#!/bin/sh\nprintf '%s|%s|%s|%s\\n' "$SENDER" "$RECIPIENT" "$ALIAS" "$QUEUE_ID" > '${out}'\ncat >> '${out}'\n`,
    );
    await chmod(script, 0o755);
    const c = courier(resolverFor(`tubo: | ${script} --flag\n`));
    const msg = await item(["Tubo+x@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.deepEqual(result, { status: "sent", detail: `| ${script} --flag` });
    assert.equal(
      await readFile(out, "utf8"),
      `sender@client.test|Tubo+x@ex.test|tubo@ex.test|${msg.envelope.id}\n` +
        `Return-Path: <sender@client.test>\nDelivered-To: Tubo+x@ex.test\n${BODY_LF}`,
    );
  });

  it("deliver() returns failed when a pipe alias exits 1", async () => {
    const c = courier(resolverFor("bad: | /bin/false\n"));
    const msg = await item(["bad@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "failed");
  });

  it("deliver() defers a remote forward and still stores the local copy", async () => {
    const c = courier(resolverFor("root: alice, admin@remote.test\n"));
    const msg = await item(["root@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "deferred");
    assert.ok(result.status === "deferred");
    assert.match(result.error, /forwarding to admin@remote\.test needs outbound delivery/);
    assert.equal((await listDir(newDir("ex.test", "alice"))).length, 1);
    // The retry recognizes the stored copy.
    msg.state.recipients[0]!.attempts = 1;
    await deliver(c, msg, 0);
    assert.equal((await listDir(newDir("ex.test", "alice"))).length, 1);
  });

  it("deliver() reports the targets it delivered while another defers, and skips them when told", async () => {
    const script = join(root, "count.sh");
    const runs = join(root, "runs.txt");
    await writeFile(script, `#!/bin/sh\ncat > /dev/null\necho run >> '${runs}'\n`);
    await chmod(script, 0o755);
    const forwards: string[] = [];
    let remoteUp = false;
    const c = retain(
      new LocalCourier(
        () => resolverFor(`team: p, a@remote.test, b@remote.test\np: | ${script}\n`),
        {
          mailRoot,
          hostname: "mx.ex.test",
          pipeTimeoutMs: 10_000,
          pipeCwd: root,
          forward: eachTarget((recipient) => {
            forwards.push(recipient.address);
            // a@ is delivered at once; b@ only once the remote side is up.
            return recipient.address === "a@remote.test" || remoteUp
              ? { status: "sent", detail: `smtp:${recipient.address}` }
              : { status: "deferred", error: "451 try later" };
          }),
        },
      ),
    );
    const msg = await item(["team@ex.test"]);
    const first = await deliver(c, msg, 0);
    assert.equal(first.status, "deferred");
    assert.ok(first.status === "deferred");
    assert.equal(first.done?.length, 2, "the pipe and a@ are recorded as delivered");
    remoteUp = true;
    const second = await c.deliver(
      msg,
      { address: "team@ex.test", index: 0, attempts: 1, done: first.done },
      () => spool.openMessage(msg),
    );
    assert.equal(second.status, "sent");
    // Each target got the message exactly once.
    assert.equal(await readFile(runs, "utf8"), "run\n");
    assert.deepEqual(forwards, ["a@remote.test", "b@remote.test", "b@remote.test"]);
  });

  it("deliver() does not attempt again a target that failed for good while another deferred, and fails the recipient once the rest is final", async () => {
    // A pre-delivery-attempt hook that dumps a@ on its first attempt and
    // would let it through afterwards; b@ waits for the remote side.
    const calls = new Map<string, number>();
    let remoteUp = false;
    const c = retain(
      new LocalCourier(() => resolverFor("list: a@remote.test, b@remote.test\n"), {
        mailRoot,
        hostname: "mx.ex.test",
        pipeTimeoutMs: 10_000,
        pipeCwd: root,
        forward: eachTarget((recipient) => {
          const n = (calls.get(recipient.address) ?? 0) + 1;
          calls.set(recipient.address, n);
          if (recipient.address === "a@remote.test" && n === 1) {
            return { status: "failed", error: "Dumped by policy (#5.7.1)", dsnStatus: "5.7.1" };
          }
          return recipient.address === "a@remote.test" || remoteUp
            ? { status: "sent", detail: `smtp:${recipient.address}` }
            : { status: "deferred", error: "451 try later" };
        }),
      }),
    );
    const msg = await item(["list@ex.test"]);
    const first = await deliver(c, msg, 0);
    assert.equal(first.status, "deferred");
    assert.ok(first.status === "deferred");
    // The deferral names the failure, so a message that expires bounces with it.
    assert.match(first.error, /451 try later; Dumped by policy \(#5\.7\.1\)/);
    assert.equal(first.done?.length, 1, "the dumped target is recorded");
    const second = await c.deliver(
      msg,
      { address: "list@ex.test", index: 0, attempts: 1, done: first.done },
      () => spool.openMessage(msg),
    );
    assert.equal(second.status, "deferred", "b@ still waits");
    assert.ok(second.status === "deferred");
    assert.match(second.error, /Dumped by policy/);
    remoteUp = true;
    const third = await c.deliver(
      msg,
      { address: "list@ex.test", index: 0, attempts: 2, done: first.done },
      () => spool.openMessage(msg),
    );
    // Final: the sender gets a bounce for the dumped target, which says
    // that the other one took the message.
    assert.deepEqual(third, {
      status: "failed",
      error: "partly delivered: the message reached some of this address's destinations, " +
        "not the others: Dumped by policy (#5.7.1)",
      dsnStatus: "5.7.1",
    });
    assert.deepEqual(Object.fromEntries(calls), { "a@remote.test": 1, "b@remote.test": 3 });
  });

  it("deliver() runs a pipe target that failed once only, while a sibling defers", async () => {
    const script = join(root, "fail.sh");
    const runs = join(root, "runs.txt");
    await writeFile(script, `#!/bin/sh\ncat > /dev/null\necho run >> '${runs}'\nexit 1\n`);
    await chmod(script, 0o755);
    let remoteUp = false;
    const c = retain(
      new LocalCourier(() => resolverFor(`team: p, b@remote.test\np: | ${script}\n`), {
        mailRoot,
        hostname: "mx.ex.test",
        pipeTimeoutMs: 10_000,
        pipeCwd: root,
        forward: eachTarget(() =>
          remoteUp
            ? { status: "sent", detail: "smtp:b@remote.test" }
            : { status: "deferred", error: "451 try later" }
        ),
      }),
    );
    const msg = await item(["team@ex.test"]);
    const first = await deliver(c, msg, 0);
    assert.equal(first.status, "deferred");
    assert.ok(first.status === "deferred");
    remoteUp = true;
    const second = await c.deliver(
      msg,
      { address: "team@ex.test", index: 0, attempts: 1, done: first.done },
      () => spool.openMessage(msg),
    );
    assert.equal(second.status, "failed");
    assert.ok(second.status === "failed");
    assert.match(second.error, /exited with status 1/);
    assert.equal(await readFile(runs, "utf8"), "run\n", "the failed pipe ran once");
  });

  it("deliver() attempts again a target whose failure record cannot be read", async () => {
    const c = courier(resolverFor("team: alice\n"));
    const msg = await item(["team@ex.test"]);
    const result = await c.deliver(
      msg,
      { address: "team@ex.test", index: 0, attempts: 1, done: ["failed {not json"] },
      () => spool.openMessage(msg),
    );
    assert.deepEqual(result, { status: "sent", detail: "maildir:alice@ex.test" });
  });

  it("deliver() prefers deferred over failed when destinations disagree", async () => {
    // A pipe alias takes the whole right-hand side, so build the mix with two aliases.
    const c = courier(resolverFor("mix: p, x@remote.test\np: | /bin/false\n"));
    const msg = await item(["mix@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "deferred");
    assert.ok(result.status === "deferred");
    assert.match(result.error, /forwarding to x@remote\.test/);
    assert.match(result.error, /pipe "\/bin\/false" exited with status 1/);
  });

  it("deliver() returns failed when aliases nest too deep", async () => {
    const lines = Array.from({ length: 12 }, (_, i) => `a${i}: a${i + 1}`).join("\n");
    const c = courier(resolverFor(lines, ["a12"]));
    const msg = await item(["a0@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "failed");
    assert.ok(result.status === "failed");
    assert.match(result.error, /nested more than 10 levels/);
    assert.equal(result.dsnStatus, "5.2.4");
  });

  it("deliver() returns deferred when the Maildir cannot be created", async () => {
    await writeFile(mailRoot, "a file where the mail root should be");
    const c = courier(resolverFor(""));
    const msg = await item(["alice@ex.test"]);
    const result = await deliver(c, msg, 0);
    assert.equal(result.status, "deferred");
    assert.ok(result.status === "deferred");
    // The log gets the path; a bounce gets the public part only.
    assert.ok(result.error.includes(`[private: maildir ${join(mailRoot, "ex.test", "alice")}: `));
    assert.equal(publicText(result.error), "local delivery failed: mailbox unavailable");
  });

  it("deliver() uses the resolver in force at delivery time", async () => {
    let current = resolverFor("");
    const c = retain(
      new LocalCourier(() => current, {
        mailRoot,
        hostname: "mx",
        pipeTimeoutMs: 10_000,
        pipeCwd: root,
      }),
    );
    const msg = await item(["sales@ex.test"]);
    current = resolverFor("sales: bob\n");
    assert.deepEqual(await deliver(c, msg, 0), { status: "sent", detail: "maildir:bob@ex.test" });
  });

  it("deliver() escapes unsafe user names in the mailbox path", async () => {
    const domain: LocalDomain = {
      name: "any.test",
      anyUser: true,
      users: new Set(),
      aliases: new Map(),
    };
    const anyCourier = retain(
      new LocalCourier(
        () => new RecipientResolver(new Map([["any.test", domain]]), OPTIONS),
        { mailRoot, hostname: "mx", pipeTimeoutMs: 10_000, pipeCwd: root },
      ),
    );
    const msg = await item(['"../x"@any.test']);
    const result = await deliver(anyCourier, msg, 0);
    assert.equal(result.status, "sent");
    assert.deepEqual(await listDir(mailRoot), ["any.test"]);
    const boxes = await listDir(join(mailRoot, "any.test"));
    assert.equal(boxes.length, 1);
    assert.ok(!boxes[0]!.startsWith("."), boxes[0]);
    assert.ok(!boxes[0]!.includes("/"), boxes[0]);
  });

  it("deliver() does not keep a file descriptor open for every mailbox it delivered to", async () => {
    const domain: LocalDomain = {
      name: "any.test",
      anyUser: true,
      users: new Set(),
      aliases: new Map(),
    };
    const c = retain(
      new LocalCourier(
        () => new RecipientResolver(new Map([["any.test", domain]]), OPTIONS),
        { mailRoot, hostname: "mx", pipeTimeoutMs: 10_000, pipeCwd: root },
      ),
    );
    const mailboxes = 40;
    const msg = await item(Array.from({ length: mailboxes }, (_, i) => `user${i}@any.test`));
    const before = await openFileDescriptors();
    for (let i = 0; i < mailboxes; i++) {
      assert.equal((await deliver(c, msg, i)).status, "sent");
    }
    const grown = (await openFileDescriptors()) - before;
    // An any_user domain accepts any local part, so a descriptor held per
    // mailbox lets a sender exhaust the process's descriptors.
    assert.ok(
      grown < mailboxes / 4,
      `${grown} descriptors still open after ${mailboxes} mailboxes`,
    );
  });
});
