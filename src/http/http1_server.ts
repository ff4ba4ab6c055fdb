/**
 * A small HTTP/1.1 server on a TCP or TLS listener whose accept loop is
 * ours (see src/runtime/tcp.ts for why not `Deno.serve` or `Bun.serve`),
 * for the admin API, the ACME http-01 challenge server and the MTA-STS
 * policy server (over TLS). It keeps to what they need (a few plain
 * requests) and bounds everything else:
 *
 * - a failed accept (EMFILE…) is logged and retried with a backoff; it
 *   never ends the process;
 * - at most `maxConnectionsPerAddress` connections from one client (an IPv4
 *   address, an IPv6 /64) at once, refusals under way included: one more
 *   is closed at once, unanswered and unread (over TLS, before any
 *   handshake), and takes no part of the cap below; so one host cannot
 *   hold every connection;
 * - at most `maxConnections` connections at once; one more gets 503 and is
 *   closed, and past as many refusals under way, at once without an answer;
 * - the request head must arrive within `headTimeoutMs` of the connection
 *   (an idle or slow client is closed; over TLS, the handshake too), its
 *   body within `bodyTimeoutMs`, and the client must take the response
 *   within `writeTimeoutMs`;
 * - a body is announced by Content-Length, at most `maxBodyBytes`
 *   (larger: 413 before reading any of it); chunked bodies get 501;
 * - one request per connection (`Connection: close`): no idle keep-alive.
 *
 * @module
 */

import { clientKey } from "../net/client_key.ts";
import type { TcpConn, TcpListener } from "../runtime/mod.ts";
import { ClientSlots } from "../net/client_slots.ts";
import { ShareRefusals } from "./client_share.ts";
import {
  bodyLength,
  type Head,
  header,
  parseHead,
  readBody,
  readHead,
  Refusal,
  toRequest,
} from "./http1_request.ts";

/** A fetch-style request handler. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** Limits of {@linkcode serveHttp1}. */
export interface Http1Limits {
  /** What the server is, in its log lines and its 503 ("admin API"). */
  name: string;
  maxConnections: number;
  /**
   * Connections one client (an IPv4 address, an IPv6 /64) may hold at
   * once, counted from accept to close, refusals included; checked before
   * `maxConnections`.
   */
  maxConnectionsPerAddress: number;
  headTimeoutMs: number;
  bodyTimeoutMs: number;
  writeTimeoutMs: number;
  maxHeadBytes: number;
  maxBodyBytes: number;
}

/** The limits of the admin API. */
export const ADMIN_HTTP_LIMITS: Http1Limits = {
  name: "admin API",
  // An operator's scripts, the command line and a Prometheus scraper: a
  // few at a time.
  maxConnections: 32,
  // All of them come from loopback, one address: as many as the cap and
  // its refusals under way, a share it never reaches first (one more
  // than the cap gets its 503).
  maxConnectionsPerAddress: 64,
  headTimeoutMs: 10_000,
  bodyTimeoutMs: 10_000,
  writeTimeoutMs: 30_000,
  maxHeadBytes: 16 * 1024,
  maxBodyBytes: 64 * 1024,
};

/**
 * What became of an accepted connection: served, or refused for being over
 * its client's share, over the cap (503), or over the cap with as many
 * refusals under way (closed unanswered).
 */
export type Http1Outcome = "admitted" | "per_address" | "capacity" | "capacity_unanswered";

/** Where {@linkcode serveHttp1} reports trouble with the listener itself. */
export interface Http1Log {
  warn(msg: string, fields?: Record<string, string | number>): void;
  info(msg: string, fields?: Record<string, string | number>): void;
  /** Counts each accepted connection by its outcome, when given. */
  count?(outcome: Http1Outcome): void;
}

/** A running server. */
export interface Http1Server {
  address: string;
  /** Connections open now. */
  connections(): number;
  /** Stops accepting and closes idle connections; requests being answered finish. */
  close(): Promise<void>;
}

/** A failed accept is logged at most this often; the others are counted. */
const ACCEPT_WARN_INTERVAL_MS = 60_000;
/** A client's refusals for being over its share are logged at most this often. */
const SHARE_WARN_INTERVAL_MS = 60_000;
/** Retries of a failed accept wait 10 ms, doubling up to this. */
const ACCEPT_BACKOFF_MAX_MS = 1_000;
/** After the response, the rest of the request is read and dropped this long at most. */
const LINGER_MS = 2_000;
const LINGER_BYTES = 1024 * 1024;

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
};

