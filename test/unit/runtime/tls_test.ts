/**
 * listenTls on the runtime at hand: connections handed over decrypted, the
 * handshake out of the accept loop and started by the first read or write
 * (the client's address known before it), a client that is not TLS failing
 * alone, a connection closed before its handshake freed at once, and a new
 * certificate for new connections while open ones go on.
 *
 * @module
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { after, before, describe, it } from "node:test";
import {
  listenTls,
  type TcpConn,
  type TlsCertificate,
  type TlsListener,
} from "../../../src/runtime/mod.ts";
import { TestCa } from "../../support/test_ca.ts";
import { within } from "../../support/within.ts";

const NAME = "policy.tls.test";
const OTHER = "other.tls.test";
const BROKEN = "broken.tls.test";

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** A TLS client trusting `ca`: resolves once the handshake is done. */
function secure(address: string, ca: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port: portOf(address), servername: NAME, ca });
    socket.once("secureConnect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** A plain TCP client: resolves once connected. */
function plain(address: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(portOf(address), "127.0.0.1");
    socket.on("error", () => {});
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Everything `socket` receives until it closes. */
function received(socket: Socket): Promise<string> {
  let text = "";
  socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
  return new Promise((resolve) => socket.on("close", () => resolve(text)));
}

async function readText(conn: { read(b: Uint8Array): Promise<number | null> }): Promise<string> {
  const buffer = new Uint8Array(64);
  const n = await conn.read(buffer);
  return n === null ? "(end)" : new TextDecoder().decode(buffer.subarray(0, n));
}

/**
 * A TLS client of `listener` trusting `ca`, and its connection: the
 * server's first read, `first`, starts the handshake.
 */
async function acceptClient(
  listener: TlsListener,
  ca: string,
): Promise<{ conn: TcpConn; client: TLSSocket; first: Promise<string> }> {
  const accepted = listener.accept();
  const connecting = secure(listener.address, ca);
  const conn = await accepted;
  const first = readText(conn);
  return { conn, client: await connecting, first };
}

describe("listenTls", () => {
  let ca: TestCa;
  let first: TlsCertificate;
  let second: TlsCertificate;

  before(async () => {
    ca = await TestCa.create();
    first = await ca.issue(NAME);
    second = await ca.issue(NAME);
  });
  after(async () => await ca?.remove());

  it("hands over connections decrypted: read, write, half-close, close", async () => {
    const listener = await listenTls("127.0.0.1", 0, first);
    try {
      assert.match(listener.address, /^127\.0\.0\.1:\d+$/);
      const { conn, client, first } = await acceptClient(listener, ca.cert);
      assert.equal(conn.remoteAddress, "127.0.0.1");
      const answer = received(client);
      client.write("ping");
      assert.equal(await first, "ping");
      await conn.write(new TextEncoder().encode("pong"));
      // After our close_notify and FIN the client still writes, and we read.
      await conn.closeWrite();
      client.end("more");
      assert.equal(await readText(conn), "more");
      assert.equal(await readText(conn), "(end)");
      assert.equal(await answer, "pong");
      conn.close();
      conn.close();
      assert.equal(await readText(conn), "(end)");
      await assert.rejects(conn.write(new Uint8Array(1)));
    } finally {
      listener.close();
    }
  });

  it("accepts without waiting for handshakes; a client that is not TLS fails alone", async () => {
    const listener = await listenTls("127.0.0.1", 0, first);
    try {
      // Connected, and never a ClientHello: accepted all the same.
      const silent = await plain(listener.address);
      const silentConn = await listener.accept();
      // Plain HTTP to the TLS port: its own read ends.
      const wrong = await plain(listener.address);
      wrong.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      const wrongConn = await listener.accept();
      assert.equal(await readText(wrongConn), "(end)");
      wrongConn.close();
      // The next client is served while the silent one still waits.
      const { conn, client, first } = await acceptClient(listener, ca.cert);
      client.write("hello");
      assert.equal(await first, "hello");
      // Closing a connection stuck before its handshake ends its read.
      const stuck = readText(silentConn);
      silentConn.close();
      assert.equal(await stuck, "(end)");
      conn.close();
      client.destroy();
      silent.destroy();
      wrong.destroy();
    } finally {
      listener.close();
    }
  });

  it("frees a connection closed before or during its handshake at once", async () => {
    // Deno.listenTls kept such a socket open until the client sent or
    // closed: one descriptor for as long as a silent client liked.
    const listener = await listenTls("127.0.0.1", 0, first);
    try {
      const silent = await plain(listener.address);
      const silentClosed = received(silent);
      const silentConn = await listener.accept();
      const halfHello = await plain(listener.address);
      const halfClosed = received(halfHello);
      // The first bytes of a ClientHello record, and no more.
      halfHello.write(Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0xc8, 1));
      const halfConn = await listener.accept();
      // The silent one closed before its handshake began, the other during it.
      const halfRead = readText(halfConn);
      silentConn.close();
      halfConn.close();
      assert.equal(await halfRead, "(end)");
      assert.equal(await within(silentClosed, 10_000, "the silent client to see the close"), "");
      assert.equal(await within(halfClosed, 10_000, "the half-hello client to see the close"), "");
    } finally {
      listener.close();
    }
  });

  it("does no TLS work before the first read or write: closed at once, a client gets no byte", async () => {
    const listener = await listenTls("127.0.0.1", 0, first);
    try {
      const accepted = listener.accept();
      const below = netConnect({
        host: "127.0.0.1",
        port: portOf(listener.address),
        localAddress: "127.0.0.2",
      });
      below.on("error", () => {});
      const socket = tlsConnect({ socket: below, servername: NAME, ca: ca.cert });
      let handshake = false;
      socket.once("secureConnect", () => handshake = true);
      socket.on("error", () => {});
      const closed = received(socket);
      const conn = await accepted;
      // Its ClientHello may have come: nothing has read it.
      assert.equal(conn.remoteAddress, "127.0.0.2");
      conn.close();
      assert.equal(await within(closed, 10_000, "the client to see the close"), "");
      assert.equal(handshake, false);
      assert.equal(await readText(conn), "(end)");
      await assert.rejects(conn.write(new Uint8Array(1)));
    } finally {
      listener.close();
    }
  });

  it("rejects writes to a client that has gone, and goes on accepting", async () => {
    const listener = await listenTls("127.0.0.1", 0, first);
    try {
      const { conn, client, first } = await acceptClient(listener, ca.cert);
      const gone = received(client);
      client.resetAndDestroy();
      await gone;
      assert.equal(await first, "(end)");
      // The reset reaches the server after a write or two.
      const chunk = new Uint8Array(64 * 1024);
      await assert.rejects(async () => {
        for (let i = 0; i < 1000; i++) await conn.write(chunk);
      });
      assert.equal(await readText(conn), "(end)");
      conn.close();
      const next = await acceptClient(listener, ca.cert);
      const { conn: nextConn, client: other } = next;
      other.write("still");
      assert.equal(await next.first, "still");
      nextConn.close();
      other.destroy();
    } finally {
      listener.close();
    }
  });

  it("presents a new certificate to new connections; open ones go on", async () => {
    const listener = await listenTls("127.0.0.1", 0, first);
    try {
      const { conn: beforeConn, client: before, first: old } = await acceptClient(
        listener,
        ca.cert,
      );
      // An accept is pending while the certificate changes, as in a server.
      const pending = listener.accept();
      listener.setCertificate(second);
      const connecting = secure(listener.address, ca.cert);
      const afterConn = await pending;
      const fresh = readText(afterConn);
      const after = await connecting;
      const serial = (s: TLSSocket) => s.getPeerX509Certificate()!.serialNumber;
      assert.notEqual(serial(after), serial(before));
      assert.equal(
        serial(after),
        new (await import("node:crypto")).X509Certificate(second.cert)
          .serialNumber,
      );
      // The port is the same, and the connection from before still works.
      before.write("old");
      assert.equal(await old, "old");
      after.write("new");
      assert.equal(await fresh, "new");
      for (const c of [beforeConn, afterConn]) c.close();
      before.destroy();
      after.destroy();
    } finally {
      listener.close();
    }
  });

  it("keeps the certificate it has when the new one does not load", async () => {
    const listener = await listenTls("127.0.0.1", 0, first);
    try {
      const pending = listener.accept();
      assert.throws(() => listener.setCertificate({ cert: second.cert, key: "not a key" }));
      assert.throws(() => listener.setCertificate({ cert: second.cert, key: first.key }));
      const connecting = secure(listener.address, ca.cert);
      const conn = await pending;
      void readText(conn);
      const client = await connecting;
      const serial = client.getPeerX509Certificate()!.serialNumber;
      assert.equal(
        serial,
        new (await import("node:crypto")).X509Certificate(first.cert)
          .serialNumber,
      );
      conn.close();
      client.destroy();
    } finally {
      listener.close();
    }
  });

  it("chooses a certificate by SNI and a protocol by ALPN, and ends a connection at its handshake when asked", async () => {
    const other = await ca.issue(OTHER);
    const listener = await listenTls("127.0.0.1", 0, first, {
      alpnProtocols: ["x-test/1", "http/1.1"],
      certificateFor: (name) =>
        name === OTHER ? other : name === BROKEN ? { cert: other.cert, key: "no key" } : undefined,
      endsAtHandshake: (protocol) => protocol === "x-test/1",
    });
    const connect = async (servername: string, alpn: string[]) => {
      const pending = listener.accept();
      const socket = tlsConnect({
        host: "127.0.0.1",
        port: portOf(listener.address),
        servername,
        ca: ca.cert,
        ALPNProtocols: alpn,
      });
      socket.on("error", () => {});
      const conn = await pending;
      const first = readText(conn);
      const handshake = new Promise<boolean>((resolve) => {
        socket.once("secureConnect", () => resolve(true));
        socket.once("close", () => resolve(false));
      });
      return { conn, socket, first, handshake: await within(handshake, 10_000, "a handshake") };
    };
    const serial = (pem: string) => new X509Certificate(pem).serialNumber;
    try {
      // SNI: the name's own certificate, or the listener's.
      const named = await connect(OTHER, ["http/1.1"]);
      assert.ok(named.handshake);
      assert.equal(named.socket.getPeerX509Certificate()!.serialNumber, serial(other.cert));
      assert.equal(named.socket.alpnProtocol, "http/1.1");
      const unnamed = await connect(NAME, ["http/1.1"]);
      assert.equal(unnamed.socket.getPeerX509Certificate()!.serialNumber, serial(first.cert));
      // Not ending at its handshake: read and written as ever.
      unnamed.socket.write("ping");
      assert.equal(await unnamed.first, "ping");
      // Ending at its handshake: the client gets our end and nothing else,
      // and our reader the end once the client closes.
      const ended = await connect(NAME, ["x-test/1"]);
      assert.equal(ended.socket.alpnProtocol, "x-test/1");
      const clientSaw = received(ended.socket);
      ended.socket.write("ignored");
      assert.equal(await within(clientSaw, 10_000, "the end of the connection"), "");
      assert.equal(await within(ended.first, 10_000, "the end for the reader"), "(end)");
      // A certificate that does not load fails its own handshake alone.
      const broken = await connect(BROKEN, ["http/1.1"]);
      assert.equal(broken.handshake, false);
      const again = await connect(OTHER, ["http/1.1"]);
      assert.equal(again.socket.getPeerX509Certificate()!.serialNumber, serial(other.cert));
      for (const c of [named, unnamed, ended, broken, again]) {
        c.conn.close();
        c.socket.destroy();
      }
    } finally {
      listener.close();
    }
  });

  it("refuses an address in use, and rejects a pending accept() once closed", async () => {
    const listener = await listenTls("127.0.0.1", 0, first);
    const port = portOf(listener.address);
    await assert.rejects(listenTls("127.0.0.1", port, first));
    const pending = listener.accept();
    listener.close();
    listener.close();
    await assert.rejects(pending);
    assert.throws(() => listener.setCertificate(second));
  });
});
