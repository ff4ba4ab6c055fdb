/**
 * Reads a connection's ClientHello before TLS starts on it (tls.ts, for a
 * listener that chooses its certificate by the protocols offered), and
 * gives every byte back to the TLS side.
 *
 * A connection that ends, fails or is closed before its ClientHello can
 * be told gets no TLS side at all ({@linkcode endedConn}): its bytes can
 * never make a handshake, and a TLS socket made over a stream whose end
 * was already read would wait for an end that never comes again (seen on
 * Deno 2.9.6 and Bun 1.4.5: a client's FIN or reset mid-ClientHello left
 * the caller's read() waiting until its deadline).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Readable } from "node:stream";
import { ClientHelloBuffer } from "./client_hello.ts";
import type { TcpConn } from "./tcp.ts";

/** What a peek read: the protocols offered by ALPN, and every byte read, in order. */
export interface Peeked {
  offered: string[];
  bytes: Uint8Array;
}

/** What one read of the connection below TLS asks for. */
const READ_BYTES = 16 * 1024;

/**
 * Reads `conn` (a `Deno.listen` connection) until its first bytes tell
 * what its ClientHello offers; null when it ends, fails or is closed
 * first. One read buffer serves every read: the bytes are copied out.
 */
export async function peekConn(conn: TcpConn): Promise<Peeked | null> {
  const hello = new ClientHelloBuffer();
  const buffer = new Uint8Array(READ_BYTES);
  // Bounded: the parser tells within CLIENT_HELLO_LIMIT bytes.
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) return null;
    const offered = hello.add(buffer.subarray(0, n));
    if (offered !== undefined) return { offered, bytes: hello.bytes };
  }
}

/**
 * Reads `stream` (a paused `node:net` socket) until its first bytes tell
 * what its ClientHello offers, and puts them back (unshift) for the TLS
 * socket made on it next; null when it ends, fails or is closed first.
 */
export function peekSocket(stream: Readable): Promise<Peeked | null> {
  return new Promise((resolve) => {
    const hello = new ClientHelloBuffer();
    const finish = (peeked: Peeked | null) => {
      stream.off("readable", onReadable);
      stream.off("end", onEnd);
      stream.off("close", onEnd);
      stream.off("error", onEnd);
      if (peeked !== null) stream.unshift(Buffer.from(peeked.bytes));
      resolve(peeked);
    };
    const onEnd = () => finish(null);
    const onReadable = () => {
      for (let chunk = stream.read(); chunk !== null; chunk = stream.read()) {
        const offered = hello.add(chunk as Uint8Array);
        if (offered !== undefined) return finish({ offered, bytes: hello.bytes });
      }
    };
    stream.on("readable", onReadable);
    stream.on("end", onEnd);
    stream.on("close", onEnd);
    stream.on("error", onEnd);
    if (stream.destroyed) return finish(null);
    // Bytes already buffered would raise no "readable" of their own.
    onReadable();
  });
}

/**
 * A connection with no TLS side, for one whose ClientHello never came
 * whole: reads see the end, writes reject, and `discard()`, which closes
 * the connection below, has run already (and runs again on close; it
 * must be idempotent).
 */
export function endedConn(remoteAddress: string, discard: () => void): TcpConn {
  discard();
  return {
    remoteAddress,
    read: () => Promise.resolve(null),
    write: () => Promise.reject(new Error("Cannot write: the connection is closed")),
    closeWrite: () => Promise.resolve(),
    close: discard,
  };
}
