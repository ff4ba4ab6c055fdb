/**
 * `postern dns`: the records a domain needs, each checked against a real
 * DNS server on loopback (the tests' own), with the exit status telling
 * whether everything is published.
 *
 * @module
 */

import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { posternCommand, run, tempDir, writeTree } from "./harness.ts";

describe("postern dns", () => {
  let dns: TestDnsServer;
  let configDir: string;
  const dnsCommand = (...words: string[]) => {
    const [cmd, ...args] = posternCommand(["dns", ...words, "--config", configDir]);
    return run(cmd!, args);
  };

  before(async () => {
    dns = await startDnsServer({
      "ours.test": {
        MX: [{ priority: 10, exchange: "mx.ours.test" }],
        TXT: ["v=spf1 mx -all"],
      },
      "_dmarc.ours.test": { TXT: ["v=DMARC1; p=reject"] },
      "mta-sts.ours.test": { A: ["192.0.2.25"] },
      "_mta-sts.ours.test": { TXT: ["v=STSv1; id=old"] },
    });
    configDir = await tempDir("postern-dns-");
    await writeTree(configDir, {
      "postern.yaml": [
        "hostname: mx.ours.test",
        `dns: { servers: ["${dns.address}"], timeout: 2s }`,
        "tls:",
        "  acme: { email: postmaster@ours.test }",
        "domains:",
        "  ours.test:",
        "    mta_sts: { mode: enforce }",
        "",
      ].join("\n"),
    });
  });

  after(async () => {
    await dns?.close();
    await rm(configDir, { recursive: true, force: true });
  });

  it("prints every record with its state, and fails while one is missing or differs", async () => {
    const result = await dnsCommand();
    assert.equal(result.code, 1, result.stderr);
    const out = result.stdout;
    const state = (line: string) => {
      const at = out.indexOf(`${line}\n`);
      assert.ok(at >= 0, `no line ${line} in:\n${out}`);
      return /^\s*; (.*)$/m.exec(out.slice(at + line.length + 1))![1];
    };
    assert.equal(state("ours.test. IN MX 10 mx.ours.test."), "ok");
    assert.equal(state('ours.test. IN TXT "v=spf1 mx -all"'), "ok");
    assert.equal(
      state('_dmarc.ours.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@ours.test"'),
      "ok",
    );
    assert.equal(state("mta-sts.ours.test. IN CNAME mx.ours.test."), "ok");
    const id = /_mta-sts\.ours\.test\. IN TXT "v=STSv1; id=([A-Za-z0-9]{1,32})"/.exec(out)?.[1];
    assert.ok(id, out);
    assert.equal(
      state(`_mta-sts.ours.test. IN TXT "v=STSv1; id=${id}"`),
      "differs: found v=STSv1; id=old",
    );
    assert.equal(
      state('_smtp._tls.ours.test. IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@ours.test"'),
      "missing: no record",
    );

    // Published as printed (a fresh process: nothing cached), everything is ok.
    dns.zone["_mta-sts.ours.test"] = { TXT: [`v=STSv1; id=${id}`] };
    dns.zone["_smtp._tls.ours.test"] = { TXT: ["v=TLSRPTv1; rua=mailto:tlsrpt@ours.test"] };
    const again = await dnsCommand("ours.test");
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.doesNotMatch(again.stdout, /; (missing|differs|unknown)/);
    assert.equal(again.stdout.match(/; ok/g)?.length, 6);
  });

  it("refuses a domain that is not local", async () => {
    const result = await dnsCommand("elsewhere.test");
    assert.equal(result.code, 1);
    assert.match(result.stderr, /elsewhere\.test is not a local domain/);
  });
});
