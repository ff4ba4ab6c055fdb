/**
 * A plain TCP listener whose accept loop belongs to the caller: each
 * connection is handed over as bytes to read and write, and a failed accept
 * is an error the caller sees and survives. tls.ts puts TLS on it.
 *
 * The admin API, the ACME challenge server (port 80) and the MTA-STS
 * policy server (port 443) run on it rather than on the runtimes' own HTTP
 * servers: when the process runs out of descriptors (EMFILE),
 * `Deno.serve`'s accept loop rejects a promise nobody can catch and the
 * process exits; neither `Deno.serve` nor `Bun.serve` can cap connections
 * (a connection is invisible until its request is complete), and
 * `Deno.serve` never closes one that is idle or slow. Deno's `node:net`
 * server is no way out: after one EMFILE it stops accepting for good,
 * without an "error" event (both seen on Deno 2.9.6). `Deno.listen`'s
 * `accept()` rejects with the error and accepts again once descriptors are
 * free. Bun's `node:net` server keeps accepting after EMFILE, so it serves
 * Bun (and Node).
 *
 * @module
 */

import { createServer, type Server, type Socket } from "node:net";

/** One accepted TCP connection. */
export interface TcpConn {
  /**
   * The client's IP address, without the port (an IPv4 client of an IPv6
   * socket as `::ffff:a.b.c.d`); empty when the runtime could not tell, the
   * client having gone already. Known at accept, before any byte is read.
   */
  readonly remoteAddress: string;
  /** Reads into `buffer`: the byte count, or null at the end of the stream or once closed. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes all of `data`; rejects when the connection is closed first. */
  write(data: Uint8Array): Promise<void>;
  /** Sends FIN: no more writes, reads go on. */
  closeWrite(): Promise<void>;
  /** Closes now; pending reads end with null, pending writes reject. Idempotent. */
  close(): void;
}

/** A listening TCP socket. */
export interface TcpListener {
  /** The bound address, `host:port` (`[v6]:port`), with the real port when 0 was asked. */
  address: string;
  /**
   * The next connection.
   *
   * @throws {Error} when the runtime cannot accept one (EMFILE, ENFILE…):
   * the listener stays usable; or once it is closed.
   */
  accept(): Promise<TcpConn>;
  /** Stops listening; a pending `accept()` rejects. Idempotent. */
  close(): void;
}

