import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  encodeFrame,
  encodeJsonFrame,
  type Frame,
  FrameBatcher,
  FrameDecoder,
  FrameError,
  FrameKind,
  MAX_FRAME_BYTES,
  parseJsonPayload,
} from "../../../src/hooks/frames.ts";

const encoder = new TextEncoder();

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** A frame head (length, kind, id) written by hand, independent of encodeFrame(). */
function rawHead(length: number, kind: number, id: number): Uint8Array {
  const head = new Uint8Array(9);
  const view = new DataView(head.buffer);
  view.setUint32(0, length);
  view.setUint8(4, kind);
  view.setUint32(5, id);
  return head;
}

/** Frames as plain values, so deepEqual compares payload bytes. */
function plain(frames: Frame[]): Array<{ kind: number; id: number; payload: number[] }> {
  return frames.map((f) => ({ kind: f.kind, id: f.id, payload: [...f.payload] }));
}

describe("encodeFrame", () => {
  it("encodeFrame() writes a big-endian length of kind + id + payload, the kind, the id, then the payload", () => {
    const frame = encodeFrame(FrameKind.chunk, 0x01020304, new Uint8Array([0xaa, 0xbb, 0xcc]));
    assert.deepEqual(
      [...frame],
      [0, 0, 0, 8, 2, 0x01, 0x02, 0x03, 0x04, 0xaa, 0xbb, 0xcc],
    );
  });

  it("encodeFrame() writes a 9-byte frame when the payload is empty", () => {
    const frame = encodeFrame(FrameKind.end, 7, new Uint8Array(0));
    assert.deepEqual([...frame], [0, 0, 0, 5, 3, 0, 0, 0, 7]);
  });

  it("encodeFrame() copies the payload when it is a view into a larger buffer", () => {
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9, 9]);
    const frame = encodeFrame(FrameKind.chunk, 1, backing.subarray(2, 5));
    assert.deepEqual([...frame.subarray(9)], [1, 2, 3]);
    assert.equal(frame.byteLength, 12);
  });

  it("encodeJsonFrame() encodes the value as UTF-8 JSON in a json frame", () => {
    const frame = encodeJsonFrame(42, { t: "call", text: "ünï" });
    const frames = new FrameDecoder().push(frame);
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.kind, FrameKind.json);
    assert.equal(frames[0]!.id, 42);
    assert.equal(new TextDecoder().decode(frames[0]!.payload), '{"t":"call","text":"ünï"}');
  });
});

