import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { afterEach, describe, it } from "node:test";
import {
  ADMIN_HTTP_LIMITS,
  type FetchHandler,
  type Http1Limits,
  type Http1Server,
  serveHttp1,
} from "../../../src/http/http1_server.ts";
import { listenTcp, type TcpConn, type TcpListener } from "../../../src/runtime/mod.ts";
import { deferred } from "../helpers.ts";

/** Limits for tests: short deadlines, small sizes, a few connections. */
const LIMITS: Http1Limits = {
  name: "admin API",
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

interface LogLine {
  level: string;
  msg: string;
  fields?: Record<string, string | number>;
}

function recorder() {
  const lines: LogLine[] = [];
  return {
    lines,
    log: {
      warn: (msg: string, fields?: Record<string, string | number>) =>
        lines.push({ level: "warn", msg, ...(fields ? { fields } : {}) }),
      info: (msg: string, fields?: Record<string, string | number>) =>
        lines.push({ level: "info", msg, ...(fields ? { fields } : {}) }),
    },
  };
}

/** A raw client connection: what it received, and a promise of its close. */
interface Raw {
  socket: Socket;
  received: () => string;
  closed: Promise<string>;
}

function open(address: string): Promise<Raw> {
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  const socket = connect(port, "127.0.0.1");
  let text = "";
  socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
  socket.on("error", () => {});
  const closed = new Promise<string>((resolve) => socket.on("close", () => resolve(text)));
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve({ socket, received: () => text, closed }));
    socket.once("error", reject);
  });
}

/** Sends `request` on a new connection and resolves with all the server sent until it closed. */
async function exchange(address: string, request: string | Uint8Array): Promise<string> {
  const raw = await open(address);
  raw.socket.write(request);
  return await raw.closed;
}

const echo: FetchHandler = async (request) =>
  Response.json({
    method: request.method,
    url: request.url,
    body: request.body ? await request.text() : null,
    type: request.headers.get("content-type"),
  });

