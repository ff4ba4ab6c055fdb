/**
 * Message authentication end to end with other `auth:` settings than
 * auth_test.ts's server: `auth.dmarc_reject: false` (a DMARC p=reject
 * failure is accepted and tagged), and the default trusted networks (a
 * loopback client is not checked at all, with a DNS server of its own to
 * show that nothing is asked). Each test starts its own server.
 */

import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { configFiles, delivered, field, message, replyAfter, ZONE } from "./auth_fixtures.ts";
import { cleanup, run, type Server, startServer, tempDir } from "./harness.ts";

describe("message authentication end to end", () => {
  let dns: TestDnsServer;
  let dir: string;
  let files = 0;

  before(async () => {
    dir = await tempDir("postern-auth-");
    dns = await startDnsServer(structuredClone(ZONE));
  });
  after(async () => {
    if (dns) await dns.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // --- DMARC with dmarc_reject: false -------------------------------------

  it("auth.dmarc_reject: false accepts a p=reject failure with dmarc=fail", async () => {
    const lenient = await startServer({
      config: configFiles(dns.address, "  trusted_networks: []\n  dmarc_reject: false"),
    });
    try {
      const path = join(dir, `message-${files++}.eml`);
      await writeFile(path, message("bob@dmarc-reject.test", "DMARC lenient"));
      const result = await run("swaks", [
        "--server",
        `127.0.0.1:${lenient.port}`,
        "--helo",
        "client.test",
        "--from",
        "bob@pass.test",
        "--to",
        "alice@example.test",
        "--data",
        path,
      ]);
      const data = replyAfter(result.stdout, /^\.$/);
      assert.match(data, /^250 2\.0\.0 Ok: queued as \w+$/, result.stdout);
      const qid = /queued as (\w+)/.exec(data)![1]!;
      const text = await delivered(lenient, qid);
      assert.match(
        field(text, "Authentication-Results")!,
        /; dmarc=fail \(p=REJECT arc=none\) policy\.dmarc=reject header\.from=dmarc-reject\.test header\.d=dmarc-reject\.test$/,
      );
      assert.match(
        await lenient.waitForLog(new RegExp(`qid=${qid} event=queued `)),
        / spf=pass dkim=none dmarc=fail$/,
      );
    } finally {
      await cleanup(lenient);
    }
  });
});

describe("trusted networks", () => {
  it("does not check a loopback client with the default trusted_networks", async () => {
    // A DNS server of its own, with the same records: any query would show.
    const dns = await startDnsServer(structuredClone(ZONE));
    let server: Server | undefined;
    try {
      const files = configFiles(dns.address, "  verify: true");
      server = await startServer({ config: files });
      const result = await run("swaks", [
        "--server",
        `127.0.0.1:${server.port}`,
        "--helo",
        "client.test",
        "--from",
        "bob@fail.test",
        "--to",
        "alice@example.test",
      ]);
      // fail.test's -all would refuse this client if it were checked.
      assert.match(replyAfter(result.stdout, /^MAIL FROM:/), /^250 /, result.stdout);
      const data = replyAfter(result.stdout, /^\.$/);
      assert.match(data, /^250 2\.0\.0 Ok: queued as \w+$/, result.stdout);
      const qid = /queued as (\w+)/.exec(data)![1]!;
      const text = await delivered(server, qid);
      assert.equal(field(text, "Received-SPF"), undefined);
      assert.equal(field(text, "Authentication-Results"), undefined);
      const log = await server.waitForLog(new RegExp(`qid=${qid} event=queued `));
      assert.doesNotMatch(log, / (spf|dkim|dmarc)=/);
      assert.deepEqual(dns.queries, []);
    } finally {
      if (server) await cleanup(server);
      await dns.close();
    }
  });
});
