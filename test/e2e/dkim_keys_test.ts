/**
 * DKIM keys end to end (issue 16): a new key signs only once its record is
 * published and matches (the previous key signs until then); `postern dkim
 * keygen` and `postern dkim status`; a signing key whose record disappears
 * is a warning and a metric; an unreadable key folder or key stops
 * start-up and `postern check`, and a reload that meets one keeps the last
 * good policy, with a log line naming the path and a metric.
 */

import assert from "node:assert/strict";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { dkimKeyDir, generateDkimKey, loadDkimKeys } from "../../src/auth/mod.ts";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  posternCommand,
  queuedId,
  run,
  type Server,
  startServer,
  submitMail,
  tempDir,
  writeTree,
} from "./harness.ts";

const LOGIN = { user: "alice@example.test", password: "pw-alice-1" };

describe("DKIM key lifecycle", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission: number;
  let keyDir: string;

  const postern = (words: string[]) => {
    const [cmd, ...args] = posternCommand([...words, "--config", server.configDir]);
    return run(cmd!, args);
  };
  /** Submits one message to bob (local) and returns the selector that signed it, or "". */
  const signedWith = async (subject: string): Promise<string> => {
    const sent = await submitMail(submission, LOGIN, "alice@example.test", ["bob@example.test"], [
      "--header",
      `Subject: ${subject}`,
    ]);
    const id = queuedId(sent);
    await server.waitForLog(new RegExp(`qid=${id} event=completed`));
    const mail = (await maildirMessages(server.dataDir, "example.test", "bob"))
      .find((m) => m.includes(`Subject: ${subject}`));
    assert.ok(mail, `no delivered message "${subject}"`);
    return /^DKIM-Signature:[^]*?\bs=([\w.-]+);/m.exec(mail)?.[1] ?? "";
  };
  /** Submits until `selector` signs (bounded: 60 tries, 30 s). */
  const untilSignedWith = async (selector: string) => {
    let got = "";
    const deadline = Date.now() + 30_000;
    for (let i = 0; i < 60 && Date.now() < deadline; i++) {
      got = await signedWith(`wait for ${selector} ${i}`);
      if (got === selector) return;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.fail(`${selector} never signed (last: "${got}")`);
  };
  const metric = async (line: RegExp): Promise<string | undefined> => {
    const { address } = JSON.parse(await readFile(join(server.dataDir, "run/admin.json"), "utf8"));
    const token = (await readFile(join(server.dataDir, "admin.token"), "utf8")).trim();
    const text = await (await fetch(`http://${address}/metrics`, {
      headers: { authorization: `Bearer ${token}` },
    })).text();
    return text.split("\n").find((l) => line.test(l));
  };

  before(async () => {
    // No SOA: a removed record is not remembered as a negative answer.
    dns = await startDnsServer({}, { soa: false });
    submission = await freePort();
    const configDir = await tempDir("postern-config-");
    keyDir = dkimKeyDir(configDir, "example.test");
    const old = await generateDkimKey({ dir: keyDir, domain: "example.test", selector: "old" });
    dns.zone[old.record.name] = { TXT: [old.record.strings], ttl: 0 };
    await writeTree(configDir, {
      "postern.yaml": [
        "hostname: mail.example.test",
        "submission:",
        `  listen: ["127.0.0.1:${submission}"]`,
        "dns:",
        `  servers: ["${dns.address}"]`,
        "  timeout: 2s",
        "outbound:",
        "  dkim_check_interval: 1s",
        "",
      ].join("\n"),
      "domains/example.test/users": `alice ${await hashPassword(LOGIN.password)}\nbob\n`,
    });
    server = await startServer({ configDir });
  });
  after(async () => {
    await cleanup(server);
    await dns?.close();
  });

  it("signs with the published key; keygen's new key waits for its record", async () => {
    assert.equal(await signedWith("first"), "old");
    const reloads = () =>
      server.stderr().split("\n").filter((l) => /policy reloaded/.test(l)).length;
    const before = reloads();
    const keygen = await postern(["dkim", "keygen", "example.test", "--selector", "zz-new"]);
    assert.equal(keygen.code, 0, keygen.stderr);
    assert.match(
      keygen.stdout,
      /^zz-new\._domainkey\.example\.test\. IN TXT \( "v=DKIM1; k=rsa; p=/m,
    );
    assert.match(keygen.stdout, /becomes active .* once this record is published/);
    // The reload sees the new key; its record is missing, so the old key signs on.
    await eventually(() => Promise.resolve(reloads() > before || undefined), 20_000, "a reload");
    for (let i = 0; i < 3; i++) assert.equal(await signedWith(`unpublished ${i}`), "old");
    const status = await postern(["dkim", "status", "example.test"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(
      status.stdout,
      /^example\.test +zz-new +rsa +\d{4}-\d\d-\d\d \d\d:\d\d +missing +no/m,
    );
    assert.match(status.stdout, /^example\.test +old +rsa +\S+ \S+ +published +yes$/m);
  });

  it("a key whose record holds another key does not sign; the matching record makes it sign", async () => {
    const [fresh] = loadDkimKeys(keyDir, "example.test").filter((k) => k.selector === "zz-new");
    const [old] = loadDkimKeys(keyDir, "example.test").filter((k) => k.selector === "old");
    dns.zone["zz-new._domainkey.example.test"] = { TXT: [old!.record], ttl: 0 };
    const status = await postern(["dkim", "status"]);
    assert.match(status.stdout, /^example\.test +zz-new .* mismatched +no/m);
    assert.equal(await signedWith("mismatched"), "old");
    dns.zone["zz-new._domainkey.example.test"] = { TXT: [fresh!.record], ttl: 0 };
    await untilSignedWith("zz-new");
    const after = await postern(["dkim", "status"]);
    assert.match(after.stdout, /^example\.test +zz-new .* published +yes$/m);
  });

  it("a record whose k= names another key type is mismatched (RFC 6376 section 3.6.1)", async () => {
    // A configuration of its own, so the keys of the server above stay as they are.
    const configDir = await tempDir("postern-config-");
    try {
      const dir = dkimKeyDir(configDir, "ktype.test");
      const rsa = await generateDkimKey({ dir, domain: "ktype.test", selector: "rsa1" });
      await writeTree(configDir, {
        "postern.yaml": `dns:\n  servers: ["${dns.address}"]\n  timeout: 2s\n`,
      });
      const status = async () => {
        const [cmd, ...args] = posternCommand(["dkim", "status", "--config", configDir]);
        return (await run(cmd!, args)).stdout;
      };
      // Before, p= alone was compared: this record counted as published,
      // and the key signed mail that no verifier could check.
      dns.zone[rsa.record.name] = {
        TXT: [rsa.record.strings.join("").replace("k=rsa", "k=ed25519")],
        ttl: 0,
      };
      assert.match(await status(), /^ktype\.test +rsa1 +rsa .* mismatched +no\b/m);
      dns.zone[rsa.record.name] = { TXT: [rsa.record.strings], ttl: 0 };
      assert.match(await status(), /^ktype\.test +rsa1 +rsa .* published +yes$/m);
    } finally {
      delete dns.zone["rsa1._domainkey.ktype.test"];
      await rm(configDir, { recursive: true, force: true });
    }
  });

  it("warns and counts when the signing key's record disappears", async () => {
    delete dns.zone["zz-new._domainkey.example.test"];
    await eventually(
      () =>
        Promise.resolve(
          /level=warn msg="DKIM record of the signing key disappeared".*selector=zz-new/.test(
            server.stderr(),
          ) || undefined,
        ),
      20_000,
      "the warning",
    );
    assert.ok(
      await metric(
        /^postern_dkim_record_problems_total\{domain="example\.test",problem="disappeared"\} [1-9]/,
      ),
    );
    // The old key, still published, signs again.
    await untilSignedWith("old");
  });

  it("a reload that meets an unreadable key keeps the last good policy, logged and counted", async () => {
    // A key "file" that is a folder cannot be read, even by root.
    await mkdir(join(keyDir, "broken.pem"));
    await eventually(
      () =>
        Promise.resolve(
          /policy reload failed.*broken\.pem: cannot read the DKIM key/.test(server.stderr()) ||
            undefined,
        ),
      20_000,
      "the reload error",
    );
    assert.ok(await metric(/^postern_dkim_key_errors_total [1-9]/));
    assert.equal(await signedWith("after a failed reload"), "old");
    const check = await postern(["check"]);
    assert.equal(check.code, 1);
    assert.match(check.stderr, /broken\.pem: cannot read the DKIM key/);
    await rm(join(keyDir, "broken.pem"), { recursive: true });
  });
});

describe("an unreadable DKIM key folder at start-up", () => {
  it("stops `postern check` and `serve` with a message naming the folder", async () => {
    const configDir = await tempDir("postern-config-");
    const dataDir = await tempDir("postern-data-");
    try {
      await writeTree(configDir, { "domains/example.test/users": "alice\n" });
      // A "dkim" that is not a folder: reading it fails, as an unreadable one does.
      await writeFile(join(configDir, "domains/example.test/dkim"), "not a folder\n");
      const folder = join(configDir, "domains/example.test/dkim");
      for (const words of [["check"], ["serve", "--listen", "127.0.0.1:0", "--data", dataDir]]) {
        const [cmd, ...args] = posternCommand([...words, "--config", configDir]);
        const result = await run(cmd!, args);
        assert.equal(result.code, 1, `${words[0]}: ${result.stdout}${result.stderr}`);
        assert.ok(
          result.stderr.includes(`${folder}: cannot read the DKIM key folder`),
          result.stderr,
        );
      }
    } finally {
      await rm(configDir, { recursive: true, force: true });
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
