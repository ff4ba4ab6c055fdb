/**
 * The LMTP courier against smtp-server in LMTP mode on a Unix socket:
 * one transaction per message, each recipient's reply (at RCPT or after
 * the data) as its result, connections reused, a kept connection the
 * server closed replaced, and a server that is not there.
 */

import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SMTPServer } from "smtp-server";
import { LmtpCourier } from "../../../src/delivery/lmtp.ts";
import type { Endpoint } from "../../../src/users/endpoint.ts";
import { FakeMx, type FakeMxConnection } from "../../support/fake_mx.ts";
import { chunksOf, makeTempDir, removeDir } from "../helpers.ts";

/** Replies by local part: rcpt-perm/rcpt-temp at RCPT, data-perm/data-temp after the data. */
function replyError(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}

interface Transaction {
  from: string;
  to: string[];
  body: string;
}

describe("LmtpCourier", () => {
  let dir: string;
  let server: SMTPServer;
  let endpoint: Endpoint;
  const transactions: Transaction[] = [];
  const sockets: Socket[] = [];

  before(async () => {
    dir = await makeTempDir("postern-lmtp-");
    server = new SMTPServer({
      lmtp: true,
      logger: false,
      authOptional: true,
      disabledCommands: ["AUTH", "STARTTLS"],
      onMailFrom(address, _session, callback) {
        if (address.address.startsWith("refused@")) {
          return callback(replyError(550, "5.7.1 Sender refused"));
        }
        callback();
      },
      onRcptTo(address, _session, callback) {
        const local = address.address.split("@")[0];
        if (local === "rcpt-perm") return callback(replyError(550, "5.1.1 No such user"));
        if (local === "rcpt-temp") return callback(replyError(450, "4.2.1 Try later"));
        callback();
      },
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          const to = session.envelope.rcptTo.map((r) => r.address);
          transactions.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
            to,
            body: Buffer.concat(chunks).toString("utf8"),
          });
          callback(
            null,
            to.map((address) => {
              const local = address.split("@")[0];
              if (local === "data-perm") return replyError(552, "5.2.2 Mailbox full");
              if (local === "data-temp") return replyError(452, "4.2.2 Mailbox full, for now");
              return `2.0.0 <${address}> Saved`;
            }) as unknown as string,
          );
        });
      },
    });
    server.server.on("connection", (socket: Socket) => sockets.push(socket));
    const path = join(dir, "lmtp");
    await new Promise<void>((resolve) => server.listen(path, resolve));
    endpoint = { kind: "unix", path };
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await removeDir(dir);
  });

  const message = () => chunksOf("Subject: t\r\n\r\nline one\r\n.starts with a dot\r\n");

  it("sends all recipients in one transaction and takes each one's reply as its result", async () => {
    const courier = new LmtpCourier({ hostname: "mx.test" });
    try {
      const before = transactions.length;
      const results = await courier.deliver(endpoint, {
        from: "s@example.org",
        to: [
          "ok@x.test",
          "rcpt-perm@x.test",
          "rcpt-temp@x.test",
          "data-perm@x.test",
          "data-temp@x.test",
        ],
      }, message);
      assert.equal(transactions.length, before + 1, "one transaction");
      const t = transactions.at(-1)!;
      assert.deepEqual(t.to, ["ok@x.test", "data-perm@x.test", "data-temp@x.test"]);
      assert.equal(t.from, "s@example.org");
      assert.equal(t.body, "Subject: t\r\n\r\nline one\r\n.starts with a dot\r\n");
      assert.deepEqual(results.get("ok@x.test"), { status: "sent", detail: "lmtp:ok@x.test" });
      const perm = results.get("rcpt-perm@x.test")!;
      assert.equal(perm.status, "failed");
      assert.match("error" in perm ? perm.error : "", /550 5\.1\.1 No such user/);
      assert.equal("dsnStatus" in perm ? perm.dsnStatus : undefined, "5.1.1");
      assert.equal(results.get("rcpt-temp@x.test")!.status, "deferred");
      const full = results.get("data-perm@x.test")!;
      assert.equal(full.status, "failed");
      assert.equal("dsnStatus" in full ? full.dsnStatus : undefined, "5.2.2");
      const later = results.get("data-temp@x.test")!;
      assert.equal(later.status, "deferred");
      assert.match("error" in later ? later.error : "", /452 4\.2\.2/);
    } finally {
      courier.close();
    }
  });

  it("reuses the connection for the next message, also after every recipient was refused", async () => {
    const courier = new LmtpCourier({ hostname: "mx.test", idleMs: 60_000 });
    try {
      const first = await courier.deliver(
        endpoint,
        { from: "s@example.org", to: ["rcpt-perm@x.test"] },
        message,
      );
      assert.equal(first.get("rcpt-perm@x.test")!.status, "failed");
      for (let i = 0; i < 3; i++) {
        const next = await courier.deliver(
          endpoint,
          { from: "s@example.org", to: [`n${i}@x.test`] },
          message,
        );
        assert.equal(next.get(`n${i}@x.test`)!.status, "sent");
      }
      assert.equal(courier.connectionsOpened, 1);
    } finally {
      courier.close();
    }
  });

  it("opens a new connection when the server has closed the kept one", async () => {
    const courier = new LmtpCourier({ hostname: "mx.test", idleMs: 60_000 });
    try {
      await courier.deliver(endpoint, { from: "s@example.org", to: ["a@x.test"] }, message);
      for (const socket of sockets.splice(0)) socket.destroy();
      const before = transactions.length;
      const again = await courier.deliver(
        endpoint,
        { from: "s@example.org", to: ["b@x.test"] },
        message,
      );
      assert.equal(again.get("b@x.test")!.status, "sent");
      assert.equal(transactions.length, before + 1, "delivered once");
      assert.equal(courier.connectionsOpened, 2);
    } finally {
      courier.close();
    }
  });

  it("fails every recipient for a 5xx to MAIL FROM, and defers them when there is no server", async () => {
    const courier = new LmtpCourier({ hostname: "mx.test" });
    try {
      const refused = await courier.deliver(
        endpoint,
        { from: "refused@example.org", to: ["a@x.test", "b@x.test"] },
        message,
      );
      assert.deepEqual([...refused.values()].map((r) => r.status), ["failed", "failed"]);
      const gone = await courier.deliver(
        { kind: "unix", path: join(dir, "absent") },
        { from: "s@example.org", to: ["a@x.test", "b@x.test"] },
        message,
      );
      assert.deepEqual([...gone.values()].map((r) => r.status), ["deferred", "deferred"]);
      const error = gone.get("a@x.test")!;
      assert.match("error" in error ? error.error : "", /cannot connect to unix:/);
    } finally {
      courier.close();
    }
  });

  it("does not send again at once when a kept connection dies after the first recipient's reply to the data", async () => {
    // An LMTP server that, on the second message of a connection, stores it
    // for the first recipient, says so, and dies before the second reply.
    const stored: string[] = [];
    const lmtp = await FakeMx.start("127.0.0.1", 0, async (c: FakeMxConnection) => {
      c.send("220 fake LMTP\r\n");
      let to: string[] = [];
      let messages = 0;
      for (let line = await c.line(); line !== undefined; line = await c.line()) {
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "LHLO") c.send("250-fake\r\n250 PIPELINING\r\n");
        else if (verb === "MAIL") {
          to = [];
          c.send("250 2.1.0 ok\r\n");
        } else if (verb === "RCPT") {
          to.push(/<(.*)>/.exec(line)![1]!);
          c.send("250 2.1.5 ok\r\n");
        } else if (verb === "DATA") {
          c.send("354 go ahead\r\n");
          if ((await c.data()) === undefined) return;
          messages++;
          for (const [i, address] of to.entries()) {
            if (messages === 2 && i === 1) return c.destroy();
            stored.push(address);
            c.send(`250 2.0.0 <${address}> saved\r\n`);
          }
        } else if (verb === "QUIT") return c.destroy();
        else c.send("250 2.0.0 ok\r\n");
      }
    });
    const courier = new LmtpCourier({ hostname: "mx.test", idleMs: 60_000 });
    try {
      const server: Endpoint = { kind: "tcp", host: "127.0.0.1", port: lmtp.port };
      const envelope = { from: "s@example.org", to: ["bob@x.test", "carol@x.test"] };
      const first = await courier.deliver(server, envelope, message);
      assert.deepEqual([...first.values()].map((r) => r.status), ["sent", "sent"]);
      const second = await courier.deliver(server, envelope, message);
      // bob's 250 came before the close: stored, and final (RFC 2033
      // section 4.2). carol's reply was lost after the data went out: the
      // next attempt sends it again (RFC 5321 section 6.1 accepts that
      // duplicate), not this one.
      assert.deepEqual([...second.values()].map((r) => r.status), ["sent", "deferred"]);
      assert.deepEqual(stored, ["bob@x.test", "carol@x.test", "bob@x.test"], lmtp.transcript);
      assert.equal(lmtp.connections.length, 1, "no second connection in the attempt");
    } finally {
      courier.close();
      await lmtp.close();
    }
  });
});
