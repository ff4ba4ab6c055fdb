/**
 * Outbound delivery with MTA-STS in enforce mode (RFC 8461), end to end: the
 * policy fetched over HTTPS from a server whose certificate a test CA
 * signed, the MX host the policy does not name skipped, delivery over
 * verified TLS, and the policy cache; without a policy, the preferred MX.
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer, type Server as HttpsServer } from "node:https";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import { TestCa } from "../support/test_ca.ts";
import { cleanup, freePort, type Server } from "./harness.ts";
import { commonYaml, queued, startWith, submit } from "./outbound_relay_setup.ts";

/**
 * A random loopback address outside 127.0.0.0/24 (which other tests name),
 * such as 127.83.17.202: all of 127.0.0.0/8 reaches this host on Linux.
 */
function randomLoopback(): string {
  const byte = () => 1 + Math.floor(Math.random() * 254);
  return `127.${byte()}.${byte()}.${byte()}`;
}

describe("outbound: MTA-STS in enforce mode (RFC 8461)", () => {
  const policy = "version: STSv1\nmode: enforce\nmx: good.sts.test\nmax_age: 86400\n";
  let ca: TestCa;
  let dns: TestDnsServer;
  let https: HttpsServer;
  const fetched: Array<{ host: string | undefined; url: string | undefined }> = [];
  let bad: SmtpReceiver;
  let good: SmtpReceiver;
  let server: Server;
  let submission: number;
  /** Where the policy is served: port 443 of an address drawn for this run. */
  let policyAddress = "";

  before(async () => {
    ca = await TestCa.create();
    const policyHost = await ca.issue("mta-sts.sts.test");
    https = createServer({ key: policyHost.key, cert: policyHost.cert }, (req, res) => {
      fetched.push({ host: req.headers.host, url: req.url });
      if (req.url !== "/.well-known/mta-sts.txt") {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "text/plain" }).end(policy);
    });
    // The policy fetch always goes to port 443 (RFC 8461 section 3.3), so
    // the address varies instead: two runs at once draw the same one with a
    // chance of one in 16 million, and then draw again.
    for (let attempt = 1; policyAddress === ""; attempt++) {
      const address = randomLoopback();
      try {
        await new Promise<void>((resolve, reject) => {
          https.once("error", reject);
          https.listen(443, address, () => {
            https.off("error", reject);
            resolve();
          });
        });
        policyAddress = address;
      } catch (err) {
        if ((err as { code?: string }).code !== "EADDRINUSE" || attempt >= 10) throw err;
      }
    }
    const port = await freePort();
    submission = await freePort();
    bad = await SmtpReceiver.start({ host: "127.0.0.33", port, starttls: false });
    good = await SmtpReceiver.start({
      host: "127.0.0.34",
      port,
      tls: await ca.issue("good.sts.test"),
    });
    const mx = [{ priority: 10, exchange: "bad.sts.test" }, {
      priority: 20,
      exchange: "good.sts.test",
    }];
    dns = await startDnsServer({
      "sts.test": { MX: mx },
      "_mta-sts.sts.test": { TXT: ["v=STSv1; id=1"] },
      "mta-sts.sts.test": { A: [policyAddress] },
      "bad.sts.test": { A: ["127.0.0.33"] },
      "good.sts.test": { A: ["127.0.0.34"] },
      // The same MX hosts without a policy: the preferred one gets the mail.
      "nosts.test": { MX: mx },
    });
    server = await startWith(
      [
        ...commonYaml(submission, dns),
        "outbound:",
        `  port: ${port}`,
        "  connect_timeout: 3s",
        "  mta_sts: true",
      ],
      {},
      // Deno takes extra roots from DENO_CERT; Bun and Node from NODE_EXTRA_CA_CERTS.
      { DENO_CERT: ca.certFile, NODE_EXTRA_CA_CERTS: ca.certFile },
    );
  });
  after(async () => {
    await cleanup(server);
    await Promise.all([
      bad.close(),
      good.close(),
      new Promise<void>((resolve) => https.close(() => resolve())),
    ]);
    await dns.close();
    await ca.remove();
  });

  it("without a policy, uses the preferred MX host", async () => {
    const id = queued(await submit(submission, "alice@example.test", "p@nosts.test"));
    await bad.waitForMessages(1);
    assert.deepEqual(bad.messages.at(-1)!.to, ["p@nosts.test"]);
    await server.waitForLog(new RegExp(`qid=${id} event=delivery .*result=sent`));
  });

  it("skips the MX host the policy does not name and delivers over verified TLS", async () => {
    const badBefore = bad.connections.length;
    const id = queued(await submit(submission, "alice@example.test", "q@sts.test"));
    const line = await server.waitForLog(new RegExp(`qid=${id} event=delivery `), 30_000);
    assert.match(line, /result=sent/, `policy fetches: ${JSON.stringify(fetched)}`);
    await good.waitForMessages(1);
    assert.deepEqual(good.messages.at(-1)!.to, ["q@sts.test"]);
    assert.equal(good.messages.at(-1)!.secure, true, "STARTTLS to the policy's MX host");
    assert.equal(bad.connections.length, badBefore, "the host outside the policy was not tried");
    assert.deepEqual(fetched.at(-1), { host: "mta-sts.sts.test", url: "/.well-known/mta-sts.txt" });
    const cache = JSON.parse(await readFile(join(server.dataDir, "mta-sts.json"), "utf8"));
    assert.equal(cache.version, 1);
    assert.equal(cache.policies["sts.test"].id, "1");
    assert.equal(cache.policies["sts.test"].mode, "enforce");
    assert.deepEqual(cache.policies["sts.test"].mx, ["good.sts.test"]);
    assert.equal(cache.policies["nosts.test"], undefined);
  });
});
