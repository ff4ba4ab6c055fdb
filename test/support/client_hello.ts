/**
 * The first record a TLS client of the runtime at hand sends: its
 * ClientHello, captured over loopback by a plain TCP server.
 *
 * @module
 */

import { createServer, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { within } from "./within.ts";

/** The first record the runtime's TLS client sends, offering `alpn` (no ALPN when undefined). */
export async function capturedHello(
  alpn: string[] | undefined,
  servername = "hello.tls.test",
): Promise<Uint8Array> {
  let got: (bytes: Uint8Array) => void = () => {};
  const captured = new Promise<Uint8Array>((resolve) => got = resolve);
  const server = createServer((socket: Socket) => {
    let bytes = new Uint8Array(0);
    socket.on("error", () => {});
    socket.on("data", (chunk: Uint8Array) => {
      bytes = Uint8Array.from([...bytes, ...chunk]);
      const end = bytes.length >= 5 ? 5 + ((bytes[3]! << 8) | bytes[4]!) : Infinity;
      if (bytes.length >= end) {
        got(bytes.subarray(0, end));
        socket.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const client = tlsConnect({
    host: "127.0.0.1",
    port: (server.address() as { port: number }).port,
    servername,
    ...(alpn ? { ALPNProtocols: alpn } : {}),
  });
  client.on("error", () => {});
  try {
    return await within(captured, 10_000, "a ClientHello");
  } finally {
    client.destroy();
    server.close();
  }
}