/** Headers this server sets itself, never copied from the handler's response. */
const HOP_BY_HOP = new Set(["connection", "content-length", "keep-alive", "transfer-encoding"]);
const encoder = new TextEncoder();

/** Serves `handler` on `listener` until closed. */
export function serveHttp1(
  listener: TcpListener,
  handler: FetchHandler,
  log: Http1Log,
  limits: Http1Limits = ADMIN_HTTP_LIMITS,
): Http1Server {
  const open = new Map<TcpConn, { busy: boolean; done: Promise<void> }>();
  const slots = new ClientSlots(limits.maxConnectionsPerAddress);
  const refusals = new ShareRefusals(SHARE_WARN_INTERVAL_MS);
  let refusing = 0;
  let closed = false;
  let backoff: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | undefined;

  const acceptLoop = async () => {
    let failures = 0;
    let logged = false;
    let lastWarning = -Infinity;
    let delay = 0;
    while (!closed) {
      let conn: TcpConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (closed) return;
        failures++;
        if (Date.now() - lastWarning >= ACCEPT_WARN_INTERVAL_MS) {
          lastWarning = Date.now();
          logged = true;
          log.warn(`${limits.name} cannot accept connections; retrying`, {
            addr: listener.address,
            error: err instanceof Error ? err.message : String(err),
          });
        }
        delay = Math.min(delay === 0 ? 10 : delay * 2, ACCEPT_BACKOFF_MAX_MS);
        await new Promise<void>((resolve) => {
          backoff = { timer: setTimeout(resolve, delay), resolve };
        });
        backoff = undefined;
        continue;
      }
      if (failures > 0) {
        if (logged) {
          log.info(`${limits.name} accepts connections again`, {
            addr: listener.address,
            failed_accepts: failures,
          });
        }
        failures = 0;
        logged = false;
        delay = 0;
      }
      // The client's share comes first: a host over it is closed before
      // anything is read or written (over TLS, before the handshake starts)
      // and takes no place under the cap, which the others still find room
      // under. Its slot is held until the close, a 503 under way included,
      // so that reconnecting fast gains it nothing.
      const client = clientKey(conn.remoteAddress);
      if (!slots.claim(client)) {
        closeQuietly(conn);
        log.count?.("per_address");
        if (refusals.shouldLog(client)) {
          log.warn(`${limits.name} refuses connections from a client over its share`, {
            addr: listener.address,
            client,
            max_per_client: limits.maxConnectionsPerAddress,
          });
        }
        continue;
      }
      if (open.size >= limits.maxConnections) {
        // A 503 over TLS waits for the handshake: the refusals under way
        // are capped too, so that a flood cannot hold descriptors there.
        if (refusing >= limits.maxConnections) {
          closeQuietly(conn);
          slots.release(client);
          log.count?.("capacity_unanswered");
        } else {
          refusing++;
          log.count?.("capacity");
          void refuse(conn, limits).finally(() => {
            refusing--;
            slots.release(client);
          });
        }
        continue;
      }
      const state = { busy: false, done: Promise.resolve() };
      open.set(conn, state);
      log.count?.("admitted");
      state.done = serveConnection(conn, handler, limits, listener.address, () => state.busy = true)
        .finally(() => {
          open.delete(conn);
          slots.release(client);
        });
    }
  };
  // Whatever goes wrong here must not become an unhandled rejection, which
  // would end the process (Deno) and SMTP with it.
  const loop = acceptLoop().catch((err) =>
    log.warn(`${limits.name} stopped accepting connections after an unexpected error`, {
      addr: listener.address,
      error: err instanceof Error ? err.message : String(err),
    })
  );

  return {
    address: listener.address,
    connections: () => open.size,
    close: async () => {
      closed = true;
      listener.close();
      if (backoff) {
        clearTimeout(backoff.timer);
        backoff.resolve();
      }
      await loop;
      for (const [conn, state] of open) if (!state.busy) closeQuietly(conn);
      await Promise.all([...open.values()].map((s) => s.done));
    },
  };
}

/**
 * Over the limit: a 503, and the connection closed without reading it;
 * held no longer than an admitted connection that sends nothing. Never
 * rejects.
 */
