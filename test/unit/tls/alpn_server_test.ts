/**
 * The HTTPS port under TLS-ALPN-01 against hostile clients: one address's
 * idle connections and handshakes stuck halfway are held to its share and
 * closed by the head deadline, while another address still gets the policy
 * and completes its `acme-tls/1` handshake; the CA's share grows with the
 * names of an order; and what the server did before still holds (policy
 * over HTTP/1.1, 400, the end after an `acme-tls/1` handshake, a renewal).
 *
 * Linux routes all of 127/8 to loopback: clients bind 127.0.0.1 and
 * 127.0.0.2 as two hosts. The CA's handshake is openssl s_client's, as in
 * alpn_runtime_test.ts (Bun's TLS client refuses the challenge
 * certificate's key usage), reaching the server through a forwarder bound
 * to the other address; Deno cannot present that certificate at all
 * (why start-up refuses tls-alpn-01 there), so on Deno the other address's
 * `acme-tls/1` handshake is one for a name with no challenge open.
 *
 * @module
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { connect as netConnect, createServer, type Server, type Socket } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import acme from "acme-client";
import { ChallengeTokens } from "../../../src/tls/acme.ts";
import {
  ALPN_HTTP_LIMITS,
  alpnLimits,
  type AlpnServer,
  startAlpnServer,
} from "../../../src/tls/alpn_server.ts";
import type { Http1Limits } from "../../../src/http/http1_server.ts";
import { type KeyPair, TestCa } from "../../support/test_ca.ts";
import { within } from "../../support/within.ts";
import {
  A,
  B,
  CHALLENGE_NAME,
  type Client,
  fetchPolicy,
  GET,
  NAME,
  plain,
  portOf,
  secure,
} from "./alpn_clients.ts";

const KEY_AUTHORIZATION = "token-abc.thumbprint-xyz";
const onDeno = "Deno" in globalThis;
/** The first bytes of a ClientHello record, and no more: a handshake stuck halfway. */
const HALF_HELLO = Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0xc8, 1);

/**
 * An `acme-tls/1` handshake from `from` for a name with no challenge open,
 * then a GET: the protocol agreed, and what came back before the server
 * closed.
 */
async function acmeHandshake(address: string, from: string, ca: string) {
  const client = await within(
    secure(address, from, ca, ["acme-tls/1"]),
    10_000,
    `an acme-tls/1 handshake from ${from}`,
  );
  const protocol = client.socket.alpnProtocol;
  client.socket.write(GET);
  return { protocol, received: await within(client.closed, 10_000, "the close") };
}

