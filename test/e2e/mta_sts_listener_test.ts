/**
 * The MTA-STS policy server (HTTPS, port 443 in production) against the
 * running server, which faces the Internet: it survives running out of
 * descriptors (the runtime's own server, Deno.serve, ended the process,
 * and SMTP with it), closes connections stalled in the TLS handshake or
 * the request head, refuses those over its cap, closes at once those of a
 * host over its share (so that one host cannot take them all), and serves
 * the policy again after each. Linux routes all of 127/8 to loopback: the
 * clients bind addresses of it to be several hosts.
 *
 * The certificate is one of a test CA, stored where a node with
 * `tls.acme.renew: false` reads it: no CA is needed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { after, before, describe, it } from "node:test";
import { parsePolicy } from "mailauth/lib/mta-sts.js";
import { MTA_STS_HTTP_LIMITS } from "../../src/tls/acme_service.ts";
import { TestCa } from "../support/test_ca.ts";
import {
  cleanup,
  eventually,
  rawSession,
  type Server,
  startServer,
  TARGET,
  tempDir,
} from "./harness.ts";
import { within } from "../support/within.ts";

const HOST = "mail.example.test";
const POLICY_HOST = "mta-sts.example.test";

/** A raw TCP connection from `from`: resolves once connected; `closed` gives all it received. */
function rawConnect(
  port: number,
  from = "127.0.0.1",
): Promise<{ socket: Socket; closed: Promise<string> }> {
  const socket = connect({ port, host: "127.0.0.1", localAddress: from });
  let text = "";
  socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
  socket.on("error", () => {});
  const closed = new Promise<string>((resolve) => socket.on("close", () => resolve(text)));
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve({ socket, closed }));
    socket.once("error", reject);
  });
}

/**
 * A TLS connection to the policy host from `from` (over a TCP socket bound
 * there): resolves once the handshake is done.
 */
function tlsOpen(
  port: number,
  ca: string,
  from = "127.0.0.1",
): Promise<{ socket: TLSSocket; closed: Promise<string> }> {
  const below = connect({ port, host: "127.0.0.1", localAddress: from });
  below.on("error", () => {});
  const socket = tlsConnect({ socket: below, servername: POLICY_HOST, ca });
  let text = "";
  socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
  socket.on("error", () => {});
  const closed = new Promise<string>((resolve) => socket.on("close", () => resolve(text)));
  return new Promise((resolve, reject) => {
    socket.once("secureConnect", () => resolve({ socket, closed }));
    socket.once("close", () => reject(new Error("closed before the TLS handshake completed")));
  });
}

/** GET of the policy over HTTPS, trusting `ca`. */
function getPolicy(port: number, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      path: "/.well-known/mta-sts.txt",
      servername: POLICY_HOST,
      headers: { host: POLICY_HOST },
      ca,
      timeout: 15_000,
    }, (res) => {
      let body = "";
      res.on("data", (c: Uint8Array) => body += new TextDecoder().decode(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("no answer to the policy request in 15 s")));
    req.on("error", reject);
    req.end();
  });
}

