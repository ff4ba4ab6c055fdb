import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { digestOf, OPEN_SEAL, readSeal, SEAL_BYTES, sealLine } from "../../../src/queue/seal.ts";

const encoder = new TextEncoder();
const DIGEST = createHash("sha256").update("x").digest("hex");

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield encoder.encode(part);
}

describe("spool seal", () => {
  it("the open seal and every sealed line are SEAL_BYTES long, so one overwrites the other", () => {
    assert.equal(OPEN_SEAL.byteLength, SEAL_BYTES);
    for (const length of [0, 1, 4096, Number.MAX_SAFE_INTEGER]) {
      assert.equal(sealLine(length, DIGEST).byteLength, SEAL_BYTES, String(length));
    }
    assert.equal(OPEN_SEAL[SEAL_BYTES - 1], 0x0a);
  });

  it("sealLine() writes the length in 16 digits and the digest in hex", () => {
    assert.equal(
      new TextDecoder().decode(sealLine(1234, DIGEST)),
      `SEALED 0000000000001234 ${DIGEST}\n`,
    );
  });

  it("sealLine() refuses a length or digest that would not read back", () => {
    const refused: Array<[number, string]> = [
      [-1, DIGEST],
      [1.5, DIGEST],
      [2 ** 53, DIGEST],
      [1, "abc"],
      [1, DIGEST.toUpperCase()],
      // One character too many, before or after: the line would not be SEAL_BYTES long.
      [1, `0${DIGEST}`],
      [1, `${DIGEST}0`],
    ];
    for (const [length, digest] of refused) {
      assert.throws(
        () => sealLine(length, digest),
        { name: "RangeError", message: /length and a SHA-256 digest/ },
        `${length} ${digest}`,
      );
    }
  });

  it("readSeal() reads back what sealLine() wrote", () => {
    assert.deepEqual(readSeal(sealLine(98_765, DIGEST)), {
      kind: "sealed",
      length: 98_765,
      digest: DIGEST,
    });
  });

  it("readSeal() tells an open, empty or unwritten head from a damaged one", () => {
    assert.deepEqual(readSeal(OPEN_SEAL), { kind: "open" });
    // Blank, not open: a block lost on disk after the seal reads as zeros too.
    assert.deepEqual(readSeal(new Uint8Array(0)), { kind: "blank" });
    assert.deepEqual(readSeal(new Uint8Array(SEAL_BYTES)), { kind: "blank" });
    assert.deepEqual(readSeal(new Uint8Array(20)), { kind: "blank" });
    assert.deepEqual(readSeal(encoder.encode('{"v":1}\n')), { kind: "legacy" });
    const torn = sealLine(5, DIGEST);
    torn.fill(0, 40);
    assert.deepEqual(readSeal(torn), { kind: "invalid" });
    const upper = encoder.encode(`SEALED 0000000000000005 ${DIGEST.toUpperCase()}\n`);
    assert.deepEqual(readSeal(upper), { kind: "invalid" });
    assert.deepEqual(readSeal(encoder.encode("SEALED 5 abc\n")), { kind: "invalid" });
    assert.deepEqual(readSeal(OPEN_SEAL.subarray(0, 40)), { kind: "open" }, "a file cut short");
    assert.deepEqual(readSeal(encoder.encode("OPEN  x")), { kind: "invalid" });
  });

  it("digestOf() is the SHA-256 of the bytes however they are split", async () => {
    const whole = createHash("sha256").update("hello, world").digest("hex");
    assert.deepEqual(await digestOf(chunks("hello, world")), { length: 12, digest: whole });
    assert.deepEqual(await digestOf(chunks("hel", "", "lo, w", "orld")), {
      length: 12,
      digest: whole,
    });
    assert.deepEqual(await digestOf(chunks()), {
      length: 0,
      digest: createHash("sha256").digest("hex"),
    });
  });
});
