/**
 * serveHttp1's share per client: one client (an IPv4 address, an IPv6
 * /64) holds at most `maxConnectionsPerAddress` connections, refusals
 * under way included; one more is closed at once, unanswered (over TLS,
 * before any handshake), and takes no place under the cap, so other
 * clients are still served. Linux routes all of 127/8 to loopback: the
 * clients bind 127.0.0.1 and 127.0.0.2 as two hosts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { after, afterEach, before, describe, it } from "node:test";
import {
  type Http1Limits,
  type Http1Log,
  type Http1Outcome,
  type Http1Server,
  serveHttp1,
} from "../../../src/http/http1_server.ts";
import {
  listenTcp,
  listenTls,
  type TcpConn,
  type TcpListener,
  type TlsCertificate,
} from "../../../src/runtime/mod.ts";
import { TestCa } from "../../support/test_ca.ts";
import { deferred } from "../helpers.ts";
import { within } from "../../support/within.ts";

const NAME = "mta-sts.example.test";
const A = "127.0.0.1";
const B = "127.0.0.2";

/** Room for everyone under the cap; a share of two per client; no deadline in reach. */
const LIMITS: Http1Limits = {
  name: "ACME challenge server",
  maxConnections: 10,
  maxConnectionsPerAddress: 2,
  headTimeoutMs: 60_000,
  bodyTimeoutMs: 60_000,
  writeTimeoutMs: 5_000,
  maxHeadBytes: 1024,
  maxBodyBytes: 100,
};

const GET = "GET /.well-known/x HTTP/1.1\r\nHost: example.test\r\n\r\n";

/** A log that keeps its lines and counts. */
function recorder() {
  const lines: Array<{ msg: string; fields?: Record<string, string | number> }> = [];
  const counts = new Map<Http1Outcome, number>();
  const log: Http1Log = {
    warn: (msg, fields) => lines.push({ msg, ...(fields ? { fields } : {}) }),
    info: () => {},
    count: (outcome) => counts.set(outcome, (counts.get(outcome) ?? 0) + 1),
  };
  return { lines, counts, log };
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** A client socket and everything it received until it closed. */
interface Client<S extends Socket> {
  socket: S;
  closed: Promise<string>;
}

function track<S extends Socket>(socket: S): Client<S> {
  let text = "";
  socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
  socket.on("error", () => {});
  return { socket, closed: new Promise((resolve) => socket.on("close", () => resolve(text))) };
}

/** A TCP connection from `from` that says nothing: resolves once connected. */
function plain(address: string, from: string): Promise<Client<Socket>> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port: portOf(address), host: "127.0.0.1", localAddress: from });
    const client = track(socket);
    socket.once("connect", () => resolve(client));
    socket.once("error", reject);
  });
}

/** A plain GET from `from`: all the server sent until it closed. */
async function get(address: string, from: string): Promise<string> {
  const client = await plain(address, from);
  client.socket.write(GET);
  return await within(client.closed, 10_000, `an answer to a GET from ${from}`);
}

/**
 * A TLS connection from `from` (TLS over a TCP socket bound there: the TLS
 * client takes no local address of its own); resolves once its handshake
 * is done, rejects if it closes first.
 */
async function secure(address: string, from: string, ca: string): Promise<Client<TLSSocket>> {
  const below = await plain(address, from);
  return await new Promise((resolve, reject) => {
    const socket = tlsConnect({ socket: below.socket, servername: NAME, ca });
    const client = track(socket);
    socket.once("secureConnect", () => resolve(client));
    socket.once("close", () => reject(new Error("closed before the handshake completed")));
  });
}

/** A GET over TLS from `from`: all the server sent until it closed. */
async function getTls(address: string, from: string, ca: string): Promise<string> {
  const client = await within(secure(address, from, ca), 10_000, `a handshake from ${from}`);
  client.socket.write(GET);
  return await within(client.closed, 10_000, `an answer to a GET from ${from}`);
}

/** Tries `attempt` until it yields a 200: the server sees a close a moment after the client. */
async function servedAgain(attempt: () => Promise<string>): Promise<string> {
  let reply = "";
  for (let i = 0; i < 100 && !reply.startsWith("HTTP/1.1 200"); i++) {
    reply = await attempt().catch(() => "");
  }
  return reply;
}

const ok = () => new Response("ok\n");

