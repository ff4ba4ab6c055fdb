/**
 * The TLS-ALPN-01 server against a hostile client, while a challenge is
 * open: ClientHellos written byte by byte with odd server names (none, an
 * IP literal, upper case, a trailing dot, too long, a NUL, bytes that are
 * no text), offering `acme-tls/1`; which certificate each gets, and that
 * the server survives every one and still serves the policy. Ordinary
 * clients asking for the challenged name (other protocols, none) get the
 * usual certificate; the CA's ClientHello gets the challenge one however
 * it arrives (cut in two, its pieces apart, over three records). Then what a
 * client sends after an `acme-tls/1` handshake (without end, until the
 * head deadline), a huge head after an ordinary handshake, renegotiation,
 * and a flood of full handshakes from one address while another is served.
 *
 * The ClientHellos offer TLS 1.2 only, so that the server's Certificate
 * message comes back in the clear and is read here on every runtime (the
 * TLS clients of Bun and Deno would refuse the challenge certificate).
 * Deno's node:tls cannot present the challenge certificate (see
 * alpn_server_test.ts; start-up refuses tls-alpn-01 there): a handshake
 * for the challenge name stalls until the head deadline closes it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import acme from "acme-client";
import { ChallengeTokens } from "../../../src/tls/acme.ts";
import {
  ALPN_HTTP_LIMITS,
  type AlpnServer,
  startAlpnServer,
} from "../../../src/tls/alpn_server.ts";
import type { Http1Limits } from "../../../src/http/http1_server.ts";
import { type KeyPair, TestCa } from "../../support/test_ca.ts";
import { within } from "../../support/within.ts";
import { A, B, CHALLENGE_NAME, fetchPolicy, NAME, portOf, secure } from "./alpn_clients.ts";

const onDeno = "Deno" in globalThis;

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

function u24(n: number): number[] {
  return [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

/**
 * A TLS 1.2 ClientHello offering `alpn` (no ALPN extension when empty),
 * with `serverName` as the SNI host name (none if undefined).
 */
function clientHello(serverName: Uint8Array | undefined, alpn: readonly string[]): Uint8Array {
  const ext = (type: number, body: number[]) => [...u16(type), ...u16(body.length), ...body];
  const protocols = alpn.flatMap((name) => {
    const bytes = [...new TextEncoder().encode(name)];
    return [bytes.length, ...bytes];
  });
  const extensions = [
    ...(serverName
      ? ext(0, [...u16(serverName.length + 3), 0, ...u16(serverName.length), ...serverName])
      : []),
    ...(alpn.length > 0 ? ext(0x10, [...u16(protocols.length), ...protocols]) : []),
    ...ext(0x0a, [...u16(4), ...u16(0x1d), ...u16(0x17)]),
    ...ext(0x0b, [1, 0]),
    ...ext(0x0d, [...u16(8), 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x08, 0x09]),
    ...ext(0xff01, [0]),
  ];
  const suites = [0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8].flatMap(u16);
  const body = [
    0x03,
    0x03,
    ...Array.from({ length: 32 }, (_, i) => i),
    0,
    ...u16(suites.length),
    ...suites,
    1,
    0,
    ...u16(extensions.length),
    ...extensions,
  ];
  const handshake = [1, ...u24(body.length), ...body];
  return Uint8Array.from([0x16, 0x03, 0x01, ...u16(handshake.length), ...handshake]);
}

/** `hello` (one record) with its handshake message spread over `count` records. */
function inRecords(hello: Uint8Array, count: number): Uint8Array {
  const message = hello.subarray(5);
  const size = Math.ceil(message.length / count);
  const out: number[] = [];
  for (let at = 0; at < message.length; at += size) {
    const part = message.subarray(at, at + size);
    out.push(0x16, 0x03, 0x01, ...u16(part.length), ...part);
  }
  return Uint8Array.from(out);
}

