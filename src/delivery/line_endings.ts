/**
 * Streaming CRLF → LF conversion: the spool keeps the wire form (RFC 5322
 * lines end in CRLF) while Maildir and Unix pipes expect LF line endings.
 *
 * @module
 */

/** Yields `chunks` with every CRLF pair turned into LF; lone CRs are kept. */
export async function* crlfToLf(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let heldCr = false;
  for await (const chunk of chunks) {
    if (chunk.byteLength === 0) continue;
    const out = new Uint8Array(chunk.byteLength + 1);
    let n = 0;
    let i = 0;
    if (heldCr) {
      // A CR that ended the previous chunk is dropped if an LF follows.
      if (chunk[0] !== 10) out[n++] = 13;
      heldCr = false;
    }
    for (; i < chunk.byteLength; i++) {
      const byte = chunk[i]!;
      if (byte === 13) {
        if (i + 1 === chunk.byteLength) {
          heldCr = true;
          continue;
        }
        if (chunk[i + 1] === 10) continue;
      }
      out[n++] = byte;
    }
    if (n > 0) yield out.subarray(0, n);
  }
  if (heldCr) yield new Uint8Array([13]);
}

/** Yields `head` and then every chunk of `rest`. */
export async function* prepend(
  head: Uint8Array,
  rest: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  yield head;
  yield* rest;
}