/** A TCP forwarder whose connections to `address` come from `from` (openssl binds no address). */
async function forwarder(address: string, from: string): Promise<Server> {
  const server = createServer((inbound) => {
    const outbound = netConnect({ port: portOf(address), host: "127.0.0.1", localAddress: from });
    for (const [a, b] of [[inbound, outbound], [outbound, inbound]] as const) {
      a.on("error", () => {});
      a.on("close", () => b.destroy());
      a.pipe(b);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return server;
}

/** openssl s_client as the CA, through `via`: whether the challenge certificate came back. */
function challengePresented(via: Server): Promise<{ presented: boolean; out: string }> {
  const port = (via.address() as { port: number }).port;
  const args = ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", CHALLENGE_NAME];
  return new Promise((resolve) => {
    execFile(
      "openssl",
      [...args, "-alpn", "acme-tls/1"],
      { timeout: 8_000 },
      (_, stdout, stderr) => {
        const out = `${stdout}\n${stderr}`;
        const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0];
        const presented = pem !== undefined && /ALPN protocol: acme-tls\/1/.test(out) &&
          acme.crypto.isAlpnCertificateAuthorizationValid(pem, KEY_AUTHORIZATION);
        resolve({ presented, out });
      },
    ).stdin!.end();
  });
}

describe("the TLS-ALPN-01 and MTA-STS server against hostile clients", () => {
  let ca: TestCa;
  let first: KeyPair;
  let second: KeyPair;
  const tokens = new ChallengeTokens();
  const servers: AlpnServer[] = [];
  const closers: Array<() => void> = [];

  before(async () => {
    ca = await TestCa.create();
    first = await ca.issue(NAME);
    second = await ca.issue(NAME);
    const [key, cert] = await acme.crypto.createAlpnCertificate(
      { identifier: { type: "dns", value: CHALLENGE_NAME } } as Parameters<
        typeof acme.crypto.createAlpnCertificate
      >[0],
      KEY_AUTHORIZATION,
    );
    tokens.alpn.set(CHALLENGE_NAME, { keyPem: key.toString(), certPem: cert.toString() });
  });
  after(async () => await ca?.remove());
  afterEach(async () => {
    for (const close of closers.splice(0)) close();
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  async function start(options: { limits?: Http1Limits; names?: number } = {}) {
    const server = await startAlpnServer({
      host: "127.0.0.1",
      port: 0,
      tokens,
      initial: { certPem: first.cert, keyPem: first.key },
      fetch: (request) => new Response(`policy for ${request.headers.get("host")}\n`),
      ...options,
    });
    servers.push(server);
    return server;
  }

  /** Keeps `clients` until the test ends. */
  function hold<S extends Socket>(...clients: Client<S>[]): Client<S>[] {
    for (const c of clients) closers.push(() => c.socket.destroy());
    return clients;
  }

  it("holds one address to its share; another still gets the policy and its acme-tls/1 handshake", async () => {
    // No deadline in reach: only the share stands between A and the server.
    const server = await start({
      limits: {
        ...ALPN_HTTP_LIMITS,
        maxConnections: 8,
        maxConnectionsPerAddress: 3,
        headTimeoutMs: 60_000,
      },
    });
    // A's share: two silent connections and a handshake stuck halfway.
    const held = hold(
      await plain(server.address, A),
      await plain(server.address, A),
      await plain(server.address, A, HALF_HELLO),
    );
    // Twenty more from A, idle or halfway: each closed at once, unanswered.
    const extra = hold(
      ...await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => plain(server.address, A, i % 2 ? HALF_HELLO : undefined),
        ),
      ),
    );
    const refused = await within(
      Promise.all(extra.map((c) => c.closed)),
      10_000,
      "the close of A's connections over its share",
    );
    assert.deepEqual(new Set(refused), new Set([""]));
    // B is served meanwhile, policy and challenge alike.
    assert.match(
      await fetchPolicy(server.address, B, ca.cert),
      /^HTTP\/1\.1 200 [\s\S]*policy for/,
    );
    assert.deepEqual(await acmeHandshake(server.address, B, ca.cert), {
      protocol: "acme-tls/1",
      received: "",
    });
    if (!onDeno) {
      const via = await forwarder(server.address, B);
      closers.push(() => via.close());
      const { presented, out } = await challengePresented(via);
      assert.ok(presented, out);
    }
    for (const client of held) assert.equal(client.socket.readyState, "open");
    assert.ok(server.connections() <= 8);
  });

  it("closes a handshake that never completes, and a silent connection, by the head deadline", async () => {
    const server = await start({ limits: { ...ALPN_HTTP_LIMITS, headTimeoutMs: 300 } });
    const [silent, halfway] = hold(
      await plain(server.address, A),
      await plain(server.address, A, HALF_HELLO),
    );
    assert.equal(await within(silent!.closed, 10_000, "the close of a silent connection"), "");
    assert.equal(await within(halfway!.closed, 10_000, "the close of a stalled handshake"), "");
    assert.equal(server.connections(), 0);
    assert.match(await fetchPolicy(server.address, A, ca.cert), /^HTTP\/1\.1 200 /);
  });

  it("lets one address of the CA hold a handshake for every name of an order", async () => {
    assert.deepEqual(alpnLimits(2), ALPN_HTTP_LIMITS);
    assert.equal(alpnLimits(20).maxConnectionsPerAddress, 20);
    assert.equal(alpnLimits(1000).maxConnectionsPerAddress, ALPN_HTTP_LIMITS.maxConnections);
    const server = await start({ names: 12 });
    const validations = hold(
      ...await Promise.all(Array.from({ length: 12 }, () => plain(server.address, B))),
    );
    // The thirteenth is over the share: closed at once, after the twelve
    // before it were let in.
    const [over] = hold(await plain(server.address, B));
    assert.equal(await within(over!.closed, 10_000, "the close of a 13th connection"), "");
    for (const client of validations) assert.equal(client.socket.readyState, "open");
  });

  it("serves the policy, answers 400, ends acme-tls/1 connections, and takes a renewal", async () => {
    const server = await start();
    const policy = await fetchPolicy(server.address, A, ca.cert);
    assert.match(policy, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(policy, /\r\nconnection: close\r\n/);
    assert.match(policy, /\r\n\r\npolicy for mta-sts\.example\.test\n$/);
    const bad = await within(secure(server.address, A, ca.cert), 10_000, "a handshake");
    bad.socket.write("GET http://elsewhere/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(await within(bad.closed, 10_000, "the 400"), /^HTTP\/1\.1 400 /);
    // RFC 8737 section 3: the handshake is the whole answer, GET or not.
    assert.deepEqual(await acmeHandshake(server.address, A, ca.cert), {
      protocol: "acme-tls/1",
      received: "",
    });
    const fingerprint = async () => {
      const client = await within(secure(server.address, A, ca.cert), 10_000, "a handshake");
      const presented = client.socket.getPeerCertificate().fingerprint256;
      client.socket.destroy();
      return presented;
    };
    assert.equal(await fingerprint(), new X509Certificate(first.cert).fingerprint256);
    server.setCertificate({ certPem: second.cert, keyPem: second.key });
    assert.equal(await fingerprint(), new X509Certificate(second.cert).fingerprint256);
    assert.match(await fetchPolicy(server.address, A, ca.cert), /^HTTP\/1\.1 200 /);
  });
});
