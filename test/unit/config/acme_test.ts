/**
 * Tests of `tls.acme` and `domains.<d>.mta_sts` in `postern.yaml`: the
 * defaults, the certificate's names, and the errors.
 *
 * @module
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ConfigError, DEFAULTS, loadConfig } from "../../../src/config/mod.ts";
import { makeTempDir, removeDir, writeTree } from "../helpers.ts";

describe("tls.acme and mta_sts", () => {
  let dir: string;
  before(async () => dir = await makeTempDir());
  after(() => removeDir(dir));

  const load = async (yaml: string[], files: Record<string, string> = {}) => {
    await writeTree(dir, { "postern.yaml": yaml.join("\n") + "\n", ...files });
    return await loadConfig({ configDir: dir, dataDir: `${dir}/data` });
  };

  it("is off by default", async () => {
    const config = await load(["hostname: mx.ours.test"]);
    assert.equal(config.acme, undefined);
  });

  it("takes the defaults, and adds mta-sts.<domain> to the names", async () => {
    const config = await load([
      "hostname: MX.ours.test",
      "tls:",
      "  acme:",
      "    email: postmaster@ours.test",
      "domains:",
      "  ours.test:",
      "    mta_sts: { mode: testing }",
      "  plain.test: {}",
    ]);
    assert.deepEqual(config.acme, {
      email: "postmaster@ours.test",
      names: ["mx.ours.test", "mta-sts.ours.test"],
      directoryUrl: DEFAULTS.acme.directoryUrl,
      caPem: undefined,
      challenge: "http-01",
      httpListen: "0.0.0.0:80",
      httpsListen: "0.0.0.0:443",
      renew: true,
      retryInitialMs: 60_000,
    });
    assert.deepEqual(config.domains.get("ours.test")?.mtaSts, {
      mode: "testing",
      maxAgeSeconds: 604_800,
      mx: ["mx.ours.test"],
      tlsRptRua: "mailto:tlsrpt@ours.test",
    });
    assert.equal(config.domains.get("plain.test")?.mtaSts, undefined);
  });

  it("reads the CA file and explicit settings", async () => {
    const config = await load([
      "tls:",
      "  acme:",
      "    email: a@ours.test",
      "    names: [Mail.ours.test]",
      "    directory: https://localhost:14000/dir",
      "    ca_file: ca.pem",
      "    challenge: tls-alpn-01",
      "    renew: false",
      "domains:",
      "  ours.test:",
      "    mta_sts: { mode: enforce, max_age: 1d, mx: [mx1.ours.test, '*.mx.ours.test'] }",
    ], { "ca.pem": "-----BEGIN CERTIFICATE-----\n" });
    assert.deepEqual(config.acme?.names, ["mail.ours.test"]);
    assert.equal(config.acme?.caPem, "-----BEGIN CERTIFICATE-----\n");
    assert.equal(config.acme?.challenge, "tls-alpn-01");
    assert.equal(config.acme?.renew, false);
    assert.deepEqual(config.domains.get("ours.test")?.mtaSts?.mx, [
      "mx1.ours.test",
      "*.mx.ours.test",
    ]);
    assert.equal(config.domains.get("ours.test")?.mtaSts?.maxAgeSeconds, 86_400);
  });

  it("refuses mta_sts without tls.acme, a bad email and a bad mode", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["domains:", "  ours.test:", "    mta_sts: { mode: enforce }"], /needs tls\.acme/],
      [["tls:", "  acme:", "    email: nobody"], /tls\.acme\.email must be an email address/],
      [
        ["tls:", "  acme: { email: a@b.test }", "domains:", "  o.test: { mta_sts: { mode: on } }"],
        /must be testing, enforce or none/,
      ],
      [["tls:", "  acme: { email: a@b.test, ca_file: gone.pem }"], /ca_file is missing/],
    ];
    for (const [yaml, message] of cases) {
      await assert.rejects(
        load(yaml),
        (err) => err instanceof ConfigError && message.test(err.message),
      );
    }
  });
});
