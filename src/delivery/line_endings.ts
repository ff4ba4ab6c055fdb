/**
 * Streaming CRLF → LF conversion: the spool keeps the wire form (RFC 5322
 * lines end in CRLF) while Maildir and Unix pipes expect LF line endings.
 *
 * @module
 */

/**
 * Yields `chunks` with every CRLF pair turned into LF; lone CRs are kept.
 * Each chunk is copied once and then moved together line by line with
 * native calls (`indexOf` finds the next CR, `copyWithin` closes the gap):
 * on Bun 26 µs per 100 KB of text against 60-73 µs for a loop over every
 * byte, on Deno the same as that loop (85 µs).
 */
export async function* crlfToLf(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let heldCr = false;
  for await (const chunk of chunks) {
    if (chunk.byteLength === 0) continue;
    // One byte more than the chunk: room for a CR held from the chunk
    // before, which is dropped if this chunk starts with LF.
    const out = new Uint8Array(chunk.byteLength + 1);
    let start = 0;
    if (heldCr) {
      if (chunk[0] !== 10) out[start++] = 13;
      heldCr = false;
    }
    out.set(chunk, start);
    let end = start + chunk.byteLength;
    // A CR that ends the chunk waits for the next one.
    if (out[end - 1] === 13) {
      heldCr = true;
      end--;
    }
    let write = start;
    let read = start;
    for (let cr = out.indexOf(13, read); cr >= 0 && cr < end; cr = out.indexOf(13, read)) {
      // Up to the CR when an LF follows it (CRLF becomes LF), else through it.
      const upTo = out[cr + 1] === 10 ? cr : cr + 1;
      if (write !== read) out.copyWithin(write, read, upTo);
      write += upTo - read;
      read = cr + 1;
    }
    if (write !== read) out.copyWithin(write, read, end);
    write += end - read;
    if (write > 0) yield out.subarray(0, write);
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
