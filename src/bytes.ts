/**
 * Byte-array helpers shared by the spool writer, the hook channel and the
 * DSN builder.
 *
 * @module
 */

/**
 * The chunks joined into one new array. `total`, when the caller already
 * knows it, is their combined length.
 */
export function concatBytes(
  chunks: readonly Uint8Array[],
  total: number = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0),
): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
