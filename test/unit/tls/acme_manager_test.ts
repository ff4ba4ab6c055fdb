/**
 * Tests of the ACME manager that need no CA: a node with `renew: false`
 * (several nodes share one host name) applies the shared certificate file
 * and each replacement of it, never orders, and ignores a file that does
 * not cover its names; the store writes 0600 files atomically.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readdir, stat, writeFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import type { AcmeConfig } from "../../../src/config/mod.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { AcmeManager, ChallengeTokens } from "../../../src/tls/acme.ts";
import { AcmeStore, type StoredCertificate } from "../../../src/tls/acme_store.ts";
import { TestCa } from "../../support/test_ca.ts";
import { makeTempDir, removeDir, until } from "../helpers.ts";

const config = (names: string[]): AcmeConfig => ({
  email: "postmaster@ours.test",
  names,
  // Nothing listens there: an order would fail, and be counted.
  directoryUrl: "https://127.0.0.1:9/dir",
  caPem: undefined,
  challenge: "http-01",
  httpListen: "127.0.0.1:0",
  httpsListen: "127.0.0.1:0",
  renew: false,
  retryInitialMs: 60_000,
});

describe("AcmeManager with renew: false", () => {
  let dir: string;
  let ca: TestCa;
  before(async () => {
    dir = await makeTempDir();
    ca = await TestCa.create();
  });
  after(async () => {
    await removeDir(dir);
    await ca.remove();
  });

  it("applies the shared file, then each new one, and never orders", async () => {
    const store = new AcmeStore(dir);
    const first = await ca.issue("mx.ours.test");
    await store.saveCertificate(first.key, first.cert);
    const applied: StoredCertificate[] = [];
    const counters = new Counters();
    const lines: string[] = [];
    const manager = new AcmeManager({
      config: config(["mx.ours.test"]),
      dataDir: dir,
      challenges: new ChallengeTokens(),
      logger: new Logger("debug", (line) => lines.push(line)),
      counters,
      onCertificate: (cert) => {
        applied.push(cert);
      },
      watchIntervalMs: 20,
    });
    await manager.start();
    assert.equal(applied.length, 1);
    assert.equal(applied[0]!.certPem.trim(), first.cert.trim());
    assert.equal(manager.status().state, "issued");
    assert.equal(manager.status().renews, false);

    // A certificate for other names (a half-configured node) is not applied.
    const wrong = await ca.issue("other.test");
    await store.saveCertificate(wrong.key, wrong.cert);
    // Each look at the file plans the next one (next_attempt_at moves). The
    // look planned second from now began after the save, so once it has
    // planned in turn, the wrong file has been read and judged.
    const planned = () => manager.status().next_attempt_at;
    const seen = planned();
    await until(() => planned() !== seen, 5000);
    const next = planned();
    await until(() => planned() !== next, 5000);
    assert.equal(applied.length, 1);

    const second = await ca.issue("mx.ours.test", "mta-sts.ours.test");
    await store.saveCertificate(second.key, second.cert);
    await until(() => applied.length === 2);
    assert.equal(applied[1]!.certPem.trim(), second.cert.trim());
    assert.equal(applied[1]!.keyPem.trim(), second.key.trim());
    await manager.close();
    assert.deepEqual([...counters.snapshot()].filter(([k]) => k.startsWith("acme")), []);
    await assert.rejects(manager.renewNow(), /does not renew/);
  });

  it("keeps the files at 0600 with no temporary file left", async () => {
    const store = new AcmeStore(dir);
    await store.saveAccountKey("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n");
    // A leftover of a crash is replaced, not an obstacle.
    await writeFile(`${store.certFile}.tmp`, "garbage");
    const pair = await ca.issue("mx.ours.test");
    await store.saveCertificate(pair.key, pair.cert);
    for (const file of [store.accountKeyFile, store.certFile]) {
      assert.equal((await stat(file)).mode & 0o777, 0o600, file);
    }
    assert.deepEqual((await readdir(store.dir)).sort(), ["account.key", "certificate.pem"]);
    assert.equal((await store.certificate())?.names.join(","), "mx.ours.test");
  });
});
