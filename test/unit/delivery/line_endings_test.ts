import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { crlfToLf } from "../../../src/delivery/mod.ts";
import { prepend } from "../../../src/delivery/line_endings.ts";
import { chunksOf, collectBytes, collectText } from "../helpers.ts";

describe("crlfToLf", () => {
  it("crlfToLf() turns CRLF into LF within a chunk", async () => {
    assert.equal(await collectText(crlfToLf(chunksOf("a\r\nb\r\n\r\nc"))), "a\nb\n\nc");
  });

  it("crlfToLf() joins a CR at the end of one chunk with an LF at the start of the next", async () => {
    assert.equal(
      await collectText(crlfToLf(chunksOf("line one\r", "\nline two\r", "\n"))),
      "line one\nline two\n",
    );
  });

  it("crlfToLf() keeps a CR at a chunk end when the next chunk does not start with LF", async () => {
    assert.equal(await collectText(crlfToLf(chunksOf("a\r", "b"))), "a\rb");
    assert.equal(await collectText(crlfToLf(chunksOf("a\r", "\rb"))), "a\r\rb");
    assert.equal(await collectText(crlfToLf(chunksOf("a\r", "\r\nb"))), "a\r\nb");
  });

  it("crlfToLf() keeps lone CRs in the middle of a chunk", async () => {
    assert.equal(await collectText(crlfToLf(chunksOf("a\rb\r\rc\r\n"))), "a\rb\r\rc\n");
  });

  it("crlfToLf() keeps a CR at the very end of the stream", async () => {
    assert.equal(await collectText(crlfToLf(chunksOf("end\r"))), "end\r");
    assert.equal(await collectText(crlfToLf(chunksOf("x\r\n", "\r"))), "x\n\r");
  });

  it("crlfToLf() handles one-byte chunks", async () => {
    const text = "a\r\nb\rc\r\n\r\n";
    const bytes = [...text].map((c) => c);
    assert.equal(await collectText(crlfToLf(chunksOf(...bytes))), "a\nb\rc\n\n");
  });

  it("crlfToLf() joins a CR and an LF separated by an empty chunk", async () => {
    assert.equal(await collectText(crlfToLf(chunksOf("a\r", "", "\nb"))), "a\nb");
  });

  it("crlfToLf() leaves LF-only and binary-safe input unchanged", async () => {
    const bytes = new Uint8Array([0, 255, 10, 128, 13, 65, 10]);
    assert.deepEqual(
      await collectBytes(crlfToLf(chunksOf(bytes))),
      new Uint8Array([0, 255, 10, 128, 13, 65, 10]),
    );
  });

  it("crlfToLf() yields nothing when the input is empty", async () => {
    assert.equal((await collectBytes(crlfToLf(chunksOf()))).byteLength, 0);
  });

  it("crlfToLf() matches a whole-text conversion for every split into non-empty chunks", async () => {
    const text = "H: v\r\n\r\nx\ry\r\n\r\rz\r";
    const expected = text.replace(/\r\n/g, "\n");
    for (let i = 0; i <= text.length; i++) {
      for (let j = i; j <= text.length; j++) {
        const pieces = [text.slice(0, i), text.slice(i, j), text.slice(j)].filter((p) => p !== "");
        const got = await collectText(crlfToLf(chunksOf(...pieces)));
        assert.equal(got, expected, `split at ${i}, ${j}`);
      }
    }
  });

  it("crlfToLf() matches a whole-text conversion on random CR/LF-heavy text in random chunks", async () => {
    // A fixed seed (xorshift) keeps a failure reproducible.
    let seed = 0x9e3779b9;
    const random = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    for (let round = 0; round < 500; round++) {
      const text = Array.from({ length: random(200) }, () => "\r\na."[random(4)]).join("");
      const pieces: string[] = [];
      for (let at = 0; at < text.length;) {
        const size = random(8); // empty chunks too
        pieces.push(text.slice(at, at + size));
        at += size;
      }
      const got = await collectText(crlfToLf(chunksOf(...pieces)));
      assert.equal(got, text.replace(/\r\n/g, "\n"), JSON.stringify(pieces));
    }
  });
});

describe("prepend", () => {
  it("prepend() yields the head and then every chunk", async () => {
    const head = new TextEncoder().encode("Head\n");
    assert.equal(await collectText(prepend(head, chunksOf("a", "b"))), "Head\nab");
  });
});