/** What the server answered a ClientHello with: the certificate it presented, or its alert. */
interface Answer {
  certificate?: X509Certificate;
  alert?: number;
  closed: boolean;
}

/**
 * Reads handshake records until the Certificate message (TLS 1.2, in the
 * clear), an alert, or the close; `hello` is written in one piece, or in
 * the pieces given, `pauseMs` apart.
 */
function answerTo(
  address: string,
  hello: Uint8Array | Uint8Array[],
  pauseMs = 0,
): Promise<Answer> {
  return new Promise((resolve) => {
    const socket: Socket = netConnect({
      port: portOf(address),
      host: "127.0.0.1",
      localAddress: A,
    });
    let records = new Uint8Array(0);
    let handshake: number[] = [];
    let done = false;
    const finish = (answer: Answer) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve(answer);
    };
    socket.on("error", () => finish({ closed: true }));
    socket.on("close", () => finish({ closed: true }));
    socket.once("connect", async () => {
      for (const piece of Array.isArray(hello) ? hello : [hello]) {
        if (done) return;
        socket.write(piece);
        if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    });
    socket.on("data", (chunk: Uint8Array) => {
      records = Uint8Array.from([...records, ...chunk]);
      while (records.length >= 5) {
        const length = (records[3]! << 8) | records[4]!;
        if (records.length < 5 + length) break;
        const type = records[0];
        const payload = records.subarray(5, 5 + length);
        records = records.slice(5 + length);
        if (type === 0x15) return finish({ alert: payload[1] ?? -1, closed: false });
        if (type !== 0x16) continue;
        handshake = [...handshake, ...payload];
        while (handshake.length >= 4) {
          const size = (handshake[1]! << 16) | (handshake[2]! << 8) | handshake[3]!;
          if (handshake.length < 4 + size) break;
          const message = handshake.slice(4, 4 + size);
          const messageType = handshake[0];
          handshake = handshake.slice(4 + size);
          if (messageType !== 0x0b) continue;
          const derLength = (message[3]! << 16) | (message[4]! << 8) | message[5]!;
          const der = Uint8Array.from(message.slice(6, 6 + derLength));
          return finish({ certificate: new X509Certificate(der), closed: false });
        }
      }
    });
  });
}

