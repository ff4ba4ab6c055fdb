/**
 * The framed channel between Postern and a hook worker, over the worker's
 * standard input and output. Every frame is
 *
 * ```text
 * u32 length (big endian, of what follows) | u8 kind | u32 call ID | payload
 * ```
 *
 * so a stray byte can never be mistaken for part of a message: the worker
 * sends a hook's console output to standard error, and anything that breaks
 * the framing ends the worker. The bootstrap in `worker_source.ts` speaks
 * the same format.
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";

/** What a frame carries. */
export const FrameKind = {
  /** A JSON object (call, result, pull, ready, load error). */
  json: 1,
  /** A chunk of the message of a call. */
  chunk: 2,
  /** The end of the message of a call. */
  end: 3,
} as const;

/** One of the {@linkcode FrameKind} values. */
export type FrameKindValue = typeof FrameKind[keyof typeof FrameKind];

/** A decoded frame. */
export interface Frame {
  kind: FrameKindValue;
  id: number;
  payload: Uint8Array;
}

/**
 * The largest frame a worker may send: the announced length (kind, call ID
 * and payload) in bytes. A worker's frames are its answers, and the largest
 * legitimate answer is a post-data result (headers to add, a reply text) or
 * an alias list; 1 MiB holds thousands of headers or addresses. A longer
 * frame is a protocol error and ends the worker as soon as its 4 length bytes
 * arrive (the worker source refuses to send a longer result and sends an
 * error instead, so a legitimate hook gets a clear failure).
 */
export const MAX_FRAME_BYTES = 1024 * 1024;

const HEAD = 9;

/** Encodes one frame. */
export function encodeFrame(kind: FrameKindValue, id: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEAD + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, 5 + payload.byteLength);
  view.setUint8(4, kind);
  view.setUint32(5, id);
  out.set(payload, HEAD);
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a JSON frame. */
export function encodeJsonFrame(id: number, value: unknown): Uint8Array {
  return encodeFrame(FrameKind.json, id, encoder.encode(JSON.stringify(value)));
}

/**
 * Gathers the frames written during one turn of the event loop and hands
 * them to `sink` as one buffer, once the current microtasks have run.
 *
 * Why: with calls in flight, the answers of one read settle several calls
 * at once and each caller sends its next call; written one by one, every
 * frame is a write system call and a wake-up of the reader. Node's
 * `cork()` would do this, but Deno's pipe sockets ignore it (seen with
 * strace: one write per frame with `cork` in place).
 */
export class FrameBatcher {
  #sink: (bytes: Uint8Array) => void;
  #frames: Uint8Array[] = [];
  #bytes = 0;

  /** Creates a batcher that writes to `sink`. */
  constructor(sink: (bytes: Uint8Array) => void) {
    this.#sink = sink;
  }

  /** Queues `frame`; it is written with the others of this turn. */
  write(frame: Uint8Array): void {
    this.#frames.push(frame);
    this.#bytes += frame.byteLength;
    if (this.#frames.length === 1) queueMicrotask(() => this.flush());
  }

  /** Writes what is queued now. */
  flush(): void {
    const frames = this.#frames;
    if (frames.length === 0) return;
    const bytes = frames.length === 1 ? frames[0]! : concatBytes(frames, this.#bytes);
    this.#frames = [];
    this.#bytes = 0;
    this.#sink(bytes);
  }
}

/** Raised when the byte stream is not a sequence of valid frames. */
export class FrameError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

/**
 * Splits a byte stream into frames, whatever the chunk boundaries, in linear
 * time: the head of a frame is gathered in a 9-byte buffer, and its payload
 * is copied once into a buffer of the announced size, so no byte is copied
 * twice however the stream is cut (the bytes of a worker are hostile input).
 */
export class FrameDecoder {
  #head = new Uint8Array(HEAD);
  #headBytes = 0;
  #kind: FrameKindValue = FrameKind.json;
  #id = 0;
  #payload: Uint8Array | undefined;
  #payloadBytes = 0;

  /**
   * Adds bytes and returns the frames completed by them.
   *
   * @throws {FrameError} when a frame is malformed or too large; its length
   * is checked as soon as its first 4 bytes arrive.
   */
  push(bytes: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    while (at < bytes.byteLength) {
      if (this.#payload === undefined) {
        const take = Math.min(HEAD - this.#headBytes, bytes.byteLength - at);
        this.#head.set(bytes.subarray(at, at + take), this.#headBytes);
        const before = this.#headBytes;
        this.#headBytes += take;
        at += take;
        const view = new DataView(this.#head.buffer);
        if (before < 4 && this.#headBytes >= 4) {
          const length = view.getUint32(0);
          if (length < 5 || length > MAX_FRAME_BYTES) {
            throw new FrameError(`Cannot read frame: length ${length} is out of range`);
          }
        }
        if (this.#headBytes < HEAD) break;
        const kind = view.getUint8(4);
        if (kind !== FrameKind.json && kind !== FrameKind.chunk && kind !== FrameKind.end) {
          throw new FrameError(`Cannot read frame: unknown kind ${kind}`);
        }
        this.#kind = kind;
        this.#id = view.getUint32(5);
        this.#payload = new Uint8Array(view.getUint32(0) - 5);
        this.#payloadBytes = 0;
        this.#headBytes = 0;
      }
      const payload = this.#payload;
      const take = Math.min(payload.byteLength - this.#payloadBytes, bytes.byteLength - at);
      payload.set(bytes.subarray(at, at + take), this.#payloadBytes);
      this.#payloadBytes += take;
      at += take;
      if (this.#payloadBytes === payload.byteLength) {
        frames.push({ kind: this.#kind, id: this.#id, payload });
        this.#payload = undefined;
      }
    }
    return frames;
  }
}

/**
 * Parses the payload of a JSON frame.
 *
 * @throws {FrameError} when it is not JSON.
 */
export function parseJsonPayload(payload: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(payload));
  } catch {
    throw new FrameError("Cannot read frame: payload is not JSON");
  }
}
