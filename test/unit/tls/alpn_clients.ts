/**
 * The clients of the TLS-ALPN-01 server tests: plain and TLS connections
 * bound to a chosen loopback address (Linux routes all of 127/8 to
 * loopback, so 127.0.0.1 and 127.0.0.2 act as two hosts), each keeping
 * what it received until it closed, and a policy fetch.
 *
 * @module
 */

import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { within } from "../../support/within.ts";

/** The MTA-STS name the server's ordinary certificate carries. */
export const NAME = "mta-sts.example.test";
/** The name a challenge is opened for. */
export const CHALLENGE_NAME = "mx.alpn.test";
/** Two client hosts. */
export const A = "127.0.0.1";
export const B = "127.0.0.2";
/** The request for the policy. */
export const GET = `GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: ${NAME}\r\n\r\n`;

/** The port of a `host:port` address. */
export function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** A client socket and everything it received until it closed. */
export interface Client<S extends Socket> {
  socket: S;
  closed: Promise<string>;
}

/** Keeps what `socket` receives, for `closed`. */
export function track<S extends Socket>(socket: S): Client<S> {
  let text = "";
  socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
  socket.on("error", () => {});
  return { socket, closed: new Promise((resolve) => socket.on("close", () => resolve(text))) };
}

/** A TCP connection from `from` that sends only `bytes`, if any: resolves once connected. */
export function plain(address: string, from: string, bytes?: Uint8Array): Promise<Client<Socket>> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port: portOf(address), host: "127.0.0.1", localAddress: from });
    const client = track(socket);
    socket.once("connect", () => {
      if (bytes) socket.write(bytes);
      resolve(client);
    });
    socket.once("error", reject);
  });
}

/** A TLS connection from `from` for `NAME` offering `alpn`; resolves once its handshake is done. */
export async function secure(
  address: string,
  from: string,
  ca: string,
  alpn = ["http/1.1"],
  extra: { maxVersion?: "TLSv1.2"; allowHalfOpen?: boolean } = {},
): Promise<Client<TLSSocket>> {
  const below = await plain(address, from);
  return await new Promise((resolve, reject) => {
    const socket = tlsConnect({
      socket: below.socket,
      servername: NAME,
      ca,
      ALPNProtocols: alpn,
      ...extra,
    });
    const client = track(socket);
    socket.once("secureConnect", () => resolve(client));
    socket.once("close", () => reject(new Error("closed before the handshake completed")));
  });
}

/** A GET for the policy over TLS from `from`: all the server sent until it closed. */
export async function fetchPolicy(address: string, from: string, ca: string): Promise<string> {
  const client = await within(secure(address, from, ca), 10_000, `a handshake from ${from}`);
  client.socket.write(GET);
  return await within(client.closed, 10_000, `an answer to a GET from ${from}`);
}