describe("the TLS-ALPN-01 server against a hostile client, a challenge open", () => {
  let ca: TestCa;
  let first: KeyPair;
  let challenge: X509Certificate;
  const tokens = new ChallengeTokens();
  const servers: AlpnServer[] = [];
  const closers: Array<() => void> = [];

  before(async () => {
    ca = await TestCa.create();
    first = await ca.issue(NAME);
    const [key, cert] = await acme.crypto.createAlpnCertificate(
      { identifier: { type: "dns", value: CHALLENGE_NAME } } as Parameters<
        typeof acme.crypto.createAlpnCertificate
      >[0],
      "token-abc.thumbprint-xyz",
    );
    tokens.alpn.set(CHALLENGE_NAME, { keyPem: key.toString(), certPem: cert.toString() });
    challenge = new X509Certificate(cert.toString());
  });
  after(async () => await ca?.remove());
  afterEach(async () => {
    for (const close of closers.splice(0)) close();
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  async function start(limits?: Http1Limits) {
    const server = await startAlpnServer({
      host: "127.0.0.1",
      port: 0,
      tokens,
      initial: { certPem: first.cert, keyPem: first.key },
      fetch: (request) => new Response(`policy for ${request.headers.get("host")}\n`),
      ...(limits ? { limits } : {}),
    });
    servers.push(server);
    return server;
  }

  it("survives odd server names; only the challenge name, in any case, gets the challenge certificate", async () => {
    const server = await start({ ...ALPN_HTTP_LIMITS, headTimeoutMs: 1_000 });
    const ordinary = new X509Certificate(first.cert).fingerprint256;
    const challenged = onDeno ? "none" : "challenge";
    const bytes = (text: string) => new TextEncoder().encode(text);
    const cases: Array<
      [string, Uint8Array | undefined, "challenge" | "ordinary" | "none" | "any"]
    > = [
      ["the challenge name", bytes(CHALLENGE_NAME), challenged],
      ["the challenge name in upper case", bytes(CHALLENGE_NAME.toUpperCase()), challenged],
      ["no SNI", undefined, "ordinary"],
      ["an IP literal", bytes("127.0.0.1"), "ordinary"],
      ["a trailing dot", bytes(`${CHALLENGE_NAME}.`), "any"],
      ["a name of 300 bytes", bytes(`${"a".repeat(63)}.`.repeat(5).slice(0, 300)), "any"],
      ["a NUL in the name", bytes(`${CHALLENGE_NAME}\0.evil`), "any"],
      ["bytes that are no text", Uint8Array.of(0xff, 0xfe, 0x80, 0x2e, 0xc3), "any"],
      ["an empty name", new Uint8Array(0), "any"],
    ];
    for (const [what, name, expected] of cases) {
      const answer = await within(
        answerTo(server.address, clientHello(name, ["acme-tls/1"])),
        10_000,
        what,
      );
      const presented = answer.certificate?.fingerprint256;
      if (expected === "challenge") assert.equal(presented, challenge.fingerprint256, what);
      else if (expected === "none") assert.deepEqual(answer, { closed: true }, what);
      else if (expected === "ordinary") assert.equal(presented, ordinary, what);
      else assert.notEqual(presented, challenge.fingerprint256, what);
    }
    // Still up and serving, nothing left open.
    assert.match(await fetchPolicy(server.address, B, ca.cert), /^HTTP\/1\.1 200 /);
  });

  it("shows the challenge certificate only to a client that offers acme-tls/1, however its ClientHello arrives", async () => {
    const server = await start({ ...ALPN_HTTP_LIMITS, headTimeoutMs: 2_000 });
    const ordinary = new X509Certificate(first.cert).fingerprint256;
    const name = new TextEncoder().encode(CHALLENGE_NAME);
    const certificateOf = async (what: string, hello: Uint8Array | Uint8Array[], pauseMs = 0) =>
      (await within(answerTo(server.address, hello, pauseMs), 10_000, what)).certificate
        ?.fingerprint256;
    // Ordinary clients asking for the challenged name in the challenge's
    // seconds (a sender fetching the MTA-STS policy): the usual certificate.
    assert.equal(await certificateOf("http/1.1", clientHello(name, ["http/1.1"])), ordinary);
    assert.equal(await certificateOf("no ALPN", clientHello(name, [])), ordinary);
    assert.equal(
      await certificateOf("h2 and http/1.1", clientHello(name, ["h2", "http/1.1"])),
      ordinary,
    );
    if (onDeno) return; // Deno's node:tls cannot present it at all (see the test above).
    // The CA's validation, and acme-tls/1 among others: the challenge certificate.
    const acmeHello = clientHello(name, ["acme-tls/1"]);
    assert.equal(await certificateOf("acme-tls/1", acmeHello), challenge.fingerprint256);
    assert.equal(
      await certificateOf("http/1.1 and acme-tls/1", clientHello(name, ["http/1.1", "acme-tls/1"])),
      challenge.fingerprint256,
    );
    // Cut anywhere, its pieces apart: read to its end before TLS starts.
    for (const cut of [1, 5, 6, 40, acmeHello.length - 1]) {
      assert.equal(
        await certificateOf(
          `cut at ${cut}`,
          [acmeHello.subarray(0, cut), acmeHello.subarray(cut)],
          50,
        ),
        challenge.fingerprint256,
        `cut at ${cut}`,
      );
    }
    // The handshake message spread over three records (RFC 8446 section 5.1).
    assert.equal(
      await certificateOf("three records", inRecords(acmeHello, 3)),
      challenge.fingerprint256,
    );
    assert.match(await fetchPolicy(server.address, B, ca.cert), /^HTTP\/1\.1 200 /);
  });

  it("ends an acme-tls/1 connection whose client keeps writing, and leaves no connection open", async () => {
    const server = await start({ ...ALPN_HTTP_LIMITS, headTimeoutMs: 500 });
    // No challenge for NAME: the client gets the listener's certificate, which it trusts.
    const client = await within(
      secure(server.address, A, ca.cert, ["acme-tls/1"], { allowHalfOpen: true }),
      10_000,
      "a handshake",
    );
    assert.equal(client.socket.alpnProtocol, "acme-tls/1");
    let ended = false;
    client.socket.once("end", () => ended = true);
    let afterEnd = 0;
    let closed = false;
    const received = client.closed.finally(() => closed = true);
    const chunk = "x".repeat(16 * 1024);
    // Writes without end (bounded: 20 s, 64 MB) until the server is gone.
    const started = Date.now();
    for (let sent = 0; !closed && sent < 4096 && Date.now() - started < 20_000; sent++) {
      if (!client.socket.write(chunk)) {
        await new Promise((r) => setTimeout(r, 5));
      }
      if (ended) afterEnd++;
      if (sent % 16 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    assert.equal(await within(received, 10_000, "the close"), "");
    // The server ended its side at the handshake; whatever was written after was dropped.
    assert.ok(ended || afterEnd === 0);
    await within(
      (async () => {
        while (server.connections() > 0) await new Promise((r) => setTimeout(r, 20));
      })(),
      10_000,
      "no connection left",
    );
  });

  it("refuses a huge head after an ordinary handshake", async () => {
    const server = await start();
    const client = await within(secure(server.address, A, ca.cert), 10_000, "a handshake");
    client.socket.write(`GET / HTTP/1.1\r\nHost: ${NAME}\r\nX: ${"a".repeat(256 * 1024)}\r\n\r\n`);
    const answer = await within(client.closed, 10_000, "the answer to a huge head");
    assert.ok(answer === "" || /^HTTP\/1\.1 431 /.test(answer), answer.slice(0, 80));
    assert.match(await fetchPolicy(server.address, B, ca.cert), /^HTTP\/1\.1 200 /);
  });

  it("survives a client renegotiating under TLS 1.2", async () => {
    const server = await start({ ...ALPN_HTTP_LIMITS, headTimeoutMs: 2_000 });
    const client = await within(
      secure(server.address, A, ca.cert, ["http/1.1"], { maxVersion: "TLSv1.2" }),
      10_000,
      "a TLS 1.2 handshake",
    );
    if (typeof client.socket.renegotiate === "function") {
      for (let i = 0; i < 5 && !client.socket.destroyed; i++) {
        await new Promise<void>((resolve) => {
          const asked = client.socket.renegotiate({}, () => resolve());
          if (asked === false) resolve();
        });
      }
    }
    client.socket.destroy();
    assert.match(await fetchPolicy(server.address, B, ca.cert), /^HTTP\/1\.1 200 /);
    assert.match(await fetchPolicy(server.address, A, ca.cert), /^HTTP\/1\.1 200 /);
  });

  it("holds a flood of full handshakes from one address to its share; the other is served", async () => {
    const server = await start({
      ...ALPN_HTTP_LIMITS,
      maxConnectionsPerAddress: 4,
      headTimeoutMs: 60_000,
    });
    const attempts = await Promise.allSettled(
      Array.from(
        { length: 30 },
        () =>
          within(
            secure(server.address, A, ca.cert, ["acme-tls/1", "http/1.1"]),
            10_000,
            "a handshake",
          ),
      ),
    );
    for (const attempt of attempts) {
      if (attempt.status === "fulfilled") closers.push(() => attempt.value.socket.destroy());
    }
    assert.ok(server.connections() <= 4 + 1, `${server.connections()} connections`);
    assert.match(await fetchPolicy(server.address, B, ca.cert), /^HTTP\/1\.1 200 /);
  });
});
