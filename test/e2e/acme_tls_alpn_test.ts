/**
 * ACME with the TLS-ALPN-01 challenge (RFC 8737) against a real CA (Debian's
 * pebble) on loopback: on Bun, the certificate obtained on Postern's HTTPS
 * port, checked by openssl, and the MTA-STS policy served there; on Deno,
 * start-up refuses the challenge plainly.
 *
 * @module
 */

import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parsePolicy } from "mailauth/lib/mta-sts.js";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { type Pebble, startPebble } from "../support/pebble.ts";
import { admin, getPolicy, HOST, sClient, until } from "./acme_setup.ts";
import {
  cleanup,
  freePort,
  posternCommand,
  run,
  type Server,
  startServer,
  TARGET,
  tempDir,
} from "./harness.ts";

describe("ACME with the TLS-ALPN-01 challenge (RFC 8737)", () => {
  let dns: TestDnsServer;
  let pebble: Pebble;
  let server: Server | undefined;
  let httpsPort: number;
  let rootDir: string;
  let configYaml: string;

  before(async () => {
    dns = await startDnsServer({
      [HOST]: { A: ["127.0.0.1"] },
      "mta-sts.example.test": { A: ["127.0.0.1"] },
    });
    httpsPort = await freePort();
    // Pebble validates TLS-ALPN-01 on Postern's HTTPS port; HTTP-01 on a
    // port where nothing listens, so only TLS-ALPN-01 can pass.
    pebble = await startPebble({
      dnsServer: dns.address,
      httpPort: await freePort(),
      tlsPort: httpsPort,
    });
    rootDir = await tempDir("postern-acme-root-");
    configYaml = [
      `hostname: ${HOST}`,
      "tls:",
      "  acme:",
      "    email: postmaster@example.test",
      `    directory: ${pebble.directoryUrl}`,
      `    ca_file: ${pebble.caFile}`,
      "    challenge: tls-alpn-01",
      `    https_listen: 127.0.0.1:${httpsPort}`,
      "    retry_initial: 1s",
      "domains:",
      "  example.test:",
      "    mta_sts: { mode: testing, max_age: 2d }",
      "",
    ].join("\n");
  });

  after(async () => {
    await cleanup(server);
    await pebble?.remove();
    await dns?.close();
    if (rootDir) await rm(rootDir, { recursive: true, force: true });
  });

  it("obtains the certificate and serves MTA-STS on that port (Bun); Deno refuses at start", async () => {
    if (TARGET === "deno") {
      // Deno's TLS server stalls on the challenge certificate's critical
      // extension: start-up says so plainly instead of failing every order.
      const configDir = await tempDir("postern-config-");
      const dataDir = await tempDir("postern-data-");
      await writeFile(join(configDir, "postern.yaml"), configYaml);
      const [cmd, ...args] = posternCommand([
        "serve",
        "--config",
        configDir,
        "--data",
        dataDir,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "off",
      ]);
      const result = await run(cmd!, args);
      await rm(configDir, { recursive: true, force: true });
      await rm(dataDir, { recursive: true, force: true });
      assert.equal(result.code, 1);
      assert.match(result.stderr, /tls-alpn-01 needs the Bun build/);
      return;
    }
    const running = server = await startServer({ config: { "postern.yaml": configYaml } });
    const status = await until("the certificate", 90_000, async () => {
      const s = await (await admin(running, "GET", "/status")).json();
      return s.acme.state === "issued" ? s.acme : undefined;
    });
    assert.equal(status.https_listen, `127.0.0.1:${httpsPort}`);
    assert.equal(status.http_listen, null);
    const root = await pebble.root();
    const rootFile = join(rootDir, "root.pem");
    await writeFile(rootFile, root);
    const checked = await sClient(running, rootFile);
    assert.equal(checked.code, 0, checked.out);
    const answer = await getPolicy(httpsPort, root, "mta-sts.example.test");
    assert.equal(answer.status, 200, answer.body);
    const policy = parsePolicy(answer.body);
    assert.equal(policy.mode, "testing");
    assert.equal(policy.maxAge, 172_800);
  });
});
