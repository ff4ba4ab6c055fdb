/**
 * listenTls with `certificateFor`, whose connections have their
 * ClientHello read before TLS starts, against hostile clients: one that
 * ends, resets or is closed mid-ClientHello (the caller's read sees the
 * end, the descriptor goes), bytes that are no ClientHello or a bad one
 * (the listener survives them), a ClientHello a byte at a time and bytes
 * after it in the same write (all reach TLS), and a close racing the end
 * of the read. A listener without it reads nothing first, as before.
 *
 * @module
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { connect as netConnect, createServer, type Socket } from "node:net";
import { join, resolve } from "node:path";
import process from "node:process";
import { connect as tlsConnect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PassThrough } from "node:stream";
import { listenTls, type TlsCertificate, type TlsListener } from "../../../src/runtime/mod.ts";
import { peekConn, peekSocket } from "../../../src/runtime/tls_peek.ts";
import type { TcpConn } from "../../../src/runtime/tcp.ts";
import { openFileDescriptors } from "../helpers.ts";
import { TestCa } from "../../support/test_ca.ts";
import { capturedHello } from "../../support/client_hello.ts";
import { pollUntil, within } from "../../support/within.ts";

const NAME = "peek.tls.test";
const onDeno = "Deno" in globalThis;

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** A plain TCP client of `address`, connected, its data and close gathered. */
async function plain(address: string): Promise<{ socket: Socket; closed: Promise<number> }> {
  const socket = netConnect({ port: portOf(address), host: "127.0.0.1", noDelay: true });
  socket.on("error", () => {});
  let bytes = 0;
  socket.on("data", (chunk: Uint8Array) => bytes += chunk.length);
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(bytes)));
  await new Promise((resolve) => socket.once("connect", resolve));
  return { socket, closed };
}

function write(socket: Socket, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => socket.write(bytes, () => resolve()));
}

/**
 * A server reading ClientHellos first, sent bytes that are none, each
 * closed once its read ends, as the daemon runs it: an uncaught error in
 * a later turn ends this process, not a test runner's.
 */
const PROGRAM = `
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import process from "node:process";
import { listenTls } from ${
  JSON.stringify(
    pathToFileURL(resolve(fileURLToPath(import.meta.url), "../../../../src/runtime/mod.ts")).href,
  )
};
const [cert, key] = process.argv.slice(-2).map((path) => readFileSync(path, "utf8"));
const listener = await listenTls("127.0.0.1", 0, { cert, key }, { certificateFor: () => undefined });
const port = Number(listener.address.split(":")[1]);
const sent = [
  new TextEncoder().encode("GET / HTTP/1.1\\r\\n\\r\\n"),
  Uint8Array.of(0x80, 0x2e, 1, 3, 1, 0, 0x15, 0, 0, 0, 0x10, ...new Array(37).fill(1)),
];
for (const bytes of sent) {
  const pending = listener.accept();
  const client = connect(port, "127.0.0.1");
  client.on("error", () => {});
  client.write(bytes);
  const conn = await pending;
  const n = await conn.read(new Uint8Array(64));
  conn.close();
  client.destroy();
  console.log("read " + n);
}
// Turns for an error thrown late to surface.
await new Promise((resolve) => setTimeout(resolve, 200));
listener.close();
console.log("survived");
`;

/** The current runtime, running a script. */
const COMMAND = onDeno ? [process.execPath, "run", "-A"] : [process.execPath, "run"];

const read = (conn: { read(b: Uint8Array): Promise<number | null> }) =>
  conn.read(new Uint8Array(64));

