/**
 * serveHttp1 over listenTls, as the MTA-STS policy server runs: the head
 * deadline covers the TLS handshake, so a client stalled before, in or
 * after it is closed; connections over the cap are refused, refusals are
 * capped too, and a well-behaved client is served once they are gone.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { after, afterEach, before, describe, it } from "node:test";
import { type Http1Limits, type Http1Server, serveHttp1 } from "../../../src/http/http1_server.ts";
import { listenTls, type TlsCertificate } from "../../../src/runtime/mod.ts";
import { TestCa } from "../../support/test_ca.ts";

const NAME = "mta-sts.example.test";

const LIMITS: Http1Limits = {
  name: "MTA-STS policy server",
  maxConnections: 3,
  // Every client here is 127.0.0.1: a share it never reaches first, so
  // that these tests see the cap (http1_share_test.ts tests the share).
  maxConnectionsPerAddress: 100,
  headTimeoutMs: 300,
  bodyTimeoutMs: 300,
  writeTimeoutMs: 5_000,
  maxHeadBytes: 1024,
  maxBodyBytes: 100,
};

const silentLog = { warn: () => {}, info: () => {} };

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

/** A TCP connection that says nothing, or only `bytes`. */
function plain(address: string, bytes?: Uint8Array): Promise<Client<Socket>> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(portOf(address), "127.0.0.1");
    const client = track(socket);
    socket.once("connect", () => {
      if (bytes) socket.write(bytes);
      resolve(client);
    });
    socket.once("error", reject);
  });
}

/** A TLS connection trusting `ca`; resolves once its handshake is done, rejects if it fails. */
function secure(address: string, ca: string): Promise<Client<TLSSocket>> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port: portOf(address), servername: NAME, ca });
    const client = track(socket);
    socket.once("secureConnect", () => resolve(client));
    socket.once("close", () => reject(new Error("closed before the handshake completed")));
  });
}

/** A GET for the policy over TLS: all the server sent until it closed. */
async function fetchPolicy(address: string, ca: string): Promise<string> {
  const client = await secure(address, ca);
  client.socket.write(`GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: ${NAME}\r\n\r\n`);
  return await client.closed;
}

describe("serveHttp1 over TLS", () => {
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

  async function start(limits: Http1Limits = LIMITS): Promise<Http1Server> {
    const server = serveHttp1(
      await listenTls("127.0.0.1", 0, certificate),
      (request) => new Response(`policy for ${request.headers.get("host")}\n`),
      silentLog,
      limits,
    );
    servers.push(server);
    return server;
  }

  it("answers a request over TLS and closes", async () => {
    const server = await start();
    const reply = await fetchPolicy(server.address, ca.cert);
    assert.match(reply, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(reply, /\r\nconnection: close\r\n/);
    assert.match(reply, /\r\n\r\npolicy for mta-sts\.example\.test\n$/);
  });

  it("closes connections stalled before, in and after the handshake by the head deadline", async () => {
    const server = await start();
    // Connects and never sends a ClientHello.
    const silent = await plain(server.address);
    // The first bytes of a ClientHello record, and no more.
    const halfHello = await plain(server.address, Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0xc8, 1));
    // The handshake done, then a header line every 20 ms: the deadline
    // runs from the connection, not from the last byte.
    const slow = await secure(server.address, ca.cert);
    clients.push(silent.socket, halfHello.socket, slow.socket);
    slow.socket.write("GET /.well-known/mta-sts.txt HTTP/1.1\r\n");
    let lines = 0;
    const timer = setInterval(() => {
      if (++lines > 500) slow.socket.destroy();
      else slow.socket.write("X-A: b\r\n");
    }, 20);
    assert.equal(await silent.closed, "");
    assert.equal(await halfHello.closed, "");
    assert.equal(await slow.closed, "");
    clearInterval(timer);
    assert.ok(lines <= 500, "the server left the trickling connection open");
    assert.equal(server.connections(), 0);
    assert.match(await fetchPolicy(server.address, ca.cert), /^HTTP\/1\.1 200 /);
  });

  it("refuses over the cap with 503, closes past as many refusals, and serves once they go", async () => {
    const server = await start({ ...LIMITS, maxConnections: 2, headTimeoutMs: 60_000 });
    // Accepted in the order they connect: two take the slots.
    const held = [await plain(server.address), await plain(server.address)];
    // Over the cap, a TLS client gets its 503 once its handshake is done.
    const refused = await secure(server.address, ca.cert);
    assert.match(await refused.closed, /^HTTP\/1\.1 503 [\s\S]*too many connections/);
    // Two more that never handshake: their refusals wait for it.
    const waiting = [await plain(server.address), await plain(server.address)];
    clients.push(...[...held, ...waiting].map((c) => c.socket));
    // The refusals are at their cap too: the next is closed at once, unanswered.
    await assert.rejects(secure(server.address, ca.cert), /closed before the handshake/);
    for (const client of waiting) assert.equal(client.socket.readyState, "open");
    assert.equal(server.connections(), 2);
    for (const client of [...held, ...waiting]) client.socket.destroy();
    await Promise.all([...held, ...waiting].map((c) => c.closed));
    // The server sees the closes a moment later; until then it may refuse.
    let reply = "";
    for (let i = 0; i < 100 && !reply.startsWith("HTTP/1.1 200"); i++) {
      reply = await fetchPolicy(server.address, ca.cert).catch(() => "");
    }
    assert.match(reply, /^HTTP\/1\.1 200 /);
  });
});
