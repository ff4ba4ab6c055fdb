/**
 * The Dovecot auth protocol client against a small fake auth server on a
 * Unix socket: what it sends, and how each answer maps onto an outcome.
 */

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DovecotAuth } from "../../../src/users/dovecot_auth.ts";
import { tabEscape, tabUnescape } from "../../../src/users/dovecot_lines.ts";
import { parseEndpoint } from "../../../src/users/endpoint.ts";

/** A fake server: `answer` gets each line the client sends and may write back. */
async function fakeServer(
  path: string,
  answer: (line: string, socket: Socket) => void,
): Promise<{ server: Server; received: string[] }> {
  const received: string[] = [];
  const server = createServer((socket) => {
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        received.push(line);
        answer(line, socket);
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { server, received };
}

const HANDSHAKE = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n" +
  "SPID\t1\nCUID\t1\nCOOKIE\tabc\nDONE\n";

describe("DovecotAuth", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "postern-dovecot-unit-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A client of a fake auth-client server that answers AUTH with `reply`. */
  async function withAuthServer(
    reply: (id: string) => string,
    test: (auth: DovecotAuth, received: string[]) => Promise<void>,
    handshake = HANDSHAKE,
  ): Promise<void> {
    const path = join(dir, `auth-${crypto.randomUUID()}`);
    const { server, received } = await fakeServer(path, (line, socket) => {
      if (line.startsWith("CPID\t")) socket.write(handshake);
      if (line.startsWith("AUTH\t")) socket.write(reply(line.split("\t")[1]!));
    });
    try {
      await test(new DovecotAuth({ client: { kind: "unix", path }, timeoutMs: 5_000 }), received);
    } finally {
      await new Promise((r) => server.close(r));
    }
  }

  it("login() sends PLAIN with the credentials, and OK is a success with Dovecot's user name", async () => {
    await withAuthServer((id) => `OK\t${id}\tuser=alice@example.com\n`, async (auth, received) => {
      const result = await auth.login("Alice@Example.com", "pa\tss", { remoteIp: "192.0.2.1" });
      assert.deepEqual(result, { result: "ok", user: "alice@example.com" });
      assert.equal(received[0], "VERSION\t1\t2");
      assert.match(received[1]!, /^CPID\t\d+$/);
      const fields = received[2]!.split("\t");
      assert.deepEqual(fields.slice(0, 3), ["AUTH", "1", "PLAIN"]);
      assert.ok(fields.includes("service=smtp"));
      assert.ok(fields.includes("rip=192.0.2.1"));
      const resp = fields.find((f) => f.startsWith("resp="))!.slice(5);
      assert.equal(atob(resp), "\0Alice@Example.com\0pa\tss");
    });
  });

  it("login() gives fail for FAIL, and temporary for FAIL with temp", async () => {
    await withAuthServer((id) => `FAIL\t${id}\tuser=alice@example.com\n`, async (auth) => {
      assert.deepEqual(await auth.login("alice@example.com", "bad"), { result: "fail" });
    });
    await withAuthServer((id) => `FAIL\t${id}\ttemp\treason=passdb down\n`, async (auth) => {
      assert.deepEqual(await auth.login("alice@example.com", "pw"), {
        result: "temporary",
        reason: "passdb down",
      });
    });
  });

  it("login() throws when PLAIN is not offered, or the answer is out of protocol", async () => {
    await withAuthServer(
      (id) => `OK\t${id}\n`,
      async (auth) => {
        await assert.rejects(auth.login("a@b.c", "pw"), /mechanism PLAIN is not enabled/);
      },
      "VERSION\t1\t2\nMECH\tCRAM-MD5\nDONE\n",
    );
    await withAuthServer(
      (id) => `OK\t${id}\n`,
      async (auth) => {
        await assert.rejects(auth.login("a@b.c", "pw"), /unsupported protocol version 2/);
      },
      "VERSION\t2\t0\nMECH\tPLAIN\nDONE\n",
    );
    await withAuthServer((id) => `CONT\t${id}\t\n`, async (auth) => {
      await assert.rejects(auth.login("a@b.c", "pw"), /unexpected answer CONT/);
    });
  });

  it("login() throws when the server closes the connection or never answers", async () => {
    const path = join(dir, "silent");
    const { server } = await fakeServer(path, (line, socket) => {
      if (line.startsWith("AUTH")) socket.end();
      else if (line.startsWith("CPID")) socket.write(HANDSHAKE);
    });
    try {
      const auth = new DovecotAuth({ client: { kind: "unix", path }, timeoutMs: 5_000 });
      await assert.rejects(auth.login("a@b.c", "pw"), /connection was closed/);
      const mute = join(dir, "mute");
      const { server: muteServer } = await fakeServer(mute, () => {});
      try {
        const slow = new DovecotAuth({ client: { kind: "unix", path: mute }, timeoutMs: 200 });
        await assert.rejects(slow.login("a@b.c", "pw"), /no answer within 200 ms/);
      } finally {
        await new Promise((r) => muteServer.close(r));
      }
    } finally {
      await new Promise((r) => server.close(r));
    }
    const missing = new DovecotAuth({ client: { kind: "unix", path: join(dir, "absent") } });
    await assert.rejects(missing.login("a@b.c", "pw"), /cannot connect to unix:/);
  });

  it("lookup() is found for USER, notfound for NOTFOUND, and throws for FAIL", async () => {
    const path = join(dir, "userdb");
    const { server, received } = await fakeServer(path, (line, socket) => {
      if (line.startsWith("VERSION")) socket.write("VERSION\t1\t1\nSPID\t7\n");
      const [command, id, user] = line.split("\t");
      if (command !== "USER") return;
      if (user === "alice@example.com") socket.write(`USER\t${id}\t${user}\thome=/x\n`);
      else if (user === "broken@example.com") socket.write(`FAIL\t${id}\treason=denied\n`);
      else socket.write(`NOTFOUND\t${id}\n`);
    });
    try {
      const auth = new DovecotAuth({ userdb: { kind: "unix", path }, timeoutMs: 5_000 });
      assert.equal(await auth.lookup("alice@example.com"), "found");
      assert.equal(await auth.lookup("bob@example.com"), "notfound");
      await assert.rejects(auth.lookup("broken@example.com"), /lookup failed: denied/);
      // A name cannot add a field or a line.
      assert.equal(await auth.lookup("x\tuid=0\nUSER\t2\talice@example.com"), "notfound");
      const sent = received.filter((l) => l.startsWith("USER"));
      assert.equal(
        sent.at(-1),
        "USER\t1\tx\x01tuid=0\x01nUSER\x01t2\x01talice@example.com\tservice=smtp",
      );
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe("tabEscape()", () => {
  it("escapes \\x01 first, then TAB, CR and LF, and tabUnescape() undoes it", () => {
    const raw = "a\x01t\tb\rc\nd";
    assert.equal(tabEscape(raw), "a\x011t\x01tb\x01rc\x01nd");
    assert.equal(tabUnescape(tabEscape(raw)), raw);
  });
});

describe("parseEndpoint()", () => {
  it("takes unix:<path>, host:port and [v6]:port, and nothing else", () => {
    assert.deepEqual(parseEndpoint("unix:/run/dovecot/lmtp"), {
      kind: "unix",
      path: "/run/dovecot/lmtp",
    });
    assert.deepEqual(parseEndpoint("127.0.0.1:24"), { kind: "tcp", host: "127.0.0.1", port: 24 });
    assert.deepEqual(parseEndpoint("[::1]:24"), { kind: "tcp", host: "::1", port: 24 });
    for (const bad of ["unix:", "127.0.0.1", "host:0", "host:70000", "/run/dovecot/lmtp"]) {
      assert.equal(parseEndpoint(bad), undefined, bad);
    }
  });
});
