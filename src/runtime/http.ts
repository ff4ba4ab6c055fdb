/**
 * An HTTP server for a fetch handler on the runtime's own server (Deno.serve
 * or Bun.serve), which both take Web `Request`s and return Web `Response`s:
 * the ACME challenge and MTA-STS policy servers. The admin API has a
 * listener of its own that bounds its connections (src/http/http1_server.ts).
 *
 * @module
 */

/** A fetch-style request handler. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** A running HTTP server. */
export interface HttpServer {
  /** The bound address, `host:port` (`[v6]:port`), with the real port when 0 was asked. */
  address: string;
  /** Stops accepting; requests in progress finish. */
  close(): Promise<void>;
}

interface DenoLike {
  serve(
    options: {
      hostname: string;
      port: number;
      cert?: string;
      key?: string;
      onListen?: (addr: { hostname: string; port: number }) => void;
      onError?: (error: unknown) => Response;
    },
    handler: FetchHandler,
  ): {
    finished: Promise<void>;
    shutdown(): Promise<void>;
    addr: { hostname: string; port: number };
  };
}

interface BunLike {
  serve(options: {
    hostname: string;
    port: number;
    fetch: FetchHandler;
    error?: (error: unknown) => Response;
    tls?: { cert: string; key: string };
    idleTimeout?: number;
  }): { port: number; hostname: string; stop(closeActive?: boolean): Promise<void> | void };
}

const internalError = () =>
  new Response(JSON.stringify({ error: "internal error" }), {
    status: 500,
    headers: { "content-type": "application/json" },
  });

/**
 * Serves `fetch` on `hostname:port`; over TLS (HTTPS) with `tls`.
 *
 * @throws {Error} when the address cannot be bound, or on a runtime
 * without a fetch server (Node).
 */
export function serveHttp(
  hostname: string,
  port: number,
  fetch: FetchHandler,
  tls?: { cert: string; key: string },
): HttpServer {
  const globals = globalThis as { Deno?: DenoLike; Bun?: BunLike };
  const format = (host: string, bound: number) =>
    host.includes(":") ? `[${host}]:${bound}` : `${host}:${bound}`;
  if (globals.Deno) {
    // Binds at once (and throws if it cannot); the no-op onListen keeps
    // Deno from printing "Listening on" to stdout, which is the mail log.
    const server = globals.Deno.serve(
      { hostname, port, onListen: () => {}, onError: internalError, ...(tls ?? {}) },
      fetch,
    );
    return {
      address: format(hostname, server.addr.port),
      close: () => server.shutdown(),
    };
  }
  if (globals.Bun) {
    const server = globals.Bun.serve({
      hostname,
      port,
      fetch,
      error: internalError,
      // Bun closes a connection after 10 s without traffic, even while its
      // request is still being answered; a renewal asked for through
      // POST /acme/renew can take longer when the CA is slow or down (it
      // got ECONNRESET). Deno has no such limit; 60 s, as common HTTP
      // servers keep idle connections.
      idleTimeout: 60,
      ...(tls ? { tls } : {}),
    });
    return {
      address: format(hostname, server.port),
      close: async () => {
        await server.stop(false);
      },
    };
  }
  throw new Error("an HTTP server needs Deno or Bun (no fetch server on this runtime)");
}