describe("serveHttp1", () => {
  const servers: Http1Server[] = [];
  const start = async (
    handler: FetchHandler = echo,
    limits: Http1Limits = LIMITS,
    log = recorder().log,
  ) => {
    const server = serveHttp1(await listenTcp("127.0.0.1", 0), handler, log, limits);
    servers.push(server);
    return server;
  };
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.close();
  });

  it("answers one request per connection, with its length, and closes", async () => {
    const server = await start();
    const reply = await exchange(
      server.address,
      "POST /queue/x?y=1 HTTP/1.1\r\nHost: evil.test\r\nContent-Type: application/json\r\n" +
        'Content-Length: 7\r\n\r\n{"a":1}',
    );
    const [head, body] = reply.split("\r\n\r\n");
    assert.match(head!, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head!, /\r\nconnection: close(\r\n|$)/);
    assert.match(head!, new RegExp(`\\r\\ncontent-length: ${body!.length}(\\r\\n|$)`));
    // The URL names the bound address, never the Host header.
    assert.deepEqual(JSON.parse(body!), {
      method: "POST",
      url: `http://${server.address}/queue/x?y=1`,
      body: '{"a":1}',
      type: "application/json",
    });
  });

  it("refuses a body over the limit with 413 before reading any of it", async () => {
    // The body never comes: a server that waited for it would answer only
    // when the body deadline closed the connection, without a 413.
    const server = await start(echo, { ...LIMITS, bodyTimeoutMs: 60_000 });
    const reply = await exchange(
      server.address,
      "POST /x HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 101\r\n\r\n",
    );
    assert.match(reply, /^HTTP\/1\.1 413 /);
    assert.match(reply, /larger than 100 bytes/);
  });

  it("sends 100 Continue before reading a body the client waits to send", async () => {
    const server = await start();
    const raw = await open(server.address);
    raw.socket.write(
      "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    );
    await new Promise<void>((resolve) => raw.socket.once("data", () => resolve()));
    assert.equal(raw.received(), "HTTP/1.1 100 Continue\r\n\r\n");
    raw.socket.write("hi");
    assert.match(await raw.closed, /"body":"hi"/);
  });

  it("refuses malformed and unsupported requests with the status that says why", async () => {
    const server = await start();
    const cases: Array<[string, RegExp]> = [
      ["GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", /^HTTP\/1\.1 501 /],
      ["GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET http://a/x HTTP/1.1\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET /x\x1b[31m HTTP/1.1\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET /x HTTP/2.0\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET /x HTTP/1.1\r\nBad Name: 1\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET /x HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", /^HTTP\/1\.1 400 /],
      [`GET /x HTTP/1.1\r\nA: ${"a".repeat(2000)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
    ];
    for (const [request, status] of cases) {
      assert.match(await exchange(server.address, request), status, JSON.stringify(request));
    }
  });

  it("closes a connection that sends nothing, and one whose head trickles in", async () => {
    const server = await start(echo, { ...LIMITS, headTimeoutMs: 200 });
    const idle = await open(server.address);
    assert.equal(await idle.closed, "");
    // A header line every 20 ms keeps the connection busy, never complete:
    // the deadline runs from the connection, not from the last byte.
    const slow = await open(server.address);
    slow.socket.write("GET /x HTTP/1.1\r\n");
    let lines = 0;
    const timer = setInterval(() => {
      if (++lines > 500) slow.socket.destroy();
      else slow.socket.write("X-A: b\r\n");
    }, 20);
    await slow.closed;
    clearInterval(timer);
    assert.ok(lines <= 500, "the server left the trickling connection open");
    assert.equal(server.connections(), 0);
  });

  it("closes a connection whose announced body does not arrive in time", async () => {
    const server = await start();
    const raw = await open(server.address);
    raw.socket.write("POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert.equal(await raw.closed, "");
  });

  it("answers 503 to a connection over the limit, and serves again once one closes", async () => {
    const server = await start(echo, { ...LIMITS, headTimeoutMs: 60_000 });
    const held = [await open(server.address), await open(server.address)];
    held.push(await open(server.address));
    // The connections are accepted in order: the fourth finds three open.
    // It sends nothing: a request the server closes unread could turn the
    // close into a reset that loses the answer.
    const over = await (await open(server.address)).closed;
    assert.match(over, /^HTTP\/1\.1 503 /);
    assert.match(over, /too many connections/);
    assert.equal(server.connections(), 3);
    held[0]!.socket.destroy();
    await held[0]!.closed;
    // The server sees the close a moment later; until then it may still refuse.
    let reply = "";
    for (let i = 0; i < 100 && !reply.startsWith("HTTP/1.1 200"); i++) {
      reply = await exchange(server.address, "GET /x HTTP/1.1\r\n\r\n");
    }
    assert.match(reply, /^HTTP\/1\.1 200 /);
    for (const raw of held) raw.socket.destroy();
  });

  it("answers 500 when the handler throws, and keeps serving", async () => {
    const server = await start(() => {
      throw new Error("boom");
    });
    const reply = await exchange(server.address, "GET /x HTTP/1.1\r\n\r\n");
    assert.match(reply, /^HTTP\/1\.1 500 /);
    assert.match(reply, /"error":"internal error"/);
    assert.match(await exchange(server.address, "GET /x HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 500 /);
  });

  it("survives failed accepts: logs the first, retries, and logs the recovery", async () => {
    const real = await listenTcp("127.0.0.1", 0);
    let failures = 5;
    const emfile = Object.assign(new Error("Too many open files (os error 24)"), {
      code: "EMFILE",
    });
    const flaky: TcpListener = {
      address: real.address,
      accept: () => failures-- > 0 ? Promise.reject(emfile) : real.accept(),
      close: () => real.close(),
    };
    const { lines, log } = recorder();
    const server = serveHttp1(flaky, echo, log, LIMITS);
    servers.push(server);
    assert.match(await exchange(server.address, "GET /x HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 200 /);
    assert.deepEqual(lines, [
      {
        level: "warn",
        msg: "admin API cannot accept connections; retrying",
        fields: { addr: real.address, error: "Too many open files (os error 24)" },
      },
      {
        level: "info",
        msg: "admin API accepts connections again",
        fields: { addr: real.address, failed_accepts: 5 },
      },
    ]);
  });

  it("keeps accepting when a connection fails in ways no socket should", async () => {
    const real = await listenTcp("127.0.0.1", 0);
    const broken: TcpConn = {
      remoteAddress: "192.0.2.1",
      read: () => Promise.resolve(null),
      write: () => {
        throw new Error("write failed at once");
      },
      closeWrite: () => Promise.resolve(),
      close: () => {
        throw new Error("close failed");
      },
    };
    // The second broken one arrives while the first is open: it is refused.
    let fakes = 2;
    const listener: TcpListener = {
      address: real.address,
      accept: () => fakes-- > 0 ? Promise.resolve(broken) : real.accept(),
      close: () => real.close(),
    };
    const server = serveHttp1(listener, echo, recorder().log, { ...LIMITS, maxConnections: 1 });
    servers.push(server);
    assert.match(await exchange(server.address, "GET /x HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 200 /);
  });

  it("close() stops accepting, ends idle connections and lets a request being answered finish", async () => {
    const answer = deferred<Response>();
    const started = deferred();
    const server = serveHttp1(
      await listenTcp("127.0.0.1", 0),
      () => {
        started.resolve();
        return answer.promise;
      },
      recorder().log,
      { ...LIMITS, headTimeoutMs: 60_000 },
    );
    const idle = await open(server.address);
    const busy = await open(server.address);
    busy.socket.write("GET /x HTTP/1.1\r\n\r\n");
    await started.promise;
    const closing = server.close();
    assert.equal(await idle.closed, "");
    answer.resolve(new Response("done"));
    await closing;
    assert.match(await busy.closed, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\ndone$/);
    await assert.rejects(open(server.address));
  });

  it("keeps the admin API's limits small: a few connections, seconds, kilobytes", () => {
    assert.ok(ADMIN_HTTP_LIMITS.maxConnections <= 64);
    assert.ok(ADMIN_HTTP_LIMITS.headTimeoutMs <= 30_000);
    assert.equal(ADMIN_HTTP_LIMITS.maxBodyBytes, 64 * 1024);
  });
});
