/**
 * A TLS listener on the TCP listener of tcp.ts: the same accept loop (a
 * failed accept, EMFILE…, is an error the caller sees and survives), and
 * each connection handed over as decrypted bytes, with the server side of
 * `node:tls` run on it: over the `node:net` socket on Bun (and Node), over
 * the `Deno.listen` connection, made a Node stream, on Deno.
 *
 * The TLS handshake belongs to the connection, never to `accept()`: it
 * starts when the caller first reads or writes, and a client that never
 * finishes it holds only its own connection, until the caller's deadline
 * closes it, which frees its descriptor at once. Until then the caller
 * knows the client's address and nothing has been spent on TLS: a
 * connection it refuses by address (a client over its share) is closed
 * with no handshake work at all.
 *
 * Why not the runtimes' TLS listeners:
 * - `Deno.listenTls` accepts without waiting for handshakes and survives
 *   EMFILE, but closing a connection whose handshake has not completed
 *   leaves its socket open until the client sends or closes (Deno 2.9.6:
 *   50 silent clients, closed by the server, still held 50 descriptors;
 *   none was released within 200 s). A client that stays silent would
 *   keep its descriptor for good.
 * - Bun's `node:tls` server goes on accepting after EMFILE (Bun 1.4.5), but
 *   it handshakes before handing a connection over, out of reach of the
 *   caller's connection cap and deadlines.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { Duplex } from "node:stream";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import { listenWith, nodeConn, type TcpConn, type TcpListener } from "./tcp.ts";

/** A certificate chain and its private key, in PEM. */
export interface TlsCertificate {
  /** The chain, leaf first. */
  cert: string;
  /** The private key of the leaf. */
  key: string;
}

/** A listening socket whose connections speak TLS. */
export interface TlsListener extends TcpListener {
  /**
   * Presents `certificate` to the connections accepted from now on; open
   * ones keep the one they have. The socket stays bound.
   *
   * @throws {Error} when the certificate or key does not load, or the
   * listener is closed; the previous certificate stays in use.
   */
  setCertificate(certificate: TlsCertificate): void;
}

/** What one read of the connection below TLS asks for. */
const READ_BYTES = 16 * 1024;

/**
 * Listens on `hostname:port` with `certificate`.
 *
 * @throws {Error} when the address cannot be bound or the certificate does
 * not load.
 */
export async function listenTls(
  hostname: string,
  port: number,
  certificate: TlsCertificate,
): Promise<TlsListener> {
  let context = secureContext(certificate);
  const tcp = await listenWith(hostname, port, {
    deno: (conn) => {
      // The certificate in force at accept, whenever the handshake starts.
      const accepted = context;
      return onFirstUse(
        conn.remoteAddress,
        () => nodeConn(serverTls(streamOf(conn), accepted), conn.remoteAddress),
        () => conn.close(),
      );
    },
    // Bun's TLS socket stops writing, without an error or a close, once a
    // Node stream below it has ended (a client's reset): on Bun, the socket.
    node: (socket) => {
      const accepted = context;
      const remoteAddress = socket.remoteAddress ?? "";
      // A reset before the TLS side exists: an unlistened error is thrown.
      socket.on("error", () => {});
      return onFirstUse(
        remoteAddress,
        () => nodeConn(serverTls(socket, accepted), remoteAddress),
        () => socket.destroy(),
      );
    },
  });
  let closed = false;
  return {
    address: tcp.address,
    accept: () => tcp.accept(),
    close: () => {
      closed = true;
      tcp.close();
    },
    setCertificate: (next) => {
      if (closed) throw new Error("Cannot change the certificate: the listener is closed");
      // Made before it replaces anything: one that does not load leaves the old.
      context = secureContext(next);
    },
  };
}

function secureContext(certificate: TlsCertificate): SecureContext {
  // Deno's createSecureContext takes any text: the pair is loaded at the
  // first handshake, which would fail. Checked here, on every runtime.
  const leaf = new X509Certificate(certificate.cert);
  if (!leaf.checkPrivateKey(createPrivateKey(certificate.key))) {
    throw new Error("Cannot use the certificate: the private key is not the certificate's");
  }
  return createSecureContext({ cert: certificate.cert, key: certificate.key });
}

/**
 * A connection whose TLS side, `start()`, is made by the first read, write
 * or half-close; closed before, it only runs `discard()`, which closes the
 * connection below.
 */
function onFirstUse(remoteAddress: string, start: () => TcpConn, discard: () => void): TcpConn {
  let tls: TcpConn | undefined;
  let closed = false;
  const started = () => tls ??= start();
  return {
    remoteAddress,
    read: async (buffer) => closed ? null : await started().read(buffer),
    write: async (data) => {
      if (closed) throw new Error("Cannot write: the connection is closed");
      await started().write(data);
    },
    closeWrite: async () => {
      if (!closed) await started().closeWrite();
    },
    close: () => {
      if (closed) return;
      closed = true;
      if (tls) tls.close();
      else discard();
    },
  };
}

/** The server side of TLS over `stream`; the handshake starts at once. */
function serverTls(stream: Duplex, context: SecureContext): TLSSocket {
  const socket = new TLSSocket(stream, { isServer: true, secureContext: context });
  // Either one closed closes the other: the connection below goes at once,
  // handshake or not, and a connection that failed below ends the TLS
  // socket (whose reader sees the end).
  socket.once("close", () => stream.destroy());
  stream.once("close", () => socket.destroy());
  // A write to a connection the client reset: the TLS socket reports what
  // matters, and an unlistened error would be thrown.
  stream.on("error", () => {});
  return socket;
}

/** `conn` as a Node stream, for `node:tls` to run over. */
function streamOf(conn: TcpConn): Duplex {
  return new Duplex({
    read() {
      const buffer = new Uint8Array(READ_BYTES);
      conn.read(buffer).then((n) => {
        if (this.destroyed) return;
        this.push(n === null ? null : buffer.subarray(0, n));
      });
    },
    write(chunk: Uint8Array, _encoding, callback) {
      conn.write(chunk).then(() => callback(), callback);
    },
    final(callback) {
      conn.closeWrite().then(() => callback(), callback);
    },
    destroy(error, callback) {
      conn.close();
      callback(error);
    },
  });
}
