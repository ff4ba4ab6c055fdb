/**
 * ACME against a real CA (Debian's pebble) on loopback, validating HTTP-01
 * for real through Postern's challenge server, with names resolved by the
 * tests' DNS server: issuance after pebble was down at first start (mail
 * flows meanwhile on the self-signed certificate), the chain checked by
 * openssl, the MTA-STS policy over HTTPS, a live renewal under an open
 * session, and failures in /metrics and /status. The TLS-ALPN-01 challenge
 * is in acme_tls_alpn_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { connect as netConnect, type Socket } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { after, before, describe, it } from "node:test";
import { parsePolicy } from "mailauth/lib/mta-sts.js";
import { CHALLENGE_HTTP_LIMITS } from "../../src/tls/acme_service.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { type Pebble, startPebble } from "../support/pebble.ts";
import { TestCa } from "../support/test_ca.ts";
import { admin, getPolicy, HOST, sClient, until } from "./acme_setup.ts";
import { cleanup, freePort, type Server, startServer, swaks, tempDir } from "./harness.ts";

/** An SMTP session upgraded with STARTTLS, trusting `ca`. */
async function tlsSession(server: Server, ca: string): Promise<{
  socket: TLSSocket;
  command: (line: string) => Promise<string>;
}> {
  const plain = netConnect(server.port, server.host);
  let buffer = "";
  const reply = (socket: { on: (e: "data", f: (c: Uint8Array) => void) => void }) => {
    const waiting: Array<(line: string) => void> = [];
    socket.on("data", (chunk) => {
      buffer += new TextDecoder().decode(chunk);
      let nl;
      while ((nl = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        if (!/^\d{3}-/.test(line)) waiting.shift()?.(line);
      }
    });
    return () => new Promise<string>((r) => waiting.push(r));
  };
  const nextPlain = reply(plain);
  const greeting = nextPlain();
  await greeting;
  let next = nextPlain();
  plain.write(`EHLO client.test\r\n`);
  await next;
  next = nextPlain();
  plain.write(`STARTTLS\r\n`);
  assert.match(await next, /^220 /);
  plain.removeAllListeners("data");
  const socket = tlsConnect({ socket: plain, ca, servername: HOST });
  await new Promise<void>((res, rej) => {
    socket.once("secureConnect", () => res());
    socket.once("error", rej);
  });
  const nextTls = reply(socket);
  return {
    socket,
    command: (line) => {
      const answer = nextTls();
      socket.write(`${line}\r\n`);
      return answer;
    },
  };
}

/** A TLS connection to the policy host: resolves once the handshake is done. */
function policyConnection(
  port: number,
  ca: string,
): Promise<{ socket: TLSSocket; closed: Promise<string> }> {
  const socket = tlsConnect({ host: "127.0.0.1", port, servername: "mta-sts.example.test", ca });
  let text = "";
  socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
  const closed = new Promise<string>((resolve) => socket.on("close", () => resolve(text)));
  return new Promise((resolve, reject) => {
    socket.once("secureConnect", () => resolve({ socket, closed }));
    socket.once("error", reject);
    // Later errors end in "close"; unlistened, they would be thrown.
    socket.on("error", () => {});
    // A server that neither answers nor closes fails the test, not hangs it.
    socket.setTimeout(30_000, () => socket.destroy());
  });
}

describe("ACME certificates from pebble", () => {
  let dns: TestDnsServer;
  let pebble: Pebble | undefined;
  let pebbleCa: TestCa;
  let server: Server;
  let pebblePorts: { api: number; management: number };
  let httpPort: number;
  let httpsPort: number;
  let rootFile: string;
  let rootDir: string;

  before(async () => {
    dns = await startDnsServer({
      [HOST]: { A: ["127.0.0.1"] },
      "mta-sts.example.test": { A: ["127.0.0.1"] },
    });
    httpPort = await freePort();
    httpsPort = await freePort();
    pebblePorts = { api: await freePort(), management: await freePort() };
    pebbleCa = await TestCa.create("Pebble API Test CA");
    rootDir = await tempDir("postern-acme-root-");
    rootFile = join(rootDir, "root.pem");
    // Pebble is not running yet: the first orders fail.
    server = await startServer({
      config: {
        "postern.yaml": [
          `hostname: ${HOST}`,
          "tls:",
          "  acme:",
          "    email: postmaster@example.test",
          `    directory: https://localhost:${pebblePorts.api}/dir`,
          `    ca_file: ${pebbleCa.certFile}`,
          `    http_listen: 127.0.0.1:${httpPort}`,
          `    https_listen: 127.0.0.1:${httpsPort}`,
          "    retry_initial: 1s",
          "domains:",
          "  example.test:",
          "    any_user: true",
          "    mta_sts: { mode: enforce, max_age: 1d }",
          "",
        ].join("\n"),
      },
    });
  });

  after(async () => {
    await cleanup(server);
    await pebble?.remove();
    await pebbleCa.remove();
    await dns?.close();
    if (rootDir) await rm(rootDir, { recursive: true, force: true });
  });

  it("answers on port 80 through its own bounded server: a body past 1 KiB gets 413, unread", async () => {
    // The runtimes' servers (Deno.serve, Bun.serve) answered this with the
    // app's 404 and read the whole body; Postern's server refuses it first.
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = netConnect(httpPort, "127.0.0.1");
      let text = "";
      socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
      socket.on("close", () => resolve(text));
      socket.on("error", reject);
      // The old server waited for the body that never comes: fail, not hang.
      socket.setTimeout(15_000, () => {
        socket.destroy();
        reject(new Error(`no answer without the body; got ${JSON.stringify(text)}`));
      });
      socket.write(
        "POST /.well-known/acme-challenge/x HTTP/1.1\r\nHost: example.test\r\n" +
          "Content-Length: 2048\r\n\r\n",
      );
    });
    assert.match(reply, /^HTTP\/1\.1 413 /);
    assert.match(reply, /\r\nconnection: close\r\n/i);
  });

  it("serves mail on the self-signed certificate while the CA is down, and says so", async () => {
    assert.match(server.stderr(), /acme certificate not issued yet; STARTTLS uses the self-signed/);
    const sent = await swaks(server, [
      "--to",
      "someone@example.test",
      "--from",
      "sender@client.test",
      "--tls",
    ]);
    assert.equal(sent.code, 0, sent.stdout + sent.stderr);
    const failed = await until("a failed order", 30_000, async () => {
      const status = await (await admin(server, "GET", "/status")).json();
      return status.acme.consecutive_failures > 0 ? status.acme : undefined;
    });
    assert.equal(failed.state, "pending");
    assert.match(failed.last_error, /\S/);
  });

  it("obtains a certificate once the CA is up; STARTTLS presents a chain to pebble's root", async () => {
    pebble = await startPebble({
      dnsServer: dns.address,
      httpPort,
      tlsPort: await freePort(),
      ports: pebblePorts,
      ca: pebbleCa,
    });
    await writeFile(rootFile, await pebble.root());
    const status = await until("the certificate", 90_000, async () => {
      const s = await (await admin(server, "GET", "/status")).json();
      return s.acme.state === "issued" ? s.acme : undefined;
    });
    assert.equal(status.consecutive_failures, 0);
    const checked = await sClient(server, rootFile);
    assert.equal(checked.code, 0, checked.out);
    assert.match(checked.out, /Verify return code: 0 \(ok\)/);
    assert.match(checked.out, /Pebble Intermediate/);
    // The account key and certificate: mode 0600.
    for (const file of ["account.key", "certificate.pem"]) {
      assert.equal((await stat(join(server.dataDir, "acme", file))).mode & 0o777, 0o600, file);
    }
  });

  it("serves the MTA-STS policy over HTTPS with the ACME certificate", async () => {
    const root = await readFile(rootFile, "utf8");
    const answer = await getPolicy(httpsPort, root, "mta-sts.example.test");
    assert.equal(answer.status, 200, answer.body);
    const policy = parsePolicy(answer.body);
    assert.equal(policy.mode, "enforce");
    assert.deepEqual(policy.mx, [HOST]);
    assert.equal(policy.maxAge, 86_400);
    const other = await getPolicy(httpsPort, root, "mta-sts.other.test").catch((e) => e);
    // Not our name: the certificate does not cover it, or no policy.
    assert.ok(other instanceof Error || other.status === 404);
  });

  it("applies a renewal live: an open session goes on, new sessions get the new certificate", async () => {
    const root = await readFile(rootFile, "utf8");
    const session = await tlsSession(server, root);
    assert.match(await session.command("EHLO client.test"), /^250 /);
    const before = session.socket.getPeerX509Certificate()!.serialNumber;
    // A policy request begun before the renewal (the renewal takes well
    // under the server's 10 s for a request head).
    const policy = await policyConnection(httpsPort, root);
    policy.socket.write("GET /.well-known/mta-sts.txt HTTP/1.1\r\n");
    assert.equal(policy.socket.getPeerX509Certificate()!.serialNumber, before);
    const renewed = await admin(server, "POST", "/acme/renew");
    assert.equal(renewed.status, 200);
    assert.equal((await renewed.json()).ok, true);
    // The session opened before the renewal still works.
    assert.match(await session.command("NOOP"), /^250 /);
    assert.match(await session.command("MAIL FROM:<a@client.test>"), /^250 /);
    assert.match(await session.command("QUIT"), /^221 /);
    session.socket.destroy();
    const next = await tlsSession(server, root);
    const afterSerial = next.socket.getPeerX509Certificate()!.serialNumber;
    next.socket.destroy();
    assert.notEqual(afterSerial, before);
    // The policy request is answered on the connection it began on, and
    // the same port presents the new certificate to a new connection.
    policy.socket.write("Host: mta-sts.example.test\r\n\r\n");
    assert.match(await policy.closed, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nversion: STSv1\r?\n/);
    const fresh = await policyConnection(httpsPort, root);
    assert.equal(fresh.socket.getPeerX509Certificate()!.serialNumber, afterSerial);
    fresh.socket.destroy();
    assert.equal((await getPolicy(httpsPort, root, "mta-sts.example.test")).status, 200);
  });

  it("renews while one host floods port 80: the flood keeps to its share, the CA gets through", async () => {
    // Without a share per host, the flood took all 256 connections of the
    // challenge server, pebble's validation got 503, and the order failed.
    // The flood comes back as the server closes it, as an attacker's would.
    const flood = new Set<Socket>();
    let flooding = true;
    let connected = 0;
    const connectOne = () => {
      if (!flooding) return;
      const socket = netConnect({ port: httpPort, host: "127.0.0.1", localAddress: "127.0.0.2" });
      flood.add(socket);
      socket.on("connect", () => connected++);
      socket.on("error", () => {});
      socket.on("close", () => {
        flood.delete(socket);
        if (flooding) setTimeout(connectOne, 200);
      });
    };
    try {
      const size = CHALLENGE_HTTP_LIMITS.maxConnections + 8;
      for (let i = 0; i < size; i++) connectOne();
      await until(
        "the flood to connect",
        30_000,
        () => Promise.resolve(connected >= size || undefined),
      );
      const renewed = await (await admin(server, "POST", "/acme/renew")).json();
      assert.deepEqual([renewed.ok, renewed.acme.last_error], [true, null]);
      assert.match(
        server.stderr(),
        /ACME challenge server refuses connections from a client over its share/,
      );
      const metrics = await (await admin(server, "GET", "/metrics")).text();
      assert.match(
        metrics,
        /^postern_http_connections_total\{outcome="per_address",server="acme_challenge"\} [1-9]/m,
      );
    } finally {
      flooding = false;
      for (const socket of flood) socket.destroy();
    }
  });

  it("runs renewals asked for at once one after another, each completing", async () => {
    const answers = await Promise.all(
      [1, 2, 3].map(async () => await (await admin(server, "POST", "/acme/renew")).json()),
    );
    assert.deepEqual(answers.map((a) => [a.ok, a.acme.last_error]), [
      [true, null],
      [true, null],
      [true, null],
    ]);
    const metrics = await (await admin(server, "GET", "/metrics")).text();
    assert.match(metrics, /^postern_acme_orders_total\{result="issued"\} 6$/m);
  });

  it("counts a failed renewal in /metrics and /status", async () => {
    await pebble!.stop();
    const renewed = await admin(server, "POST", "/acme/renew");
    assert.equal((await renewed.json()).ok, false);
    const metrics = await (await admin(server, "GET", "/metrics")).text();
    // At least 1: with retry_initial 1s, a retry may fail too before the
    // request is answered on a slow machine (3 failures were seen).
    assert.match(metrics, /^postern_acme_renewal_failures [1-9]\d*$/m);
    assert.match(metrics, /^postern_acme_orders_total\{result="failed"\} [1-9]/m);
    assert.match(metrics, /^postern_acme_orders_total\{result="issued"\} 6$/m);
    const expiry = /^postern_acme_certificate_expires_in_seconds (\d+)$/m.exec(metrics);
    assert.ok(expiry && Number(expiry[1]) > 86_400, metrics);
    const status = await (await admin(server, "GET", "/status")).json();
    assert.equal(status.acme.state, "issued");
    assert.ok(status.acme.consecutive_failures >= 1, JSON.stringify(status.acme));
  });
});
