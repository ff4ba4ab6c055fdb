import assert from "node:assert/strict";
import { pollUntil } from "../../support/within.ts";
import { mkdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  chooseSigningKey,
  type DkimKey,
  dkimKeyDir,
  DkimKeyError,
  DkimKeyring,
  formatKeyStatus,
  generateDkimKey,
  loadDkimKeys,
  lookUpRecord,
} from "../../../src/auth/mod.ts";
import { DnsResolver } from "../../../src/dns/mod.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";
import { startDnsServer, type TestDnsServer } from "../../support/dns_server.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

describe("DKIM keys and their records", () => {
  let dns: TestDnsServer;
  let resolver: DnsResolver;
  let dir: string;
  let keys: DkimKey[];

  before(async () => {
    // No SOA: negative answers are not cached, so a record removed is seen at once.
    dns = await startDnsServer({ "ours.test": { TXT: ["v=spf1 -all"] } }, { soa: false });
    resolver = new DnsResolver({ servers: [dns.address], timeoutMs: 1000, failureTtlMs: 0 });
    dir = await makeTempDir();
    const keyDir = dkimKeyDir(dir, "ours.test");
    // "ed1" sorts after "20261203" but is older: the date of the file decides.
    for (
      const [selector, when, algorithm] of [
        ["ed1", "2026-01-01T00:00:00Z", "ed25519"],
        ["20261203", "2026-12-03T00:00:00Z", "rsa"],
      ] as const
    ) {
      const key = await generateDkimKey({ dir: keyDir, domain: "ours.test", selector, algorithm });
      await utimes(key.path, new Date(when), new Date(when));
    }
    keys = loadDkimKeys(keyDir, "ours.test");
  });
  after(async () => {
    await dns?.close();
    if (dir) await removeDir(dir);
  });

  const byName = (selector: string) => keys.find((k) => k.selector === selector)!;
  const publish = (key: DkimKey, record = key.record) => {
    dns.zone[`${key.selector}._domainkey.ours.test`] = { TXT: [record], ttl: 0 };
  };

  it("loadDkimKeys() throws, naming the path, for a folder or key it cannot read", async () => {
    const notDir = join(dir, "file-not-folder");
    await writeFile(notDir, "x");
    assert.throws(() => loadDkimKeys(notDir, "ours.test"), (err) => {
      assert.ok(err instanceof DkimKeyError);
      assert.equal(err.path, notDir);
      assert.match(err.message, /cannot read the DKIM key folder/);
      return true;
    });
    const keyIsDir = join(dir, "odd-dkim");
    await mkdir(join(keyIsDir, "s1.pem"), { recursive: true });
    assert.throws(() => loadDkimKeys(keyIsDir, "ours.test"), /s1\.pem: cannot read the DKIM key/);
  });

  it("lookUpRecord() tells published, missing and mismatched apart; a SERVFAIL throws", async () => {
    const ed = byName("ed1");
    assert.equal(await lookUpRecord(resolver.resolve, "ours.test", ed), "missing");
    publish(ed);
    assert.equal(await lookUpRecord(resolver.resolve, "ours.test", ed), "published");
    publish(ed, byName("20261203").record);
    assert.equal(await lookUpRecord(resolver.resolve, "ours.test", ed), "mismatched");
    publish(ed, "v=DKIM1; k=ed25519; p=");
    assert.equal(await lookUpRecord(resolver.resolve, "ours.test", ed), "mismatched");
    dns.zone["ed1._domainkey.ours.test"]!.mode = "servfail";
    await assert.rejects(lookUpRecord(resolver.resolve, "ours.test", ed));
    delete dns.zone["ed1._domainkey.ours.test"];
  });

  it("lookUpRecord(): a record whose k= names another key type is mismatched", async () => {
    // RFC 6376 section 3.6.1: k= is the key type (rsa when absent); a
    // verifier reads p= as that type, so our signatures cannot verify.
    // Tag names are case-sensitive (section 3.2): K= is no k=.
    try {
      const rsa = byName("20261203");
      const ed = byName("ed1");
      publish(rsa, rsa.record.replace("k=rsa", "k=ed25519"));
      assert.equal(await lookUpRecord(resolver.resolve, "ours.test", rsa), "mismatched");
      publish(rsa, rsa.record.replace("k=rsa; ", ""));
      assert.equal(await lookUpRecord(resolver.resolve, "ours.test", rsa), "published");
      publish(ed, ed.record.replace("k=ed25519; ", ""));
      assert.equal(await lookUpRecord(resolver.resolve, "ours.test", ed), "mismatched");
      publish(ed, ed.record.replace("k=ed25519", "K=ed25519"));
      assert.equal(await lookUpRecord(resolver.resolve, "ours.test", ed), "mismatched");
      publish(ed, ed.record.replace("v=DKIM1; ", "v=DKIM1; t=y; n=note; "));
      assert.equal(await lookUpRecord(resolver.resolve, "ours.test", ed), "published");
    } finally {
      delete dns.zone["20261203._domainkey.ours.test"];
      delete dns.zone["ed1._domainkey.ours.test"];
    }
  });

  it("chooseSigningKey(): the newest published key by file date, or the pinned one", () => {
    const all = () => "published" as const;
    assert.equal(chooseSigningKey(keys, all, undefined)?.selector, "20261203");
    const onlyEd = (k: DkimKey) => k.selector === "ed1" ? "published" as const : "missing" as const;
    assert.equal(chooseSigningKey(keys, onlyEd, undefined)?.selector, "ed1");
    assert.equal(chooseSigningKey(keys, () => "unknown", undefined), undefined);
    assert.equal(chooseSigningKey(keys, () => "missing", "ed1")?.selector, "ed1");
  });

  it("DkimKeyring: a new key signs once published; the old one signs until then; a lost record warns", async () => {
    const lines: string[] = [];
    const counters = new Counters();
    const keyring = new DkimKeyring({
      resolve: () => resolver.resolve,
      logger: new Logger("info", (line) => lines.push(line)),
      counters,
    });
    const domain = { name: "ours.test", dkimKeys: keys, dkimSelector: undefined };
    publish(byName("ed1"));
    await keyring.update([domain]);
    // The newer key's record is not there yet: the older key signs.
    assert.equal(keyring.signingKey("ours.test")?.selector, "ed1");
    assert.match(formatKeyStatus(keyring.status()), /20261203 +rsa .* missing +no \(signs once/);
    publish(byName("20261203"));
    await keyring.check();
    assert.equal(keyring.signingKey("ours.test")?.selector, "20261203");
    // Its record disappears: a warning, a count, and the key still published signs.
    delete dns.zone["20261203._domainkey.ours.test"];
    await keyring.check();
    assert.equal(keyring.signingKey("ours.test")?.selector, "ed1");
    assert.equal(
      counters.get("dkim_record_problems_total", { domain: "ours.test", problem: "disappeared" }),
      1,
    );
    assert.ok(
      lines.some((l) => /level=warn .*DKIM record of the signing key disappeared/.test(l)),
      lines.join("\n"),
    );
    // A record that changes to another key counts as changed.
    publish(byName("ed1"), byName("20261203").record);
    await keyring.check();
    assert.equal(
      counters.get("dkim_record_problems_total", { domain: "ours.test", problem: "changed" }),
      1,
    );
    assert.equal(keyring.signingKey("ours.test"), undefined);
    // A pinned selector signs whatever DNS says.
    await keyring.update([{ ...domain, dkimSelector: "20261203" }]);
    assert.equal(keyring.signingKey("ours.test")?.selector, "20261203");
    keyring.close();
  });

  it("DkimKeyring: records that could not be looked up at start are looked up again soon, with a warning", async () => {
    // Left to the hourly check, submitted mail went out unsigned for an hour.
    const lines: string[] = [];
    let failing = true;
    const keyring = new DkimKeyring({
      resolve: () => (name, rrtype) =>
        failing
          ? Promise.reject(Object.assign(new Error("SERVFAIL"), { code: "ESERVFAIL" }))
          : resolver.resolve(name, rrtype),
      logger: new Logger("info", (line) => lines.push(line)),
      counters: new Counters(),
      retryMs: 20,
    });
    try {
      publish(byName("ed1"));
      publish(byName("20261203"));
      await keyring.update([{ name: "ours.test", dkimKeys: keys, dkimSelector: undefined }]);
      assert.equal(keyring.signingKey("ours.test"), undefined);
      assert.ok(
        lines.some((l) => /level=warn .*DKIM record lookup failed/.test(l)),
        lines.join("\n"),
      );
      failing = false;
      await pollUntil(
        () => keyring.signingKey("ours.test") !== undefined,
        "a signing key once DNS answers",
      );
      assert.equal(keyring.signingKey("ours.test")?.selector, "20261203");
    } finally {
      keyring.close();
    }
  });

  it("DkimKeyring: close() ends the retries of records never seen", async () => {
    let calls = 0;
    const keyring = new DkimKeyring({
      resolve: () => () => {
        calls++;
        return Promise.reject(Object.assign(new Error("SERVFAIL"), { code: "ESERVFAIL" }));
      },
      logger: new Logger("error", () => {}),
      counters: new Counters(),
      retryMs: 10,
    });
    await keyring.update([{ name: "ours.test", dkimKeys: keys, dkimSelector: undefined }]);
    await pollUntil(() => calls > keys.length, "a retry");
    keyring.close();
    await keyring.check();
    const seen = calls;
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(calls, seen);
  });
});
