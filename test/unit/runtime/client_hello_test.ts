/**
 * The ClientHello parser against the runtime's own TLS client (captured
 * from a real connection over loopback) and against hostile bytes: cut
 * short, lengths that run past their ends, records of one byte, sizes
 * over the limit, and what is no TLS at all.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { describe, it } from "node:test";
import { CLIENT_HELLO_LIMIT, offeredProtocols } from "../../../src/runtime/client_hello.ts";
import { within } from "../../support/within.ts";

/** The first record the runtime's TLS client sends when offering `alpn`. */
async function capturedHello(alpn: string[] | undefined): Promise<Uint8Array> {
  let got: (bytes: Uint8Array) => void = () => {};
  const captured = new Promise<Uint8Array>((resolve) => got = resolve);
  const server = createServer((socket: Socket) => {
    let bytes = new Uint8Array(0);
    socket.on("data", (chunk: Uint8Array) => {
      bytes = Uint8Array.from([...bytes, ...chunk]);
      if (bytes.length >= 5 && bytes.length >= 5 + ((bytes[3]! << 8) | bytes[4]!)) {
        got(bytes.subarray(0, 5 + ((bytes[3]! << 8) | bytes[4]!)));
        socket.destroy();
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const client = tlsConnect({
    host: "127.0.0.1",
    port,
    servername: "mx.example.test",
    ...(alpn ? { ALPNProtocols: alpn } : {}),
  });
  client.on("error", () => {});
  try {
    return await within(captured, 10_000, "a ClientHello");
  } finally {
    client.destroy();
    server.close();
  }
}

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

function u24(n: number): number[] {
  return [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

/** A ClientHello record whose extensions are `extensions`, as given. */
function helloWith(extensions: number[]): Uint8Array {
  const body = [3, 3, ...new Array(32).fill(7), 0, ...u16(2), 0x13, 0x01, 1, 0];
  body.push(...u16(extensions.length), ...extensions);
  const message = [1, ...u24(body.length), ...body];
  return Uint8Array.from([0x16, 3, 1, ...u16(message.length), ...message]);
}

/** An ALPN extension whose list is `list`, as given. */
function alpnExtension(list: number[]): number[] {
  return [0, 16, ...u16(list.length + 2), ...u16(list.length), ...list];
}

/** `hello` (one record) with its message spread over records of `size` bytes. */
function inRecordsOf(hello: Uint8Array, size: number): Uint8Array {
  const message = hello.subarray(5);
  const out: number[] = [];
  for (let at = 0; at < message.length; at += size) {
    const part = message.subarray(at, at + size);
    out.push(0x16, 3, 1, ...u16(part.length), ...part);
  }
  return Uint8Array.from(out);
}

describe("offeredProtocols", () => {
  it("reads the protocols of the runtime's own ClientHello, and none when it offers none", async () => {
    const offering = await capturedHello(["acme-tls/1", "http/1.1"]);
    assert.deepEqual(offeredProtocols(offering), { offered: ["acme-tls/1", "http/1.1"] });
    assert.deepEqual(offeredProtocols(await capturedHello(undefined)), { offered: [] });
  });

  it("asks for the rest of a ClientHello cut anywhere, never past its end", async () => {
    const hello = await capturedHello(["acme-tls/1"]);
    for (let cut = 0; cut < hello.length; cut++) {
      const offer = offeredProtocols(hello.subarray(0, cut));
      assert.ok("need" in offer, `cut at ${cut}: ${JSON.stringify(offer)}`);
      assert.ok(offer.need > cut && offer.need <= hello.length, `cut at ${cut}: ${offer.need}`);
    }
    // What follows the ClientHello (more records) changes nothing.
    const more = Uint8Array.from([...hello, 0x17, 3, 3, 0, 1, 0]);
    assert.deepEqual(offeredProtocols(more), { offered: ["acme-tls/1"] });
  });

  it("joins a message spread over records, up to sixteen of them", async () => {
    const hello = await capturedHello(["acme-tls/1"]);
    const message = hello.length - 5;
    const size = Math.ceil(message / 16);
    const sixteen = inRecordsOf(hello, size);
    assert.deepEqual(offeredProtocols(sixteen), { offered: ["acme-tls/1"] });
    // Cut inside its records: more is asked for, a record's header, then
    // its end, at a time.
    const fourth = 3 * (size + 5);
    assert.deepEqual(offeredProtocols(sixteen.subarray(0, fourth + 2)), { need: fourth + 5 });
    assert.deepEqual(offeredProtocols(sixteen.subarray(0, fourth + 7)), {
      need: fourth + size + 5,
    });
    // A message in records of one byte reads as offering nothing once
    // there are more than sixteen, without waiting for the rest.
    assert.deepEqual(offeredProtocols(inRecordsOf(hello, 1)), { offered: [] });
  });

  it("offers nothing for what is no ClientHello", () => {
    const text = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.deepEqual(offeredProtocols(text), { offered: [] });
    // A handshake record of another message type (a ServerHello).
    assert.deepEqual(offeredProtocols(Uint8Array.of(0x16, 3, 3, 0, 4, 2, 0, 0, 0)), {
      offered: [],
    });
    // An empty record, and one longer than TLS allows.
    assert.deepEqual(offeredProtocols(Uint8Array.of(0x16, 3, 1, 0, 0)), { offered: [] });
    assert.deepEqual(offeredProtocols(Uint8Array.of(0x16, 3, 1, 0x48, 1)), { offered: [] });
    // A message announced larger than the limit is not waited for.
    const huge = Uint8Array.of(0x16, 3, 1, 0, 4, 1, ...u24(CLIENT_HELLO_LIMIT));
    assert.deepEqual(offeredProtocols(huge), { offered: [] });
  });

  it("offers nothing when a length runs past its end", () => {
    const acme = [...new TextEncoder().encode("acme-tls/1")];
    assert.deepEqual(offeredProtocols(helloWith(alpnExtension([acme.length, ...acme]))), {
      offered: ["acme-tls/1"],
    });
    const cases: Array<[string, number[]]> = [
      ["a name longer than the list", alpnExtension([acme.length + 1, ...acme])],
      ["an empty name", alpnExtension([0, acme.length, ...acme])],
      ["a list longer than its extension", [0, 16, ...u16(4), ...u16(40), 1, 0x61]],
      ["an extension longer than the extensions", [0, 16, ...u16(400), ...u16(2), 1, 0x61]],
      ["a lone extension type", [0, 16]],
    ];
    for (const [what, extensions] of cases) {
      assert.deepEqual(offeredProtocols(helloWith(extensions)), { offered: [] }, what);
    }
    // Session ID and cipher suite lengths past the end of the message.
    const cut = helloWith([]);
    const body = cut.subarray(9);
    body[34] = 200;
    assert.deepEqual(offeredProtocols(cut), { offered: [] });
  });
});
