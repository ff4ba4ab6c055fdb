/**
 * The HTTPS port when the challenge is TLS-ALPN-01 (RFC 8737): one TLS
 * server that answers the CA's `acme-tls/1` handshakes with the challenge
 * certificate of the name asked for, and serves the MTA-STS policies to
 * everyone else over a minimal HTTP/1.1 (one GET per connection, then
 * close: all a policy fetch needs, RFC 8461 section 3.3).
 *
 * @module
 */

import { createSecureContext, createServer, type SecureContext, type TLSSocket } from "node:tls";
import type { ChallengeTokens } from "./acme.ts";

/** The running server. */
export interface AlpnServer {
  /** Bound address, `host:port`. */
  address: string;
  /** The certificate for ordinary HTTPS clients (a renewal). */
  setCertificate(cert: { certPem: string; keyPem: string }): void;
  close(): Promise<void>;
}

/** RFC 8737 section 6.2: the ALPN protocol of the challenge. */
const ACME_TLS = "acme-tls/1";
/** Largest request head read. */
const MAX_HEAD = 8 * 1024;

/**
 * Listens on `host:port` with `initial` as the certificate of ordinary
 * clients; `fetch` answers their requests.
 */
export async function startAlpnServer(options: {
  host: string;
  port: number;
  tokens: ChallengeTokens;
  initial: { certPem: string; keyPem: string };
  fetch: (request: Request) => Response | Promise<Response>;
}): Promise<AlpnServer> {
  let normal = createSecureContext({ cert: options.initial.certPem, key: options.initial.keyPem });
  const server = createServer({
    ALPNProtocols: [ACME_TLS, "http/1.1"],
    SNICallback: (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => {
      // While a challenge for the name is open, its certificate is shown
      // (the CA asks with acme-tls/1 only; the window lasts seconds).
      const challenge = options.tokens.alpn.get(name.toLowerCase());
      cb(
        null,
        challenge
          ? createSecureContext({ cert: challenge.certPem, key: challenge.keyPem })
          : normal,
      );
    },
    cert: options.initial.certPem,
    key: options.initial.keyPem,
  }, (socket) => {
    if (socket.alpnProtocol === ACME_TLS) {
      // RFC 8737 section 3: the handshake is the whole answer.
      socket.end();
      return;
    }
    void answer(socket, options.fetch);
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const bound = server.address();
  const port = typeof bound === "object" && bound ? bound.port : options.port;
  return {
    address: options.host.includes(":") ? `[${options.host}]:${port}` : `${options.host}:${port}`,
    setCertificate(cert) {
      normal = createSecureContext({ cert: cert.certPem, key: cert.keyPem });
      server.setSecureContext({ cert: cert.certPem, key: cert.keyPem });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Reads one request head, answers it, closes. */
async function answer(
  socket: TLSSocket,
  fetch: (request: Request) => Response | Promise<Response>,
): Promise<void> {
  socket.setTimeout(10_000, () => socket.destroy());
  socket.on("error", () => {});
  let head = "";
  const complete = await new Promise<boolean>((resolve) => {
    socket.on("data", (chunk: Uint8Array) => {
      head += new TextDecoder("latin1").decode(chunk);
      if (head.includes("\r\n\r\n")) resolve(true);
      else if (head.length > MAX_HEAD) resolve(false);
    });
    socket.on("close", () => resolve(false));
  });
  socket.removeAllListeners("data");
  if (!complete) {
    socket.destroy();
    return;
  }
  const lines = head.slice(0, head.indexOf("\r\n\r\n")).split("\r\n");
  const request = /^(GET|HEAD) (\/[\x21-\x7e]*) HTTP\/1\.[01]$/.exec(lines[0] ?? "");
  const host = lines.slice(1).find((l) => /^host:/i.test(l))?.slice(5).trim() ?? "";
  let response: Response;
  if (!request || !/^[A-Za-z0-9.\-:\[\]]+$/.test(host)) {
    response = new Response("bad request\n", { status: 400 });
  } else {
    response = await fetch(
      new Request(`https://${host}${request[2]}`, { method: request[1]!, headers: { host } }),
    );
  }
  const body = new Uint8Array(await response.arrayBuffer());
  const headers = [`HTTP/1.1 ${response.status} ${response.statusText || "OK"}`];
  response.headers.forEach((value, key) => headers.push(`${key}: ${value}`));
  headers.push(`content-length: ${body.byteLength}`, "connection: close", "", "");
  socket.write(headers.join("\r\n"));
  if (request?.[1] === "HEAD") socket.end();
  else socket.end(body);
}