async function refuse(conn: TcpConn, limits: Http1Limits): Promise<void> {
  const timer = setTimeout(
    () => closeQuietly(conn),
    Math.min(limits.headTimeoutMs, limits.writeTimeoutMs),
  );
  try {
    await conn.write(
      plainResponse(503, `too many connections to the ${limits.name}; try again shortly`),
    );
  } catch {
    // The client left: nothing to answer.
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

/** Closes `conn`; a failure to close is no reason to stop serving. */
function closeQuietly(conn: TcpConn): void {
  try {
    conn.close();
  } catch {
    // Closed already, or the runtime could not: either way it is done.
  }
}

/** Reads one request, answers it, and closes the connection. Never rejects. */
async function serveConnection(
  conn: TcpConn,
  handler: FetchHandler,
  limits: Http1Limits,
  authority: string,
  markBusy: () => void,
): Promise<void> {
  let timer = setTimeout(() => closeQuietly(conn), limits.headTimeoutMs);
  const deadline = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => closeQuietly(conn), ms);
  };
  try {
    let response: Response;
    let head: Head | undefined;
    try {
      const read = await readHead(conn, limits.maxHeadBytes);
      if (read === null) return;
      head = parseHead(read.head);
      const length = bodyLength(head, limits.maxBodyBytes);
      let body: Uint8Array<ArrayBuffer> | undefined;
      if (length > 0) {
        if (header(head, "expect")?.toLowerCase() === "100-continue") {
          await conn.write(encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
        }
        deadline(limits.bodyTimeoutMs);
        const received = await readBody(conn, read.rest, length);
        if (received === null) return;
        body = received;
      }
      clearTimeout(timer);
      markBusy();
      const request = toRequest(head, authority, body);
      try {
        response = await handler(request);
      } catch {
        response = new Response(JSON.stringify({ error: "internal error" }), {
          status: 500,
          headers: { "content-type": "application/json" },
        });
      }
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      response = new Response(JSON.stringify({ error: err.message }), {
        status: err.status,
        headers: { "content-type": "application/json" },
      });
    }
    deadline(limits.writeTimeoutMs);
    await conn.write(await serialize(response, head?.method === "HEAD"));
    // Half-close, then drop what the client still sends (a body refused
    // unread), so that closing does not reset the connection before the
    // client has read the answer.
    await conn.closeWrite();
    deadline(LINGER_MS);
    await drain(conn, LINGER_BYTES);
  } catch {
    // A write to a closed or reset connection: nothing more to do.
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

/** The status line, headers and body of `response`, with its length and `Connection: close`. */
async function serialize(response: Response, isHead: boolean): Promise<Uint8Array> {
  const body = response.status === 204 || response.status === 304
    ? new Uint8Array(0)
    : new Uint8Array(await response.arrayBuffer());
  let text = `HTTP/1.1 ${response.status} ${
    response.statusText || REASONS[response.status] || ""
  }\r\n`;
  for (const [name, value] of response.headers) {
    if (!HOP_BY_HOP.has(name)) text += `${name}: ${value}\r\n`;
  }
  // A HEAD response has the headers of the GET without its body, and a
  // length only when the handler knew the GET's.
  const declared = response.headers.get("content-length");
  const length = isHead
    ? (declared !== null && /^\d+$/.test(declared) ? declared : "")
    : body.length;
  text += `date: ${new Date().toUTCString()}\r\n` +
    (length === "" ? "" : `content-length: ${length}\r\n`) + "connection: close\r\n\r\n";
  const headBytes = encoder.encode(text);
  const sent = isHead ? new Uint8Array(0) : body;
  const out = new Uint8Array(headBytes.length + sent.length);
  out.set(headBytes);
  out.set(sent, headBytes.length);
  return out;
}

/** A small JSON error response, serialized. */
function plainResponse(status: number, message: string): Uint8Array {
  const body = JSON.stringify({ error: message });
  return encoder.encode(
    `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\ncontent-type: application/json\r\n` +
      `content-length: ${encoder.encode(body).length}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** Reads and drops up to `limit` bytes, until the client closes. */
async function drain(conn: TcpConn, limit: number): Promise<void> {
  const scratch = new Uint8Array(16 * 1024);
  let total = 0;
  while (total < limit) {
    const n = await conn.read(scratch);
    if (n === null) return;
    total += n;
  }
}