describe("FrameDecoder", () => {
  it("FrameDecoder.push() round-trips every kind and the largest call ID", () => {
    const payload = encoder.encode("hello");
    const bytes = concat(
      encodeFrame(FrameKind.json, 0, payload),
      encodeFrame(FrameKind.chunk, 0xffffffff, new Uint8Array([0, 255, 10, 13])),
      encodeFrame(FrameKind.end, 3, new Uint8Array(0)),
    );
    assert.deepEqual(plain(new FrameDecoder().push(bytes)), [
      { kind: FrameKind.json, id: 0, payload: [...payload] },
      { kind: FrameKind.chunk, id: 0xffffffff, payload: [0, 255, 10, 13] },
      { kind: FrameKind.end, id: 3, payload: [] },
    ]);
  });

  it("FrameDecoder.push() returns the same frames for every split point of a 3-frame stream", () => {
    const frames = [
      encodeJsonFrame(1, { t: "call", input: { a: 1 } }),
      encodeFrame(FrameKind.chunk, 2, encoder.encode("chunk data\r\n")),
      encodeFrame(FrameKind.end, 2, new Uint8Array(0)),
    ];
    const stream = concat(...frames);
    const expected = plain(new FrameDecoder().push(stream));
    assert.equal(expected.length, 3);
    for (let split = 0; split <= stream.byteLength; split++) {
      const decoder = new FrameDecoder();
      const got = [
        ...decoder.push(stream.slice(0, split)),
        ...decoder.push(stream.slice(split)),
      ];
      assert.deepEqual(plain(got), expected, `split at ${split}`);
    }
  });

  it("FrameDecoder.push() returns the same frames for every pair of split points of a 3-frame stream", () => {
    const stream = concat(
      encodeJsonFrame(1, { t: "pull" }),
      encodeFrame(FrameKind.chunk, 1, encoder.encode("ab")),
      encodeFrame(FrameKind.end, 1, new Uint8Array(0)),
    );
    const expected = plain(new FrameDecoder().push(stream));
    for (let a = 0; a <= stream.byteLength; a++) {
      for (let b = a; b <= stream.byteLength; b++) {
        const decoder = new FrameDecoder();
        const got = [
          ...decoder.push(stream.slice(0, a)),
          ...decoder.push(stream.slice(a, b)),
          ...decoder.push(stream.slice(b)),
        ];
        assert.deepEqual(plain(got), expected, `splits at ${a} and ${b}`);
      }
    }
  });

  it("FrameDecoder.push() decodes a stream fed one byte at a time", () => {
    const stream = concat(
      encodeJsonFrame(5, { t: "result", ok: true, value: [1, 2] }),
      encodeFrame(FrameKind.chunk, 6, new Uint8Array([1, 2, 3])),
      encodeFrame(FrameKind.end, 6, new Uint8Array(0)),
    );
    const decoder = new FrameDecoder();
    const got: Frame[] = [];
    for (let i = 0; i < stream.byteLength; i++) got.push(...decoder.push(stream.slice(i, i + 1)));
    assert.deepEqual(plain(got), plain(new FrameDecoder().push(stream)));
    assert.equal(got.length, 3);
  });

  it("FrameDecoder.push() returns nothing until a frame is complete", () => {
    const frame = encodeFrame(FrameKind.chunk, 9, encoder.encode("abcdef"));
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(frame.slice(0, 3)), []);
    assert.deepEqual(decoder.push(frame.slice(3, 10)), []);
    assert.deepEqual(plain(decoder.push(frame.slice(10))), [
      { kind: FrameKind.chunk, id: 9, payload: [...encoder.encode("abcdef")] },
    ]);
  });

  it("FrameDecoder.push() returns several frames when one chunk holds them plus part of the next", () => {
    const a = encodeJsonFrame(1, { n: 1 });
    const b = encodeJsonFrame(2, { n: 2 });
    const c = encodeJsonFrame(3, { n: 3 });
    const stream = concat(a, b, c);
    const cut = a.byteLength + b.byteLength + 4;
    const decoder = new FrameDecoder();
    const first = decoder.push(stream.slice(0, cut));
    assert.deepEqual(first.map((f) => f.id), [1, 2]);
    const second = decoder.push(stream.slice(cut));
    assert.deepEqual(second.map((f) => f.id), [3]);
    assert.deepEqual(parseJsonPayload(second[0]!.payload), { n: 3 });
  });

  it("FrameDecoder.push() returns payloads that later pushes do not overwrite", () => {
    const decoder = new FrameDecoder();
    const chunk = encodeFrame(FrameKind.chunk, 1, new Uint8Array([1, 2, 3]));
    const [frame] = decoder.push(chunk);
    chunk.fill(0);
    decoder.push(encodeFrame(FrameKind.chunk, 2, new Uint8Array([7, 7, 7])));
    assert.deepEqual([...frame!.payload], [1, 2, 3]);
  });

  it("FrameDecoder.push() accepts a frame of exactly MAX_FRAME_BYTES announced length", () => {
    const decoder = new FrameDecoder();
    // Only the head: the length is in range, so the decoder waits for more.
    assert.deepEqual(decoder.push(rawHead(MAX_FRAME_BYTES, FrameKind.chunk, 1)), []);
  });

  it("FrameDecoder.push() throws FrameError when the length is over MAX_FRAME_BYTES", () => {
    const decoder = new FrameDecoder();
    assert.throws(
      () => decoder.push(rawHead(MAX_FRAME_BYTES + 1, FrameKind.chunk, 1)),
      (err: unknown) => err instanceof FrameError && /length .* out of range/.test(err.message),
    );
  });

  it("FrameDecoder.push() throws FrameError as soon as the 4 length bytes say the frame is oversize", () => {
    const decoder = new FrameDecoder();
    assert.throws(() => decoder.push(new Uint8Array([0xff, 0xff, 0xff, 0xff])), FrameError);
  });

  it("FrameDecoder.push() throws FrameError when the length is under 5 (no room for kind and id)", () => {
    for (const length of [0, 1, 4]) {
      const bytes = new Uint8Array(4 + 5);
      new DataView(bytes.buffer).setUint32(0, length);
      assert.throws(() => new FrameDecoder().push(bytes), FrameError, `length ${length}`);
    }
  });

  it("FrameDecoder.push() throws FrameError for an unknown kind", () => {
    for (const kind of [0, 4, 255]) {
      const bytes = concat(rawHead(5 + 2, kind, 1), new Uint8Array([1, 2]));
      assert.throws(
        () => new FrameDecoder().push(bytes),
        (err: unknown) =>
          err instanceof FrameError && err.message.includes(`unknown kind ${kind}`) &&
          err.name === "FrameError",
        `kind ${kind}`,
      );
    }
  });

  it("FrameDecoder.push() throws FrameError for a bad frame that follows a good one in the same chunk", () => {
    const bytes = concat(encodeJsonFrame(1, {}), rawHead(5, 9, 2));
    assert.throws(() => new FrameDecoder().push(bytes), FrameError);
  });

  it("MAX_FRAME_BYTES is 1 MiB: a worker's 16 MiB frame is refused from its 4 length bytes", () => {
    assert.equal(MAX_FRAME_BYTES, 1024 * 1024);
    const head = rawHead(16 * 1024 * 1024, FrameKind.json, 999_999);
    assert.throws(() => new FrameDecoder().push(head.subarray(0, 4)), FrameError);
  });

  it("FrameDecoder.push() decodes a MAX_FRAME_BYTES frame fed in 4 KiB chunks", () => {
    const payload = new Uint8Array(MAX_FRAME_BYTES - 5).map((_, i) => i % 251);
    const stream = encodeFrame(FrameKind.json, 7, payload);
    const decoder = new FrameDecoder();
    const got: Frame[] = [];
    for (let at = 0; at < stream.byteLength; at += 4096) {
      got.push(...decoder.push(stream.subarray(at, at + 4096)));
    }
    assert.equal(got.length, 1);
    assert.equal(got[0]!.id, 7);
    assert.ok(got[0]!.payload.every((b, i) => b === i % 251), "payload bytes differ");
  });

  it("FrameDecoder.push() copies each byte once, however the stream is cut (linear time)", () => {
    // Counts the bytes every Uint8Array copy (set, slice) moves while one
    // large frame and 1,000 small ones arrive in 4 KiB chunks. A decoder
    // that joins its buffer with each new chunk moves about 130 MiB here.
    const small = Array.from({ length: 1000 }, (_, i) => encodeJsonFrame(i, { t: "pull" }));
    const stream = concat(
      encodeFrame(FrameKind.json, 1, new Uint8Array(MAX_FRAME_BYTES - 5)),
      ...small,
    );
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < stream.byteLength; at += 4096) {
      chunks.push(stream.slice(at, at + 4096));
    }
    const typed = Object.getPrototypeOf(Uint8Array.prototype) as {
      set: (this: Uint8Array, source: ArrayLike<number>, offset?: number) => void;
      slice: (this: Uint8Array, start?: number, end?: number) => Uint8Array;
    };
    const { set, slice } = typed;
    let copied = 0;
    typed.set = function (source, offset) {
      copied += source.length;
      return set.call(this, source, offset);
    };
    typed.slice = function (start, end) {
      const out = slice.call(this, start, end);
      copied += out.length;
      return out;
    };
    let frames = 0;
    try {
      const decoder = new FrameDecoder();
      for (const chunk of chunks) frames += decoder.push(chunk).length;
    } finally {
      typed.set = set;
      typed.slice = slice;
    }
    assert.equal(frames, 1001);
    assert.ok(copied <= 2 * stream.byteLength, `${copied} bytes copied for ${stream.byteLength}`);
  });

  it("FrameDecoder.push() treats stray text on the channel as a protocol error", () => {
    // "hello world\n" read as a length is far over the limit.
    assert.throws(() => new FrameDecoder().push(encoder.encode("hello world\n")), FrameError);
  });
});

