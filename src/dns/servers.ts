/**
 * DNS server addresses: parsing `host:port` and `[v6]:port` from the
 * configuration, and finding the system's own servers.
 *
 * @module
 */

import { getServers } from "node:dns";
import { isIP } from "node:net";

/** A DNS server to send queries to. */
export interface ServerAddress {
  /** IP literal, without brackets; IPv6 in canonical (compressed, lower-case) form. */
  host: string;
  /** UDP and TCP port. */
  port: number;
  /** IP version of `host`. */
  family: 4 | 6;
}

const DEFAULT_PORT = 53;

/**
 * Parses one server: `192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1` or
 * `[2001:db8::1]:5353`. The host must be an IP literal: the resolver cannot
 * look up the names of its own servers. Throws a TypeError otherwise.
 */
export function parseServer(text: string): ServerAddress {
  const input = text.trim();
  let host = input;
  let port = DEFAULT_PORT;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(input);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else if (isIP(input) === 0) {
    // Only IPv4 has a single colon; a bare IPv6 address has several.
    const colon = input.lastIndexOf(":");
    if (colon > 0 && input.indexOf(":") === colon) {
      host = input.slice(0, colon);
      port = Number(input.slice(colon + 1));
    }
  }
  // A zone index (fe80::1%eth0) is not something node:dgram accepts everywhere.
  const family = isIP(host);
  if (family === 0 || host.includes("%")) {
    throw new TypeError(`Cannot use DNS server "${text}": the host is not an IP address`);
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`Cannot use DNS server "${text}": the port is not in 1-65535`);
  }
  return { host: canonicalHost(host, family), port, family: family === 6 ? 6 : 4 };
}

/**
 * The servers the system is configured with (`/etc/resolv.conf` on Unix, as
 * read by the runtime's `node:dns`), or `127.0.0.1:53` if it names none.
 */
export function systemServers(): ServerAddress[] {
  const seen = new Set<string>();
  const servers: ServerAddress[] = [];
  for (const text of getServers()) {
    let server: ServerAddress;
    try {
      server = parseServer(text);
    } catch {
      continue;
    }
    const key = formatServer(server);
    // Deno lists each resolv.conf server twice (once per protocol).
    if (seen.has(key)) continue;
    seen.add(key);
    servers.push(server);
  }
  return servers.length > 0 ? servers : [parseServer("127.0.0.1")];
}

/** The server as `host:port` or `[v6]:port`. */
export function formatServer(server: ServerAddress): string {
  return server.family === 6 ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
}

/**
 * True when a datagram's source address is the server's. IPv6 addresses are
 * compared in canonical form, since `::1` and `0:0:0:0:0:0:0:1` are equal.
 */
export function isServerAddress(server: ServerAddress, address: string, port: number): boolean {
  if (port !== server.port) return false;
  const family = isIP(address);
  if (family === 0) return false;
  return canonicalHost(address, family) === server.host;
}

function canonicalHost(host: string, family: number): string {
  // The WHATWG URL parser serializes IPv6 literals canonically (RFC 5952).
  return family === 6 ? new URL(`http://[${host}]/`).hostname.slice(1, -1) : host;
}
