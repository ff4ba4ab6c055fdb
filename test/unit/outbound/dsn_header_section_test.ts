/**
 * `headerSection()`: the header of the original message that a DSN returns,
 * read without pulling a chunk past the empty line, cut at a line ending
 * within its limit, and copied out of the reader's buffer.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { headerSection } from "../../../src/outbound/dsn.ts";
import { chunksOf } from "../helpers.ts";
import { decoder, encoder, tracked } from "./dsn_fixtures.ts";

describe("headerSection", () => {
  it("headerSection() returns the header lines without the empty line or body", async () => {
    const header = await headerSection(chunksOf("A: 1\r\nB: 2\r\n\r\nbody\r\n"));
    assert.equal(decoder.decode(header), "A: 1\r\nB: 2\r\n");
  });

  it("headerSection() never pulls a chunk after the header and closes the stream", async () => {
    const { state, stream } = tracked(["A: 1\r\n", "B: 2\r\n\r\nbody starts", "never pulled"]);
    const header = await headerSection(stream);
    assert.equal(decoder.decode(header), "A: 1\r\nB: 2\r\n");
    assert.equal(state.pulled, 2);
    assert.equal(state.closed, true);
  });

  it("headerSection() stops when the empty line ends a chunk exactly", async () => {
    const { state, stream } = tracked(["A: 1\r\n\r\n", "never pulled"]);
    assert.equal(decoder.decode(await headerSection(stream)), "A: 1\r\n");
    assert.equal(state.pulled, 1);
    assert.equal(state.closed, true);
  });

  it("headerSection() finds an empty line split across chunks", async () => {
    const { state, stream } = tracked(["A: 1\r", "\n\r", "\nbody", "never pulled"]);
    assert.equal(decoder.decode(await headerSection(stream)), "A: 1\r\n");
    assert.equal(state.pulled, 3);
    assert.equal(state.closed, true);
  });

  it("headerSection() cuts at the last line ending within the limit", async () => {
    const lines = "X: 0001\r\nX: 0002\r\nX: 0003\r\n"; // 9 bytes a line
    assert.equal(
      decoder.decode(await headerSection(chunksOf(lines, "\r\n"), 20)),
      "X: 0001\r\nX: 0002\r\n",
    );
    assert.equal(
      decoder.decode(await headerSection(chunksOf(lines, "\r\n"), 18)),
      "X: 0001\r\nX: 0002\r\n",
    );
    assert.equal(decoder.decode(await headerSection(chunksOf(lines, "\r\n"), 17)), "X: 0001\r\n");
    assert.equal(decoder.decode(await headerSection(chunksOf("A: very long\r\n"), 5)), "");
    assert.equal(decoder.decode(await headerSection(chunksOf(lines), 0)), "");
  });

  it("headerSection() keeps a header of exactly the limit whole", async () => {
    const lines = "X: 0001\r\nX: 0002\r\n";
    const { state, stream } = tracked([lines, "\r\n", "never pulled"]);
    assert.equal(decoder.decode(await headerSection(stream, 18)), lines);
    assert.equal(state.pulled, 2);
  });

  it("headerSection() stops reading an endless header at the limit", async () => {
    const state = { pulled: 0, closed: false };
    async function* endless(): AsyncGenerator<Uint8Array> {
      try {
        for (;;) {
          state.pulled++;
          yield encoder.encode("X-Loop: again\r\n");
        }
      } finally {
        state.closed = true;
      }
    }
    const header = await headerSection(endless(), 1000);
    assert.equal(header.byteLength, 15 * 66);
    assert.equal(state.closed, true);
    assert.ok(state.pulled <= 67);
  });

  it("headerSection() returns an empty header when the message starts with the empty line", async () => {
    assert.equal((await headerSection(chunksOf("\r\nbody\r\n"))).byteLength, 0);
    assert.equal((await headerSection(chunksOf("\nbody\n"))).byteLength, 0);
    assert.equal((await headerSection(chunksOf())).byteLength, 0);
  });

  it("headerSection() returns the whole message when it has no empty line", async () => {
    assert.equal(decoder.decode(await headerSection(chunksOf("A: 1\r\n", "B: 2"))), "A: 1\r\nB: 2");
  });

  it("headerSection() accepts LF-only line endings", async () => {
    const { state, stream } = tracked(["A: 1\nB: 2\n\nbody\n", "never pulled"]);
    assert.equal(decoder.decode(await headerSection(stream)), "A: 1\nB: 2\n");
    assert.equal(state.pulled, 1);
  });

  it("headerSection() copies the bytes, so a reader may reuse its buffer", async () => {
    const buffer = new Uint8Array(6);
    async function* reusing(): AsyncGenerator<Uint8Array> {
      for (const text of ["A: 1\r\n", "B: 2\r\n", "\r\nbody"]) {
        buffer.set(encoder.encode(text.padEnd(6, " ")));
        yield buffer.subarray(0, text.length);
      }
    }
    assert.equal(decoder.decode(await headerSection(reusing())), "A: 1\r\nB: 2\r\n");
  });

  it("headerSection() refuses a negative or fractional limit", async () => {
    await assert.rejects(headerSection(chunksOf("A: 1\r\n"), -1), RangeError);
    await assert.rejects(headerSection(chunksOf("A: 1\r\n"), 1.5), RangeError);
  });
});
