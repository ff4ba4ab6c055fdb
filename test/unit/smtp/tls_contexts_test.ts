/**
 * When a listener builds its TLS contexts. One that only offers STARTTLS
 * builds them at its first handshake: the first context a process makes
 * sets up its TLS library, megabytes of memory that a server with no TLS
 * session yet does not need (issue 17). The handshake still gets the
 * certificate in force then, whatever changed before it; an implicit-TLS
 * listener builds them at once, as smtp-server does.
 *
 * @module
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import type { Server } from "node:net";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { PosternSmtpServer } from "../../../src/smtp/server_class.ts";
import { LineClient } from "../../support/smtp_lines.ts";
import { type KeyPair, TestCa } from "../../support/test_ca.ts";

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : 0);
    });
  });
}

function close(server: PosternSmtpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function makeServer(pair: KeyPair, secure = false): PosternSmtpServer {
  return new PosternSmtpServer({
    greetingDelayMs: 0,
    commandTimeoutMs: 0,
    minDataRate: 1,
    hardErrorLimit: 0,
    logger: false,
    authOptional: true,
    secure,
    key: pair.key,
    cert: pair.cert,
  });
}

describe("PosternSmtpServer: TLS contexts", () => {
  let ca: TestCa;
  let first: KeyPair;
  let second: KeyPair;
  // Counts the contexts smtp-server makes, through the module object it calls.
  const createSecureContext = tls.createSecureContext;
  let built = 0;
  // While set, every build fails, as one with a certificate the library refuses.
  let failBuilds = false;
  let failedBuilds = 0;

  before(async () => {
    ca = await TestCa.create();
    first = await ca.issue("first.test");
    second = await ca.issue("second.test");
    (tls as { createSecureContext: typeof createSecureContext }).createSecureContext = (
      ...args: Parameters<typeof createSecureContext>
    ) => {
      if (failBuilds) {
        failedBuilds++;
        throw new Error("cannot build this context");
      }
      built++;
      return createSecureContext(...args);
    };
  });
  after(async () => {
    (tls as { createSecureContext: typeof createSecureContext }).createSecureContext =
      createSecureContext;
    await ca.remove();
  });

  it("a STARTTLS listener builds none until a client asks, then serves the certificate in force", {
    timeout: 60_000,
  }, async () => {
    built = 0;
    const smtp = makeServer(first);
    // A change of certificates before any handshake builds nothing either.
    smtp.updateSecureContext({ key: second.key, cert: second.cert });
    assert.equal(built, 0, "a context was built before any client asked for TLS");
    const port = await listen(smtp.server);
    const client = await LineClient.open("127.0.0.1", port);
    try {
      assert.match((await client.waitForLines(1))[0] ?? "", /^220 /);
      assert.match(await client.command("EHLO client.test"), /^250 /);
      assert.match(await client.command("STARTTLS"), /^220 /);
      await client.startTls();
      assert.ok(built > 0);
      assert.equal(client.peerFingerprint256(), new X509Certificate(second.cert).fingerprint256);
      assert.match(await client.command("EHLO client.test"), /^250 /);
    } finally {
      client.close();
      await close(smtp);
    }
  });

  it("a context that cannot be built fails that handshake alone, and is tried again at the next", {
    timeout: 60_000,
  }, async () => {
    const smtp = makeServer(first);
    const errors: string[] = [];
    smtp.on("error", (err: Error) => errors.push(err.message));
    const port = await listen(smtp.server);
    const starttls = async () => {
      const client = await LineClient.open("127.0.0.1", port);
      await client.waitForLines(1);
      await client.command("EHLO client.test");
      assert.match(await client.command("STARTTLS"), /^220 /);
      return client;
    };
    failBuilds = true;
    try {
      for (let attempt = 1; attempt <= 2; attempt++) {
        const before = failedBuilds;
        const refused = await starttls();
        await assert.rejects(refused.startTls());
        refused.close();
        // Once per look-up: the default context, and on Deno the SNI one too.
        assert.ok(failedBuilds > before, `attempt ${attempt}: the build was not tried again`);
      }
      assert.ok(errors.some((e) => e.includes("cannot build")), errors.join("; "));
      // The cause gone, the next handshake builds and gets the certificate.
      failBuilds = false;
      const client = await starttls();
      await client.startTls();
      assert.equal(client.peerFingerprint256(), new X509Certificate(first.cert).fingerprint256);
      client.close();
    } finally {
      failBuilds = false;
      await close(smtp);
    }
  });

  it("an implicit-TLS listener builds its contexts when it is created", async () => {
    built = 0;
    const smtp = makeServer(first, true);
    try {
      assert.ok(built > 0);
    } finally {
      await close(smtp);
    }
  });
});