describe("serveHttp1: the share of one client", () => {
  const servers: Http1Server[] = [];
  const clients: Socket[] = [];
  afterEach(async () => {
    for (const socket of clients.splice(0)) socket.destroy();
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it("closes one more connection from a client at once, serves another meanwhile, and again once it leaves", async () => {
    const { lines, counts, log } = recorder();
    const server = serveHttp1(await listenTcp("127.0.0.1", 0), ok, log, LIMITS);
    servers.push(server);
    const held = [await plain(server.address, A), await plain(server.address, A)];
    clients.push(...held.map((c) => c.socket));
    // Over A's share: closed unanswered, with room under the cap of 10.
    const over = await plain(server.address, A);
    clients.push(over.socket);
    assert.equal(await within(over.closed, 10_000, "the close of a connection over its share"), "");
    assert.match(await get(server.address, B), /^HTTP\/1\.1 200 /);
    // Three more from A, refused as the first: one log line for them all.
    for (let i = 0; i < 3; i++) assert.equal(await get(server.address, A), "");
    assert.deepEqual(lines, [{
      msg: "ACME challenge server refuses connections from a client over its share",
      fields: { addr: server.address, client: A, max_per_client: 2 },
    }]);
    assert.equal(counts.get("per_address"), 4);
    assert.equal(counts.get("admitted"), 3);
    // A closes one: its slot is A's again.
    held[0]!.socket.destroy();
    await held[0]!.closed;
    assert.match(await servedAgain(() => get(server.address, A)), /^HTTP\/1\.1 200 /);
  });

  it("groups IPv6 clients by /64 and unwraps IPv4-mapped addresses", async () => {
    // A listener of fake connections: a share of 1, and the peers below.
    const peers = [
      "2001:db8:1:2::1",
      "2001:db8:1:2:ffff::2", // the same /64: refused
      "2001:db8:1:3::1", // another /64: admitted
      "::ffff:192.0.2.1",
      "192.0.2.1", // the same host: refused
    ];
    const fakes = peers.map((remoteAddress) => {
      const closed = deferred();
      const conn: TcpConn = {
        remoteAddress,
        read: async () => {
          await closed.promise;
          return null;
        },
        write: () => Promise.resolve(),
        closeWrite: () => Promise.resolve(),
        close: () => closed.resolve(),
      };
      return { conn, closed: closed.promise };
    });
    const drained = deferred();
    const stop = deferred();
    let next = 0;
    const listener: TcpListener = {
      address: "127.0.0.1:9",
      accept: async () => {
        const fake = fakes[next++];
        if (fake) return fake.conn;
        drained.resolve();
        await stop.promise;
        throw new Error("Cannot accept: the listener is closed");
      },
      close: () => stop.resolve(),
    };
    const { lines, counts, log } = recorder();
    const server = serveHttp1(listener, ok, log, { ...LIMITS, maxConnectionsPerAddress: 1 });
    servers.push(server);
    await within(drained.promise, 10_000, "the accept of every fake connection");
    await within(fakes[1]!.closed, 10_000, "the close of a second connection from one /64");
    await within(fakes[4]!.closed, 10_000, "the close of a second connection from 192.0.2.1");
    assert.equal(server.connections(), 3);
    assert.equal(counts.get("admitted"), 3);
    assert.equal(counts.get("per_address"), 2);
    assert.deepEqual(lines.map((l) => l.fields?.client), ["2001:db8:1:2::/64", "192.0.2.1"]);
  });
});

describe("serveHttp1 over TLS: the share of one client", () => {
  let ca: TestCa;
  let certificate: TlsCertificate;
  const servers: Http1Server[] = [];
  const clients: Socket[] = [];

  before(async () => {
    ca = await TestCa.create();
    certificate = await ca.issue(NAME);
  });
  after(async () => await ca?.remove());
  afterEach(async () => {
    for (const socket of clients.splice(0)) socket.destroy();
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  async function start(limits: Http1Limits, log: Http1Log = recorder().log) {
    const server = serveHttp1(await listenTls("127.0.0.1", 0, certificate), ok, log, {
      ...limits,
      name: "MTA-STS policy server",
    });
    servers.push(server);
    return server;
  }

  it("closes one more connection from a client before any handshake, and serves another", async () => {
    const { counts, log } = recorder();
    const server = await start(LIMITS, log);
    const held = [await plain(server.address, A), await plain(server.address, A)];
    clients.push(...held.map((c) => c.socket));
    // A full ClientHello from A, over its share: no ServerHello, no byte at all.
    const refused = secure(server.address, A, ca.cert);
    await assert.rejects(
      within(refused, 10_000, "the close of a TLS connection over its share"),
      /closed before the handshake completed/,
    );
    assert.match(await getTls(server.address, B, ca.cert), /^HTTP\/1\.1 200 /);
    assert.equal(counts.get("per_address"), 1);
    held[0]!.socket.destroy();
    await held[0]!.closed;
    assert.match(
      await servedAgain(() => getTls(server.address, A, ca.cert)),
      /^HTTP\/1\.1 200 /,
    );
  });

  it("counts a 503 under way against its client: one more is closed, while another client gets its 503", async () => {
    const { counts, log } = recorder();
    // Two connections under the cap, three per client.
    const server = await start({ ...LIMITS, maxConnections: 2, maxConnectionsPerAddress: 3 }, log);
    const held = [await plain(server.address, A), await plain(server.address, A)];
    // Over the cap: its 503 waits for a handshake that never comes, and
    // holds A's third slot meanwhile.
    const waiting = await plain(server.address, A);
    clients.push(...[...held, waiting].map((c) => c.socket));
    // A's fourth: over its share, closed before its handshake (a server
    // that did not count the refusal would answer it a 503 after one).
    await assert.rejects(
      within(secure(server.address, A, ca.cert), 10_000, "the close of A's fourth connection"),
      /closed before the handshake completed/,
    );
    // B has its whole share: the cap refuses it, with a 503.
    const other = await within(secure(server.address, B, ca.cert), 10_000, "B's handshake");
    clients.push(other.socket);
    assert.match(
      await within(other.closed, 10_000, "B's answer"),
      /^HTTP\/1\.1 503 [\s\S]*too many connections/,
    );
    assert.equal(waiting.socket.readyState, "open");
    assert.deepEqual(Object.fromEntries(counts), { admitted: 2, capacity: 2, per_address: 1 });
  });
});
