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
 * A listener may also choose by the handshake ({@linkcode TlsOptions}): a
 * certificate by the name the client asks for and the protocols it offers
 * (read from its ClientHello before TLS starts), and whether a connection
 * ends with its handshake, by the protocol agreed (TLS-ALPN-01, RFC 8737).
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { Duplex } from "node:stream";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import { listenWith, nodeConn, type TcpConn, type TcpListener } from "./tcp.ts";
import { endedConn, peekConn, peekSocket } from "./tls_peek.ts";

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

/**
 * What a listener's handshakes choose beyond its certificate; all optional
 * (none: every client gets the listener's certificate and no ALPN).
 */
export interface TlsOptions {
  /** The protocols the server agrees to by ALPN (RFC 7301), preferred first. */
  alpnProtocols?: readonly string[];
  /**
   * The certificate for a client asking for `serverName` (SNI, RFC 6066
   * section 3) and offering `offered` by ALPN (RFC 7301; in the client's
   * order, empty when none), or undefined for the listener's. Called in
   * the handshake; the same object again is loaded once. One that does not
   * load fails that handshake alone. With it set, each connection's
   * ClientHello is read before TLS starts (client_hello.ts), as `node:tls`
   * alone chooses a certificate before it knows the protocols offered.
   */
  certificateFor?: (serverName: string, offered: readonly string[]) => TlsCertificate | undefined;
  /**
   * Whether a connection ends with its handshake, by the protocol agreed
   * (false: none): if so the server closes its side (close_notify, FIN)
   * at once, drops what the client sends after, and the reader sees the
   * end once the client closes too.
   */
  endsAtHandshake?: (alpnProtocol: string | false) => boolean;
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
  options: TlsOptions = {},
): Promise<TlsListener> {
  let context = secureContext(certificate);
  const handshake = handshakeOptions(options);
  const peeking = options.certificateFor !== undefined;
  const tcp = await listenWith(hostname, port, {
    deno: (conn) => {
      // The certificate in force at accept, whenever the handshake starts.
      const accepted = context;
      const discard = () => conn.close();
      const over = (first: Uint8Array | undefined, offered: readonly string[]) =>
        tlsConn(
          serverTls(streamOf(conn, first), accepted, handshake(accepted, offered)),
          conn.remoteAddress,
          options.endsAtHandshake,
        );
      return onFirstUse(
        conn.remoteAddress,
        // Peeked on the connection itself, not on the stream made of it:
        // Deno's TLS socket, made over a stream that holds bytes already,
        // fails a bad ClientHello before it has started, and throws an
        // uncaught TypeError (Deno 2.9.6: "_flushEncOut" of null).
        () =>
          peeking
            ? peekConn(conn).then((peeked) =>
              peeked ? over(peeked.bytes, peeked.offered) : endedConn(conn.remoteAddress, discard)
            )
            : over(undefined, []),
        discard,
      );
    },
    // Bun's TLS socket stops writing, without an error or a close, once a
    // Node stream below it has ended (a client's reset): on Bun, the socket.
    node: (socket) => {
      const accepted = context;
      const remoteAddress = socket.remoteAddress ?? "";
      // A reset before the TLS side exists: an unlistened error is thrown.
      socket.on("error", () => {});
      const discard = () => void socket.destroy();
      const over = (offered: readonly string[]) =>
        tlsConn(
          serverTls(socket, accepted, handshake(accepted, offered)),
          remoteAddress,
          options.endsAtHandshake,
        );
      return onFirstUse(
        remoteAddress,
        () =>
          peeking
            ? peekSocket(socket).then((peeked) =>
              peeked ? over(peeked.offered) : endedConn(remoteAddress, discard)
            )
            : over([]),
        discard,
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
 * connection below. A `start()` that waits (for the ClientHello, with a
 * certificate chosen by it) may be overtaken by the close: what it makes
 * then is closed at once. One that does not wait makes the TLS side at
 * once, as ever: a listener that reads no ClientHello behaves as before.
 */
function onFirstUse(
  remoteAddress: string,
  start: () => TcpConn | Promise<TcpConn>,
  discard: () => void,
): TcpConn {
  let tls: Promise<TcpConn> | undefined;
  let made: TcpConn | undefined;
  let closed = false;
  const use = (conn: TcpConn) => {
    made = conn;
    if (closed) conn.close();
    return conn;
  };
  const started = (): TcpConn | Promise<TcpConn> => {
    if (made) return made;
    if (tls) return tls;
    const conn = start();
    if (conn instanceof Promise) return tls = conn.then(use);
    return use(conn);
  };
  const gone = () => new Error("Cannot write: the connection is closed");
  return {
    remoteAddress,
    read: async (buffer) => {
      if (closed) return null;
      const conn = await started();
      return closed ? null : await conn.read(buffer);
    },
    write: async (data) => {
      if (closed) throw gone();
      const conn = await started();
      if (closed) throw gone();
      await conn.write(data);
    },
    closeWrite: async () => {
      if (closed) return;
      const conn = await started();
      if (!closed) await conn.closeWrite();
    },
    close: () => {
      if (closed) return;
      closed = true;
      if (made) made.close();
      else discard();
    },
  };
}

/** {@linkcode TlsOptions}' choices as `node:tls` server options. */
interface Handshake {
  ALPNProtocols?: string[];
  SNICallback?: (
    name: string,
    callback: (err: Error | null, context?: SecureContext) => void,
  ) => void;
}

/**
 * The handshake options of a connection accepted with `accepted` in
 * force, whose client offered `offered` by ALPN.
 */
function handshakeOptions(
  options: TlsOptions,
): (accepted: SecureContext, offered: readonly string[]) => Handshake {
  const { alpnProtocols, certificateFor } = options;
  // Loaded once per certificate object, not once per handshake.
  const loaded = new WeakMap<TlsCertificate, SecureContext>();
  const contextOf = (chosen: TlsCertificate) => {
    let chosenContext = loaded.get(chosen);
    if (chosenContext === undefined) {
      chosenContext = secureContext(chosen);
      loaded.set(chosen, chosenContext);
    }
    return chosenContext;
  };
  return (accepted, offered) => ({
    ...(alpnProtocols ? { ALPNProtocols: [...alpnProtocols] } : {}),
    ...(certificateFor
      ? {
        SNICallback: (name, callback) => {
          let chosen: SecureContext;
          try {
            const certificate = certificateFor(name, offered);
            chosen = certificate === undefined ? accepted : contextOf(certificate);
          } catch (err) {
            callback(err instanceof Error ? err : new Error(String(err)));
            return;
          }
          callback(null, chosen);
        },
      }
      : {}),
  });
}

/**
 * `socket` as a connection. One that `endsAtHandshake` ends is closed on
 * our side once the handshake is done, gracefully, not destroyed: the last
 * bytes of the handshake may still be on their way to the client. What
 * the client sends after it is read and dropped, and the reader sees the
 * end when the client closes (or the reader's deadline closes it).
 */
function tlsConn(
  socket: TLSSocket,
  remoteAddress: string,
  endsAtHandshake: TlsOptions["endsAtHandshake"],
): TcpConn {
  const conn = nodeConn(socket, remoteAddress);
  if (endsAtHandshake === undefined) return conn;
  let over = false;
  socket.once("secure", () => {
    if (!endsAtHandshake(socket.alpnProtocol ?? false)) return;
    over = true;
    socket.end();
  });
  const dropped = new Uint8Array(READ_BYTES);
  return {
    remoteAddress,
    read: async (buffer) => {
      while (true) {
        const n = await conn.read(over ? dropped : buffer);
        // A read under way when the handshake ended may bring data: dropped too.
        if (n === null || !over) return n;
      }
    },
    write: (data) => conn.write(data),
    closeWrite: () => conn.closeWrite(),
    close: () => conn.close(),
  };
}

/** The server side of TLS over `stream`; the handshake starts at once. */
function serverTls(stream: Duplex, context: SecureContext, handshake: Handshake): TLSSocket {
  const socket = new TLSSocket(stream, { isServer: true, secureContext: context, ...handshake });
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

/**
 * `conn` as a Node stream, for `node:tls` to run over; `first`, bytes
 * already read from it (its ClientHello), come first, and as any read
 * does, later: never buffered before the TLS socket has started.
 */
function streamOf(conn: TcpConn, first?: Uint8Array): Duplex {
  let before = first;
  return new Duplex({
    read() {
      if (before !== undefined) {
        const bytes = before;
        before = undefined;
        // A later turn, as a read's answer comes: after the TLS socket's
        // own start, queued in the turn that made it.
        setTimeout(() => {
          if (!this.destroyed) this.push(bytes);
        }, 0);
        return;
      }
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