describe("parseJsonPayload", () => {
  it("parseJsonPayload() returns the decoded value of a JSON payload", () => {
    assert.deepEqual(parseJsonPayload(encoder.encode('{"t":"ready","n":[1,"ü"]}')), {
      t: "ready",
      n: [1, "ü"],
    });
  });

  it("parseJsonPayload() throws FrameError when the payload is not JSON", () => {
    for (const text of ["", "{", "not json", "{'a':1}"]) {
      assert.throws(
        () => parseJsonPayload(encoder.encode(text)),
        (err: unknown) => err instanceof FrameError && /not JSON/.test(err.message),
        JSON.stringify(text),
      );
    }
  });

  it("parseJsonPayload() throws FrameError when the payload is not UTF-8 text of JSON", () => {
    assert.throws(() => parseJsonPayload(new Uint8Array([0xff, 0xfe, 0x00])), FrameError);
  });
});

describe("FrameBatcher", () => {
  it("writes the frames that callers settled together send as one buffer, in order", async () => {
    const writes: Uint8Array[] = [];
    const batcher = new FrameBatcher((bytes) => writes.push(bytes));
    const frames = [1, 2, 3].map((id) => encodeJsonFrame(id, { t: "call", id }));
    // As when one read settles three calls: each caller resumes in its own
    // microtask and sends its next frame.
    const resolvers: Array<() => void> = [];
    const callers = frames.map((frame) =>
      new Promise<void>((resolve) => resolvers.push(resolve)).then(() => batcher.write(frame))
    );
    for (const resolve of resolvers) resolve();
    assert.equal(writes.length, 0, "nothing is written synchronously");
    await Promise.all(callers);
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(writes.length, 1);
    assert.deepEqual(
      plain(new FrameDecoder().push(writes[0]!)),
      plain(frames.map((f) => new FrameDecoder().push(f)[0]!)),
    );
  });

  it("starts a new batch after a flush, and passes a lone frame through as it is", async () => {
    const writes: Uint8Array[] = [];
    const batcher = new FrameBatcher((bytes) => writes.push(bytes));
    const first = encodeFrame(FrameKind.chunk, 7, encoder.encode("abc"));
    batcher.write(first);
    await new Promise((resolve) => setTimeout(resolve, 0));
    const second = encodeFrame(FrameKind.end, 7, new Uint8Array(0));
    batcher.write(second);
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(writes.length, 2);
    assert.equal(writes[0], first);
    assert.deepEqual([...writes[1]!], [...second]);
  });

  it("flush() writes at once and the scheduled flush then writes nothing", async () => {
    const writes: Uint8Array[] = [];
    const batcher = new FrameBatcher((bytes) => writes.push(bytes));
    batcher.write(encodeJsonFrame(1, {}));
    batcher.write(encodeJsonFrame(2, {}));
    batcher.flush();
    assert.equal(writes.length, 1);
    assert.deepEqual(new FrameDecoder().push(writes[0]!).map((f) => f.id), [1, 2]);
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(writes.length, 1);
  });
});