interface DenoConn {
  remoteAddr: { hostname?: string };
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

interface DenoLike {
  listen(options: { hostname: string; port: number; transport: "tcp" }): {
    addr: { hostname: string; port: number };
    accept(): Promise<DenoConn>;
    close(): void;
  };
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Listens on `hostname:port`.
 *
 * @throws {Error} when the address cannot be bound.
 */
export async function listenTcp(hostname: string, port: number): Promise<TcpListener> {
  return await listenWith(hostname, port, { deno: (conn) => conn, node: nodeConn });
}

/**
 * How {@linkcode listenWith} hands over what it accepts (tls.ts puts TLS
 * on it). Called in `accept()`: it must not wait for the client.
 */
export interface ConnAdapter {
  /** On Deno: the connection `Deno.listen` accepted. */
  deno(conn: TcpConn): TcpConn;
  /** Elsewhere: the `node:net` socket, paused. */
  node(socket: Socket): TcpConn;
}

/** Listens on `hostname:port`, handing connections over through `adapt`. */
export async function listenWith(
  hostname: string,
  port: number,
  adapt: ConnAdapter,
): Promise<TcpListener> {
  const deno = (globalThis as { Deno?: DenoLike }).Deno;
  if (deno) {
    // Binds at once, and throws if it cannot.
    const listener = deno.listen({ hostname, port, transport: "tcp" });
    let closed = false;
    return {
      address: formatHostPort(hostname, listener.addr.port),
      accept: async () => adapt.deno(denoConn(await listener.accept())),
      close: () => {
        if (closed) return;
        closed = true;
        listener.close();
      },
    };
  }
  return await nodeListener(hostname, port, adapt);
}

function denoConn(conn: DenoConn): TcpConn {
  let closed = false;
  return {
    remoteAddress: conn.remoteAddr.hostname ?? "",
    read: async (buffer) => {
      if (closed) return null;
      try {
        return await conn.read(buffer);
      } catch {
        // Closed meanwhile, or reset by the peer: the end either way.
        return null;
      }
    },
    write: async (data) => {
      let done = 0;
      while (done < data.length) {
        if (closed) throw new Error("Cannot write: the connection is closed");
        done += await conn.write(data.subarray(done));
      }
    },
    closeWrite: async () => {
      if (!closed) await conn.closeWrite();
    },
    close: () => {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch {
        // Already closed by the runtime.
      }
    },
  };
}

async function nodeListener(
  hostname: string,
  port: number,
  adapt: ConnAdapter,
): Promise<TcpListener> {
  const ready: Socket[] = [];
  const errors: Error[] = [];
  let waiter: (() => void) | undefined;
  let closed = false;
  const wake = () => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  // allowHalfOpen: the reading side stays open after our FIN, as with Deno.
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    ready.push(socket);
    wake();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: hostname, port, exclusive: true }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // After listening, an error (EMFILE while accepting) is handed to accept().
  server.on("error", (err) => {
    errors.push(err);
    wake();
  });
  const bound = server.address();
  return {
    address: formatHostPort(hostname, typeof bound === "object" && bound ? bound.port : port),
    accept: async () => {
      while (true) {
        if (closed) throw new Error("Cannot accept: the listener is closed");
        const error = errors.shift();
        if (error) throw error;
        const socket = ready.shift();
        if (socket) return adapt.node(socket);
        await new Promise<void>((resolve) => waiter = resolve);
      }
    },
    close: () => {
      if (closed) return;
      closed = true;
      server.close();
      for (const socket of ready.splice(0)) socket.destroy();
      wake();
    },
  };
}

/**
 * A `node:net` socket (or a `node:tls` one) read on demand: paused whenever
 * a chunk waits to be read. `remoteAddress` is the socket's own unless
 * given (a TLS socket over a stream has none).
 */
export function nodeConn(socket: Socket, remoteAddress = socket.remoteAddress ?? ""): TcpConn {
  const chunks: Uint8Array[] = [];
  let ended = false;
  let waiter: (() => void) | undefined;
  const wake = () => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  socket.on("data", (chunk: Uint8Array) => {
    chunks.push(chunk);
    socket.pause();
    wake();
  });
  const end = () => {
    ended = true;
    wake();
  };
  socket.on("end", end);
  socket.on("close", end);
  // An error is followed by "close"; without a listener it would be thrown.
  socket.on("error", () => {});
  return {
    remoteAddress,
    read: async (buffer) => {
      while (chunks.length === 0) {
        if (ended || socket.destroyed) return null;
        socket.resume();
        await new Promise<void>((resolve) => waiter = resolve);
      }
      const chunk = chunks[0]!;
      const n = Math.min(buffer.length, chunk.length);
      buffer.set(chunk.subarray(0, n));
      if (n === chunk.length) chunks.shift();
      else chunks[0] = chunk.subarray(n);
      return n;
    },
    write: (data) =>
      new Promise<void>((resolve, reject) => {
        if (socket.destroyed || socket.writableEnded) {
          reject(new Error("Cannot write: the connection is closed"));
          return;
        }
        // A socket destroyed before the data leaves calls back with an error;
        // "close" covers a runtime that never calls back then.
        const closed = () => reject(new Error("Cannot write: the connection is closed"));
        socket.once("close", closed);
        socket.write(data, (err) => {
          socket.off("close", closed);
          if (err) reject(err);
          else resolve();
        });
      }),
    closeWrite: () =>
      new Promise<void>((resolve) => {
        if (socket.destroyed || socket.writableEnded) resolve();
        else socket.end(resolve);
      }),
    close: () => {
      socket.destroy();
      end();
    },
  };
}
