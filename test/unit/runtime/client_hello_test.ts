/**
 * The ClientHello parser against the runtime's own TLS client (captured
 * from a real connection over loopback) and against hostile bytes: cut
 * short, lengths that run past their ends, records of one byte, sizes
 * over the limit, and what is no TLS at all; then random bytes, cuts and
 * record splits from a fixed seed, and the buffer the listener gathers a
 * ClientHello in.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CLIENT_HELLO_LIMIT,
  ClientHelloBuffer,
  offeredProtocols,
} from "../../../src/runtime/client_hello.ts";
import { capturedHello } from "../../support/client_hello.ts";

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

  it("reads protocol names as bytes: a leading byte-order mark is kept", () => {
    // A decoder that drops the mark read this as acme-tls/1, and the
    // listener showed the challenge certificate to a client not offering it.
    const named = [0xef, 0xbb, 0xbf, ...new TextEncoder().encode("acme-tls/1")];
    assert.deepEqual(offeredProtocols(helloWith(alpnExtension([named.length, ...named]))), {
      offered: ["\uFEFFacme-tls/1"],
    });
    // Bytes that are no UTF-8 are never read as a protocol we look for.
    const bad = [0xff, ...new TextEncoder().encode("acme-tls/1")];
    const offer = offeredProtocols(helloWith(alpnExtension([bad.length, ...bad])));
    assert.ok("offered" in offer && !offer.offered.includes("acme-tls/1"));
  });

  it("reads the ALPN extension among others, in any place, and one message of a coalesced record", () => {
    const h2 = [2, 0x68, 0x32];
    const other = [0, 43, ...u16(3), 2, 3, 4]; // supported_versions, after ALPN
    assert.deepEqual(offeredProtocols(helloWith([...alpnExtension(h2), ...other])), {
      offered: ["h2"],
    });
    assert.deepEqual(offeredProtocols(helloWith([...other, ...alpnExtension(h2)])), {
      offered: ["h2"],
    });
    // An empty extension, then ALPN.
    assert.deepEqual(offeredProtocols(helloWith([0, 23, 0, 0, ...alpnExtension(h2)])), {
      offered: ["h2"],
    });
    // Two ALPN extensions (RFC 8446 section 4.2 forbids it; the TLS
    // library refuses the hello): the first is read.
    const acme = [10, ...new TextEncoder().encode("acme-tls/1")];
    assert.deepEqual(offeredProtocols(helloWith([...alpnExtension(h2), ...alpnExtension(acme)])), {
      offered: ["h2"],
    });
    // A second handshake message after the ClientHello in the same record.
    const hello = helloWith(alpnExtension(h2));
    const message = [...hello.subarray(5), 2, 0, 0, 0];
    const coalesced = Uint8Array.from([0x16, 3, 1, ...u16(message.length), ...message]);
    assert.deepEqual(offeredProtocols(coalesced), { offered: ["h2"] });
  });

  it("offers nothing for an SSLv2-style hello or an empty record between fragments", async () => {
    // SSLv2 CLIENT-HELLO framing (RFC 6101 appendix E.2): no ALPN possible.
    const v2 = Uint8Array.of(0x80, 0x2e, 1, 3, 1, 0, 0x15, 0, 0, 0, 0x10, ...new Array(37).fill(1));
    assert.deepEqual(offeredProtocols(v2), { offered: [] });
    const hello = await capturedHello(["acme-tls/1"]);
    const two = inRecordsOf(hello, Math.ceil((hello.length - 5) / 2));
    const cut = 5 + Math.ceil((hello.length - 5) / 2);
    // RFC 8446 section 5.1: no zero-length handshake fragments.
    const empty = Uint8Array.from([
      ...two.subarray(0, cut),
      0x16,
      3,
      1,
      0,
      0,
      ...two.subarray(cut),
    ]);
    assert.deepEqual(offeredProtocols(empty), { offered: [] });
  });

  it("never throws, asks for more than it has, or answers differently however the bytes are cut (fixed seed)", async () => {
    let seed = 0x5eed;
    const random = (below: number) => {
      // xorshift32: the same sequence on every run and runtime.
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % below;
    };
    const hellos = [
      await capturedHello(["acme-tls/1", "http/1.1"]),
      await capturedHello(undefined),
    ];
    const expected = [["acme-tls/1", "http/1.1"], []];
    const check = (bytes: Uint8Array, what: string) => {
      const offer = offeredProtocols(bytes);
      if ("need" in offer) {
        assert.ok(offer.need > bytes.length && offer.need <= CLIENT_HELLO_LIMIT, what);
      }
      return offer;
    };
    for (let round = 0; round < 300; round++) {
      const which = random(2);
      const hello = hellos[which]!;
      // Split into records at random (at most sixteen), then cut anywhere.
      const size = 1 + random(hello.length - 5);
      const records = inRecordsOf(hello, Math.max(size, Math.ceil((hello.length - 5) / 16)));
      assert.deepEqual(check(records, `round ${round}`), { offered: expected[which] });
      check(records.subarray(0, random(records.length)), `round ${round} cut`);
      // A byte changed at random: any answer, but a sound one.
      const mutated = Uint8Array.from(records);
      mutated[random(mutated.length)] = random(256);
      check(mutated, `round ${round} mutated`);
      // Bytes at random, after a handshake record header or none.
      const noise = Uint8Array.from({ length: random(64) }, () => random(256));
      check(noise, `round ${round} noise`);
      check(Uint8Array.from([0x16, 3, 1, random(256), random(256), 1, ...noise]), `round ${round}`);
    }
  });
});

describe("ClientHelloBuffer", () => {
  it("gathers a ClientHello given a byte at a time, copying each", async () => {
    const hello = await capturedHello(["acme-tls/1"]);
    const sent = Uint8Array.from([...hello, 0x17, 3, 3, 0, 1, 9]);
    const buffer = new ClientHelloBuffer();
    const chunk = new Uint8Array(1);
    let offered: string[] | undefined;
    let at = 0;
    while (offered === undefined && at < sent.length) {
      chunk[0] = sent[at++]!;
      offered = buffer.add(chunk);
    }
    assert.deepEqual(offered, ["acme-tls/1"]);
    // Told at the ClientHello's last byte, and every byte kept, though the
    // chunk it came in was reused.
    assert.equal(at, hello.length);
    assert.deepEqual(buffer.bytes, hello);
  });

  it("keeps what comes after the ClientHello in the same chunk, and tells what is no TLS at once", () => {
    const buffer = new ClientHelloBuffer();
    const text = new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n");
    assert.deepEqual(buffer.add(text), []);
    assert.deepEqual(buffer.bytes, text);
    const big = new ClientHelloBuffer();
    const acme = [10, ...new TextEncoder().encode("acme-tls/1")];
    const hello = helloWith(alpnExtension(acme));
    const after = new Uint8Array(5000).fill(0x17);
    assert.deepEqual(big.add(Uint8Array.from([...hello, ...after])), ["acme-tls/1"]);
    assert.equal(big.bytes.length, hello.length + after.length);
  });
});