/** The body of an admin API GET of `path`. */
async function adminGet(server: Server, path: string): Promise<string> {
  const state = JSON.parse(await readFile(join(server.dataDir, "run", "admin.json"), "utf8"));
  const token = (await readFile(join(server.dataDir, "admin.token"), "utf8")).trim();
  const response = await fetch(`http://${state.address}${path}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return await response.text();
}

/** The HTTPS port, from /status once the policy server runs. */
async function httpsPort(server: Server): Promise<number> {
  const address = await eventually(
    async () => JSON.parse(await adminGet(server, "/status")).acme?.https_listen ?? undefined,
    15_000,
    "the MTA-STS policy server",
  );
  return Number(String(address).slice(String(address).lastIndexOf(":") + 1));
}

describe("MTA-STS policy server", () => {
  let ca: TestCa;
  let stored: string;

  before(async () => {
    ca = await TestCa.create();
    const leaf = await ca.issue(HOST, POLICY_HOST);
    // As AcmeStore writes it: the key, then the chain.
    stored = `${leaf.key.trim()}\n${leaf.cert.trim()}\n`;
  });
  after(async () => await ca?.remove());

  /** The server with a policy for example.test, its certificate stored by "another node". */
  async function start(wrapper?: string[]): Promise<{ server: Server; port: number }> {
    const dataDir = await tempDir("postern-data-");
    await mkdir(join(dataDir, "acme"), { mode: 0o700 });
    await writeFile(join(dataDir, "acme", "certificate.pem"), stored, { mode: 0o600 });
    const server = await startServer({
      dataDir,
      config: {
        "postern.yaml": [
          `hostname: ${HOST}`,
          "tls:",
          "  acme:",
          "    email: postmaster@example.test",
          "    directory: https://127.0.0.1:9/dir",
          "    renew: false",
          "    https_listen: 127.0.0.1:0",
          "domains:",
          "  example.test:",
          "    any_user: true",
          "    mta_sts: { mode: enforce, max_age: 1d }",
          "",
        ].join("\n"),
      },
      ...(wrapper ? { wrapper } : {}),
    });
    return { server, port: await httpsPort(server) };
  }

  it("keeps serving when the process runs out of descriptors, and says so once", async () => {
    const limit = 200;
    const { server, port } = await start(["bash", "-c", `ulimit -n ${limit}; exec "$@"`, "bash"]);
    const flood: Socket[] = [];
    try {
      // Opened before the flood: answering it takes no new descriptor.
      const session = await rawSession(server);
      assert.match(await session.read(), /^220 /);
      // Idle connections to the HTTPS port take every descriptor the
      // server has left; the ones it cannot accept wait in the listen queue.
      // They come from many hosts, each within its share.
      const share = MTA_STS_HTTP_LIMITS.maxConnectionsPerAddress;
      for (let i = 0; i < limit + 100; i++) {
        flood.push((await rawConnect(port, `127.0.1.${1 + Math.floor(i / share)}`)).socket);
      }
      const fds = `/proc/${server.child.pid}/fd`;
      await eventually(
        async () => {
          if (server.child.exitCode !== null || server.child.signalCode !== null) {
            throw new Error(`the server exited while out of descriptors:\n${server.stderr()}`);
          }
          return (await readdir(fds)).length >= limit ? true : undefined;
        },
        20_000,
        "the server to hold its last descriptor",
      );
      if (TARGET === "deno") {
        // Bun's node:net listener retries without reporting it.
        await eventually(
          () =>
            Promise.resolve(
              /MTA-STS policy server cannot accept connections/.test(server.stderr()) ||
                undefined,
            ),
          10_000,
          "the failed accept to be logged",
        );
      }
      // Out of descriptors, SMTP still answers.
      assert.match(await within(session.send("NOOP"), 10_000, "an answer to NOOP"), /^250 /);
      for (const socket of flood.splice(0)) socket.destroy();
      const answer = await getPolicy(port, ca.cert);
      assert.equal(answer.status, 200, answer.body);
      assert.equal(parsePolicy(answer.body).mode, "enforce");
      const fresh = await rawSession(server);
      assert.match(await fresh.read(), /^220 /);
      fresh.close();
      assert.match(await session.send("QUIT"), /^221 /);
      assert.equal(server.child.exitCode, null, server.stderr());
      const warnings = server.stderr().match(/MTA-STS policy server cannot accept/g) ?? [];
      assert.ok(warnings.length <= 1, server.stderr());
    } finally {
      for (const socket of flood) socket.destroy();
      await cleanup(server);
    }
  });

  it("closes connections stalled in the handshake or the head, and refuses those over its cap", async () => {
    const { server, port } = await start();
    const held: Array<{ socket: Socket; closed: Promise<string> }> = [];
    let timer: ReturnType<typeof setInterval> | undefined;
    try {
      // Connected, never a ClientHello: from as many hosts as it takes,
      // each within its share, to fill the cap.
      const share = MTA_STS_HTTP_LIMITS.maxConnectionsPerAddress;
      for (let i = 0; i < MTA_STS_HTTP_LIMITS.maxConnections - 2; i++) {
        held.push(await rawConnect(port, `127.0.1.${1 + Math.floor(i / share)}`));
      }
      // The first bytes of a ClientHello record, and no more.
      const halfHello = await rawConnect(port, "127.0.2.1");
      halfHello.socket.write(Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0xc8, 1));
      held.push(halfHello);
      // The handshake done, then a header line every half second: the
      // deadline runs from the connection, not from the last byte.
      const slow = await within(
        tlsOpen(port, ca.cert, "127.0.2.2"),
        30_000,
        "the handshake of a client",
      );
      held.push(slow);
      slow.socket.write("GET /.well-known/mta-sts.txt HTTP/1.1\r\n");
      let lines = 0;
      timer = setInterval(() => {
        if (++lines <= 120) slow.socket.write(`X-Line-${lines}: a\r\n`);
      }, 500);
      // Accepted after the others (the listen queue keeps their order), it
      // finds the cap reached and gets a 503 once its handshake is done.
      const over = await within(
        tlsOpen(port, ca.cert, "127.0.2.3"),
        30_000,
        "the handshake over the cap",
      );
      const refused = await within(over.closed, 30_000, "an answer to the connection over the cap");
      assert.match(refused, /^HTTP\/1\.1 503 /);
      assert.match(refused, /too many connections to the MTA-STS policy server/);
      // None of the others ever completes a request: the server closes them.
      const bound = 3 * MTA_STS_HTTP_LIMITS.headTimeoutMs;
      for (const { closed } of held) {
        assert.equal(await within(closed, bound, "closing a stalled connection"), "");
      }
      clearInterval(timer);
      const answer = await getPolicy(port, ca.cert);
      assert.equal(answer.status, 200, answer.body);
      assert.deepEqual(parsePolicy(answer.body).mx, [HOST]);
    } finally {
      clearInterval(timer);
      for (const { socket } of held) socket.destroy();
      await cleanup(server);
    }
  });
  it("keeps one host to its share: the rest closed before any handshake, another host served", async () => {
    // Without a share per host, this flood took every connection: a real
    // GET from anyone else got 503 (or nothing) until the server closed
    // the flood at its head deadline, and the flood came back.
    const { server, port } = await start();
    const flood: Array<{ socket: Socket; closed: Promise<string> }> = [];
    try {
      const share = MTA_STS_HTTP_LIMITS.maxConnectionsPerAddress;
      // More connections than the cap, from one host, never a byte.
      for (let i = 0; i < MTA_STS_HTTP_LIMITS.maxConnections + 44; i++) {
        flood.push(await rawConnect(port, "127.0.0.1"));
      }
      // Another host gets the policy at once.
      const other = await within(
        tlsOpen(port, ca.cert, "127.0.0.2"),
        30_000,
        "the handshake of another host",
      );
      other.socket.write(`GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: ${POLICY_HOST}\r\n\r\n`);
      const answer = await within(other.closed, 30_000, "the policy for another host");
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.equal(parsePolicy(answer.slice(answer.indexOf("\r\n\r\n") + 4)).mode, "enforce");
      // The host's connections past its share (accepted in the order they
      // connected) were closed at once, unanswered; a TLS client of that
      // host gets no handshake.
      for (const { closed } of flood.slice(share)) {
        assert.equal(await within(closed, 30_000, "the close of a connection over the share"), "");
      }
      await assert.rejects(
        within(tlsOpen(port, ca.cert, "127.0.0.1"), 30_000, "the close of a TLS client"),
        /closed before the TLS handshake completed/,
      );
      // One log line for the whole flood, and every refusal counted.
      const lines = server.stderr().match(
        /MTA-STS policy server refuses connections from a client over its share/g,
      ) ?? [];
      assert.equal(lines.length, 1, server.stderr());
      const metrics = await adminGet(server, "/metrics");
      const refused =
        /^postern_http_connections_total\{outcome="per_address",server="mta_sts"\} (\d+)$/m
          .exec(metrics);
      assert.ok(refused && Number(refused[1]) >= flood.length - share + 1, metrics);
    } finally {
      for (const { socket } of flood) socket.destroy();
      await cleanup(server);
    }
  });
});