describe("listenTls reading ClientHellos first", () => {
  let ca: TestCa;
  let leaf: TlsCertificate;
  let hello: Uint8Array;
  const offered: string[][] = [];
  let listener: TlsListener;

  before(async () => {
    ca = await TestCa.create();
    leaf = await ca.issue(NAME);
    hello = await capturedHello(["x-test/1", "http/1.1"]);
    listener = await listenTls("127.0.0.1", 0, leaf, {
      alpnProtocols: ["http/1.1"],
      certificateFor: (_name, protocols) => {
        offered.push([...protocols]);
        return undefined;
      },
    });
  });
  after(async () => {
    listener?.close();
    await ca?.remove();
  });

  it("ends the read of a client that ends, resets or is closed mid-ClientHello, and frees it", async () => {
    // Before, a FIN or a reset during the read left the caller's read()
    // waiting for its deadline, on both runtimes: its end was read already.
    const plainListener = await listenTls("127.0.0.1", 0, leaf);
    const partial = hello.subarray(0, 40);
    const cases: Array<[string, (client: Socket) => Promise<void> | void, boolean]> = [
      ["a FIN at once", (client) => void client.end(), false],
      ["3 bytes, then a FIN", (client) => void client.end(hello.subarray(0, 3)), false],
      ["part of it, then a reset", async (client) => {
        await write(client, partial);
        client.resetAndDestroy();
      }, false],
      ["part of it, then our close", (client) => write(client, partial), true],
      ["nothing, then our close", () => {}, true],
    ];
    try {
      const baseline = await openFileDescriptors();
      for (const target of [listener, plainListener]) {
        for (const [what, act, weClose] of cases) {
          const pending = target.accept();
          const { socket, closed } = await plain(target.address);
          const conn = await pending;
          const first = read(conn);
          await act(socket);
          if (weClose) conn.close();
          assert.equal(await within(first, 10_000, `the end for ${what}`), null, what);
          conn.close();
          assert.equal(await within(closed, 10_000, `the client's close for ${what}`), 0, what);
          await assert.rejects(conn.write(new Uint8Array(1)), what);
        }
      }
      await pollUntil(async () => await openFileDescriptors() <= baseline, "descriptors freed");
    } finally {
      plainListener.close();
    }
  });

  it("survives what is no ClientHello, or a bad one, and goes on serving", async () => {
    // Before, on Deno, each of these threw an uncaught TypeError (the TLS
    // socket failed the bytes it was made with before it had started).
    const http = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const sslv2 = Uint8Array.of(
      0x80,
      0x2e,
      1,
      3,
      1,
      0,
      0x15,
      0,
      0,
      0,
      0x10,
      ...new Array(37).fill(1),
    );
    // A ClientHello, then a fatal alert in the same write: the alert must
    // reach TLS too, which ends the connection rather than wait. Deno's
    // TLS socket, with an SNICallback, answers the ClientHello and leaves
    // the rest unread until more comes (so before the peek too): there,
    // the listener's survival alone is asserted.
    const alert = Uint8Array.from([...hello, 0x15, 3, 3, 0, 2, 2, 40]);
    const cases: Array<[string, Uint8Array]> = [["HTTP", http], ["SSLv2", sslv2], [
      "a ClientHello and an alert",
      alert,
    ]];
    // Read from before the bytes come, and from after they came (most
    // likely: a bound on the wait, not a measure).
    for (
      const [what, bytes, early] of cases.flatMap(([w, b]) =>
        [[w, b, true], [w, b, false]] as const
      )
    ) {
      const pending = listener.accept();
      const { socket, closed } = await plain(listener.address);
      const conn = await pending;
      let first = early ? read(conn) : undefined;
      await write(socket, bytes);
      if (!early) await new Promise((resolve) => setTimeout(resolve, 50));
      first ??= read(conn);
      if (!onDeno || bytes !== alert) {
        assert.equal(await within(first, 10_000, `the end for ${what}`), null, what);
      }
      // Closed at once on the end, as a server does.
      conn.close();
      assert.equal(await within(first, 10_000, `the end for ${what}`), null, what);
      await within(closed, 10_000, `the client's close for ${what}`);
    }
    await assertServes(listener, ca.cert);
  });

  it("survives bytes that are no ClientHello in a process of its own", async () => {
    // Before, on Deno, this process died: "Uncaught TypeError: Cannot read
    // properties of null (reading '_flushEncOut')" in TLSSocket._start.
    const program = join(ca.dir, "peek_program.ts");
    const [certFile, keyFile] = [join(ca.dir, "peek_cert.pem"), join(ca.dir, "peek_key.pem")];
    await writeFile(program, PROGRAM);
    await writeFile(certFile, leaf.cert);
    await writeFile(keyFile, leaf.key);
    const result = await new Promise<{ code: number; out: string }>((done) => {
      execFile(
        COMMAND[0]!,
        [...COMMAND.slice(1), program, certFile, keyFile],
        { timeout: 60_000 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
          done({ code, out: String(stdout) + String(stderr) });
        },
      );
    });
    assert.equal(result.code, 0, result.out);
    assert.equal(result.out, "read null\nread null\nsurvived\n");
  });

  it("hands TLS a ClientHello written a byte at a time, and its protocols to certificateFor", async () => {
    // A relay between a real client and the listener cuts the ClientHello
    // into writes of one byte.
    const relay = createServer((from: Socket) => {
      from.on("error", () => {});
      from.pause();
      const to = netConnect({ port: portOf(listener.address), host: "127.0.0.1", noDelay: true });
      to.on("error", () => {});
      to.pipe(from);
      to.once("connect", () => {
        let sent = 0;
        from.on("data", async (chunk: Uint8Array) => {
          from.pause();
          for (let i = 0; i < chunk.length; i++) {
            // The first record byte by byte; the rest as it comes.
            const one = sent < hello.length;
            const piece = one ? chunk.subarray(i, i + 1) : chunk.subarray(i);
            await write(to, piece);
            sent += piece.length;
            i += piece.length - 1;
          }
          from.resume();
        });
        from.resume();
      });
      from.on("close", () => to.destroy());
      to.on("close", () => from.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
    offered.length = 0;
    try {
      const pending = listener.accept();
      const client = tlsConnect({
        host: "127.0.0.1",
        port: (relay.address() as { port: number }).port,
        servername: NAME,
        ca: ca.cert,
        ALPNProtocols: ["x-test/1", "http/1.1"],
      });
      client.on("error", () => {});
      const secure = new Promise((resolve) => client.once("secureConnect", resolve));
      const conn = await pending;
      const first = read(conn);
      await within(secure, 20_000, "the handshake through the relay");
      assert.equal(client.alpnProtocol, "http/1.1");
      assert.deepEqual(offered, [["x-test/1", "http/1.1"]]);
      client.write("ping");
      assert.equal(await within(first, 10_000, "the first read"), 4);
      conn.close();
      client.destroy();
    } finally {
      relay.close();
    }
  });

  it("settles a close racing the end of the ClientHello's read", async () => {
    const baseline = await openFileDescriptors();
    for (let round = 0; round < 12; round++) {
      const pending = listener.accept();
      const { socket, closed } = await plain(listener.address);
      const conn = await pending;
      const first = read(conn);
      await write(socket, hello);
      // Closed 0 to 3 turns after the ClientHello was sent: before, during
      // or after its read, whichever comes.
      for (let turn = 0; turn < round % 4; turn++) {
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      conn.close();
      assert.equal(await within(first, 10_000, `the end in round ${round}`), null);
      await within(closed, 10_000, `the client's close in round ${round}`);
      await assert.rejects(conn.write(new Uint8Array(1)));
    }
    await pollUntil(async () => await openFileDescriptors() <= baseline, "descriptors freed");
    await assertServes(listener, ca.cert);
  });
});

/** A real client of `listener` trusting `ca` completes its handshake and is read. */
async function assertServes(listener: TlsListener, ca: string): Promise<void> {
  const pending = listener.accept();
  const client = tlsConnect({
    host: "127.0.0.1",
    port: portOf(listener.address),
    servername: NAME,
    ca,
  });
  client.on("error", () => {});
  const conn = await pending;
  const first = read(conn);
  await within(
    new Promise((resolve) => client.once("secureConnect", resolve)),
    10_000,
    "a handshake",
  );
  client.write("hi");
  assert.equal(await within(first, 10_000, "the first read"), 2);
  conn.close();
  client.destroy();
}

describe("peekConn and peekSocket", () => {
  let hello: Uint8Array;
  before(async () => hello = await capturedHello(["acme-tls/1"]));

  /** A connection that answers each read with one byte of `bytes`, then the end. */
  function trickle(bytes: Uint8Array, buffers: Set<ArrayBufferLike>): TcpConn {
    let at = 0;
    return {
      remoteAddress: "127.0.0.1",
      read: (buffer) => {
        buffers.add(buffer.buffer);
        if (at === bytes.length) return Promise.resolve(null);
        buffer[0] = bytes[at++]!;
        return Promise.resolve(1);
      },
      write: () => Promise.resolve(),
      closeWrite: () => Promise.resolve(),
      close: () => {},
    };
  }

  it("reads a ClientHello a byte at a time into one buffer, and stops at its end", async () => {
    // Each read of the Deno stream had a buffer of 16 KiB of its own, and
    // the peek kept every one: a byte a read cost 16 KiB until the
    // ClientHello was whole (3000 bytes trickled: 55 MB more resident).
    const buffers = new Set<ArrayBufferLike>();
    const sent = Uint8Array.from([...hello, 0x17, 3, 3, 0, 1, 0]);
    const peeked = await peekConn(trickle(sent, buffers));
    assert.deepEqual(peeked, { offered: ["acme-tls/1"], bytes: hello });
    assert.equal(buffers.size, 1);
    // Ended before the ClientHello is whole: nothing to hand TLS.
    assert.equal(await peekConn(trickle(hello.subarray(0, 100), new Set())), null);
  });

  it("puts every byte back on a stream, and tells its end or its close before a ClientHello", async () => {
    const stream = new PassThrough();
    const after = Uint8Array.of(0x17, 3, 3, 0, 1, 0);
    const peeking = peekSocket(stream);
    stream.write(hello.subarray(0, 7));
    stream.write(Uint8Array.from([...hello.subarray(7), ...after]));
    const peeked = await within(peeking, 10_000, "the peek");
    assert.deepEqual(peeked?.offered, ["acme-tls/1"]);
    stream.end();
    const back: number[] = [];
    for await (const chunk of stream) back.push(...(chunk as Uint8Array));
    assert.deepEqual(Uint8Array.from(back), Uint8Array.from([...hello, ...after]));
    // A ClientHello and the end, both there before the peek: the bytes
    // go back ahead of the end.
    const whole = new PassThrough();
    whole.end(hello);
    assert.deepEqual((await within(peekSocket(whole), 10_000, "the peek"))?.offered, [
      "acme-tls/1",
    ]);
    const again: number[] = [];
    for await (const chunk of whole) again.push(...(chunk as Uint8Array));
    assert.deepEqual(Uint8Array.from(again), hello);
    const ended = new PassThrough();
    const ending = peekSocket(ended);
    ended.end(hello.subarray(0, 3));
    assert.equal(await within(ending, 10_000, "the end"), null);
    const destroyed = new PassThrough();
    const closing = peekSocket(destroyed);
    destroyed.destroy();
    assert.equal(await within(closing, 10_000, "the close"), null);
    const gone = new PassThrough();
    gone.destroy();
    assert.equal(await within(peekSocket(gone), 10_000, "a stream closed before"), null);
  });
});
