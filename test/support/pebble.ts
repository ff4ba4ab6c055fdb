/**
 * Debian's `pebble`, a real ACME server (RFC 8555), started for a test on
 * loopback ports with its own configuration in a temporary directory. Its
 * API certificate comes from a throwaway {@linkcode TestCa} (the CA file is
 * what the client must trust); it validates challenges for real, resolving
 * names through the DNS server the test gives it (`-dnsserver`), at the
 * HTTP-01 and TLS-ALPN-01 ports the test chooses.
 *
 * @example
 * ```ts ignore
 * const pebble = await startPebble({ dnsServer: dns.address, httpPort, tlsPort });
 * // pebble.directoryUrl, pebble.caFile; pebble.roots() once it issued
 * await pebble.stop();
 * ```
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestCa } from "./test_ca.ts";
import { freePort } from "../e2e/harness.ts";

/** Where pebble is to validate challenges and find DNS. */
export interface PebbleOptions {
  /** `host:port` of the DNS server pebble asks. */
  dnsServer: string;
  /** Port pebble connects to for HTTP-01 (on the address the name resolves to). */
  httpPort: number;
  /** Port pebble connects to for TLS-ALPN-01. */
  tlsPort: number;
  /** Reuse these API and management ports (for a restart). */
  ports?: { api: number; management: number };
  /** Reuse this CA (for a restart: the client already trusts it). */
  ca?: TestCa;
}

/** A running pebble. */
export interface Pebble {
  /** The ACME directory URL. */
  directoryUrl: string;
  /** The PEM file of the CA that signed pebble's API certificate. */
  caFile: string;
  ca: TestCa;
  ports: { api: number; management: number };
  /** Pebble's output so far. */
  output(): string;
  /** PEM of pebble's current root, which signs what it issues. */
  root(): Promise<string>;
  /** Stops pebble (its directory stays while the CA is reused). */
  stop(): Promise<void>;
  /** Stops pebble and removes its files and CA. */
  remove(): Promise<void>;
}

/** Starts pebble and waits until its directory answers. */
export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  const ca = options.ca ?? await TestCa.create("Pebble API Test CA");
  const leaf = await ca.issue("localhost");
  const dir = await mkdtemp(join(tmpdir(), "postern-pebble-"));
  const ports = options.ports ?? { api: await freePort(), management: await freePort() };
  await writeFile(join(dir, "api.crt"), leaf.cert);
  await writeFile(join(dir, "api.key"), leaf.key);
  await writeFile(
    join(dir, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${ports.api}`,
        managementListenAddress: `127.0.0.1:${ports.management}`,
        certificate: join(dir, "api.crt"),
        privateKey: join(dir, "api.key"),
        httpPort: options.httpPort,
        tlsPort: options.tlsPort,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const child: ChildProcess = spawn(
    "pebble",
    ["-config", join(dir, "pebble.json"), "-dnsserver", options.dnsServer],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        PATH: "/usr/bin:/bin",
        // No random waits before validation, and no deliberate nonce
        // rejections: the test is about Postern, not about retries.
        PEBBLE_VA_NOSLEEP: "1",
        PEBBLE_WFE_NONCEREJECT: "0",
      },
    },
  );
  let output = "";
  child.stdout!.on("data", (c: Uint8Array) => output += new TextDecoder().decode(c));
  child.stderr!.on("data", (c: Uint8Array) => output += new TextDecoder().decode(c));
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  const directoryUrl = `https://localhost:${ports.api}/dir`;
  const get = (url: string) =>
    new Promise<string>((resolve, reject) => {
      const req = request(url, { ca: ca.cert, timeout: 5_000 }, (res) => {
        let body = "";
        res.on("data", (c: Uint8Array) => body += new TextDecoder().decode(c));
        res.on("end", () =>
          res.statusCode === 200
            ? resolve(body)
            : reject(new Error(`GET ${url}: ${res.statusCode}`)));
      });
      req.on("error", reject);
      req.on("timeout", () =>
        req.destroy(new Error(`GET ${url} timed out`)));
      req.end();
    });
  // Bounded wait for the API: 150 tries, 100 ms apart.
  let ready = false;
  for (let i = 0; i < 150 && child.exitCode === null; i++) {
    try {
      await get(directoryUrl);
      ready = true;
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  if (!ready) {
    child.kill("SIGKILL");
    throw new Error(`pebble did not start:\n${output}`);
  }
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  return {
    directoryUrl,
    caFile: ca.certFile,
    ca,
    ports,
    output: () => output,
    root: () => get(`https://localhost:${ports.management}/roots/0`),
    stop: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
    remove: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
      await ca.remove();
    },
  };
}
