/**
 * Where a local service listens: a Unix socket (`unix:/run/dovecot/lmtp`)
 * or a TCP address (`127.0.0.1:24`, `[::1]:24`). Dovecot's LMTP and auth
 * services are reached through these.
 *
 * @module
 */

import { connect, type Socket } from "node:net";

/** A parsed service address. */
export type Endpoint =
  | { kind: "unix"; path: string }
  | { kind: "tcp"; host: string; port: number };

const TCP = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.\-]+)):(\d{1,5})$/;

/**
 * Parses `unix:<path>` or `host:port`; undefined when it is neither.
 *
 * @example Parsing both forms
 * ```ts
 * parseEndpoint("unix:/run/dovecot/lmtp"); // { kind: "unix", path: "/run/dovecot/lmtp" }
 * parseEndpoint("127.0.0.1:24"); // { kind: "tcp", host: "127.0.0.1", port: 24 }
 * ```
 */
export function parseEndpoint(text: string): Endpoint | undefined {
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    return path === "" ? undefined : { kind: "unix", path };
  }
  const match = TCP.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return undefined;
  return { kind: "tcp", host: (match[1] ?? match[2])!, port };
}

/** The text form of an endpoint, for log lines and pool keys. */
export function endpointText(endpoint: Endpoint): string {
  if (endpoint.kind === "unix") return `unix:${endpoint.path}`;
  return endpoint.host.includes(":")
    ? `[${endpoint.host}]:${endpoint.port}`
    : `${endpoint.host}:${endpoint.port}`;
}

/**
 * Opens a connection to `endpoint`, connected when it resolves.
 *
 * @throws {Error} when the connection is refused, the socket is missing or
 * not allowed, or `timeoutMs` passes first.
 */
export function connectEndpoint(endpoint: Endpoint, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = endpoint.kind === "unix"
      ? connect({ path: endpoint.path })
      : connect({ host: endpoint.host, port: endpoint.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`cannot connect to ${endpointText(endpoint)}: timed out`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(`cannot connect to ${endpointText(endpoint)}: ${err.message}`));
    });
  });
}
