/**
 * Starts the admin API: the token (read or generated), the HTTP listener,
 * and `<data>/run/admin.json`, which tells the command-line tools the
 * address actually bound (port 0 picks one). The file goes when the server
 * stops; a stale one (after a crash) is harmless, as the command line sends
 * the token only to a server that proves it holds the token too (see
 * client.ts).
 *
 * @module
 */

import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log/mod.ts";
import { listenTcp } from "../runtime/mod.ts";
import { splitHostPort } from "../smtp/mod.ts";
import type { AdminDeps } from "./app.ts";
import { type Http1Server, serveHttp1 } from "../http/http1_server.ts";
import { loadOrCreateToken } from "./token.ts";

/** The running admin API. */
export interface AdminServer {
  /** The bound address, `host:port` (`[v6]:port`), with the real port when 0 was asked. */
  address: string;
  /** Stops accepting, lets requests being answered finish, and removes `admin.json`. */
  close(): Promise<void>;
}

/** Options of {@linkcode startAdmin}. */
export interface AdminOptions {
  /** `host:port` to listen on. */
  listen: string;
  tokenFile: string;
  /** Where `admin.json` goes. */
  runDir: string;
  logger: Logger;
  deps: Omit<AdminDeps, "token">;
}

/** Name of the file that records the bound address. */
export const ADMIN_STATE_FILE = "admin.json";

/**
 * Why `listen` (`host:port`) is a risky admin address, or undefined when it
 * is on loopback. The API speaks plain HTTP: elsewhere, the bearer token
 * crosses the network readable by anyone on the path.
 */
export function adminListenWarning(listen: string): string | undefined {
  let host: string;
  try {
    host = splitHostPort(listen).host;
  } catch {
    return undefined;
  }
  if (isLoopback(host)) return undefined;
  return `admin.listen ${listen} is not a loopback address: the admin API speaks plain HTTP, so ` +
    `the bearer token and every request and answer cross the network unencrypted, and anyone ` +
    `who can reach the port can try tokens; keep it on 127.0.0.1 or [::1] (or "off") and ` +
    `reach it over SSH or a TLS tunnel`;
}

function isLoopback(host: string): boolean {
  if (host.toLowerCase() === "localhost") return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return true;
  if (!host.includes(":")) return false;
  try {
    // The URL parser writes an IPv6 address in its shortest form.
    const canonical = new URL(`http://[${host}]/`).hostname;
    return canonical === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
  } catch {
    return false;
  }
}

/**
 * Starts serving the API.
 *
 * @throws {Error} when the token file cannot be read or written, or the
 * address cannot be bound: a clear start-up error.
 */
export async function startAdmin(options: AdminOptions): Promise<AdminServer> {
  const token = await loadOrCreateToken(options.tokenFile);
  if (token.created) {
    options.logger.info("admin token generated", { file: options.tokenFile });
  }
  if (token.warning) options.logger.warn(token.warning);
  const exposed = adminListenWarning(options.listen);
  if (exposed) options.logger.warn(exposed);
  // The app (hono and its validator) is loaded by the first request, not
  // at start-up: most of the time nobody asks (issue 17, idle memory).
  let app: Promise<{ fetch(request: Request): Response | Promise<Response> }> | undefined;
  const loadApp = () =>
    import("./app.ts").then(({ adminApp }) => adminApp({ ...options.deps, token: token.token }));
  let server: Http1Server;
  try {
    const { host, port } = splitHostPort(options.listen);
    // A failed load is tried again by the next request.
    const appNow = () =>
      app ??= loadApp().catch((err) => {
        app = undefined;
        throw err;
      });
    const listener = await listenTcp(host, port);
    server = serveHttp1(listener, async (request) => (await appNow()).fetch(request), {
      warn: (msg, fields) => options.logger.warn(msg, fields),
      info: (msg, fields) => options.logger.info(msg, fields),
      count: (outcome) =>
        options.deps.counters.inc("http_connections_total", { server: "admin", outcome }),
    });
  } catch (err) {
    throw new Error(
      `admin API: cannot listen on ${options.listen}: ${err instanceof Error ? err.message : err}`,
    );
  }
  await mkdir(options.runDir, { recursive: true, mode: 0o700 });
  const state = join(options.runDir, ADMIN_STATE_FILE);
  // Which server wrote the file: the one that stops removes only its own.
  const instance = crypto.randomUUID();
  const record = JSON.stringify({ address: server.address, instance }) + "\n";
  await rm(`${state}.tmp`, { force: true });
  await writeFile(`${state}.tmp`, record, { mode: 0o600 });
  await rename(`${state}.tmp`, state);
  options.logger.info("admin api listening", { addr: server.address });
  return {
    address: server.address,
    close: async () => {
      await server.close();
      try {
        if ((await readFile(state, "utf8")) === record) await rm(state, { force: true });
      } catch {
        // Already gone, or replaced by another server's.
      }
    },
  };
}
