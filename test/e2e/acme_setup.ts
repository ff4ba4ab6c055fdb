/**
 * What the ACME end-to-end tests share (acme_test.ts, acme_tls_alpn_test.ts):
 * the host name the certificates are for, the admin API of a running
 * Postern, a poll, openssl s_client with STARTTLS verifying the chain, and
 * the MTA-STS policy fetched over HTTPS.
 *
 * @module
 */

import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { request } from "node:https";
import { join } from "node:path";
import type { Server } from "./harness.ts";

/** The host name Postern asks the CA to certify. */
export const HOST = "mail.example.test";

/** Where the admin API of `server` listens, and its token. */
async function adminOf(server: Server): Promise<{ base: string; token: string }> {
  const state = JSON.parse(await readFile(join(server.dataDir, "run", "admin.json"), "utf8"));
  const token = (await readFile(join(server.dataDir, "admin.token"), "utf8")).trim();
  return { base: `http://${state.address}`, token };
}

/** Calls the admin API of `server` with its token. */
export async function admin(server: Server, method: string, path: string): Promise<Response> {
  const { base, token } = await adminOf(server);
  return await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
}

/** Polls `check` every 250 ms for at most `ms`. */
export async function until<T>(
  what: string,
  ms: number,
  check: () => Promise<T | undefined>,
): Promise<T> {
  for (let i = 0; i < ms / 250; i++) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** openssl s_client with STARTTLS, verifying against `caFile`: exit code and output. */
export function sClient(server: Server, caFile: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      "openssl",
      [
        "s_client",
        "-connect",
        `${server.host}:${server.port}`,
        "-starttls",
        "smtp",
        "-servername",
        HOST,
        "-verify_hostname",
        HOST,
        "-CAfile",
        caFile,
        "-verify_return_error",
        "-showcerts",
      ],
      { timeout: 20_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number(err.code ?? 1) : 0, out: `${stdout}\n${stderr}` }),
    ).stdin!.end("QUIT\r\n");
  });
}

/** GETs the MTA-STS policy from `port` of 127.0.0.1 as `host`, trusting `ca`. */
export function getPolicy(
  port: number,
  ca: string,
  host: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      path: "/.well-known/mta-sts.txt",
      servername: host,
      headers: { host },
      ca,
      timeout: 10_000,
    }, (res) => {
      let body = "";
      res.on("data", (c: Uint8Array) => body += new TextDecoder().decode(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}
