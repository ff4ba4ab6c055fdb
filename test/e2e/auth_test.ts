/**
 * Message authentication end to end (issue 3): a real authoritative DNS
 * server on loopback (test/support/dns_server.ts), the real Postern pointed
 * at it with `dns.servers`, and real SMTP from swaks.
 *
 * SPF at MAIL FROM (every result, include/redirect/macros, IPv4 and IPv6
 * clients, the HELO identity for the null sender, our own domain), the SPF
 * verdict handed to the post-data hook, DKIM and DMARC after DATA, absurd
 * input and a DNS server that answers garbage.
 *
 * One server for all of them (trusted_networks: [], IPv4 and IPv6
 * loopback; the IPv6 test fails where there is no ::1), started by
 * auth_fixtures.ts. Servers with other `auth:` settings are in
 * auth_settings_test.ts.
 */

import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import type { TestDnsServer } from "../support/dns_server.ts";
import {
  authClient,
  type AuthWorld,
  escape,
  field,
  headerFields,
  HOSTNAME,
  message,
  receivedSpf,
  rows,
  spfRow,
  startAuthServer,
} from "./auth_fixtures.ts";
import { cleanup, eventually, maildirMessages, rawSession, type Server } from "./harness.ts";

describe("message authentication end to end", () => {
  let world: AuthWorld;
  let dns: TestDnsServer;
  let server: Server;
  let ipv6 = false;
  const { send, deliver, refusedAtMail, signed } = authClient(() => world);

  before(async () => {
    world = await startAuthServer();
    ({ dns, server, ipv6 } = world);
  });
  after(async () => {
    if (server) await cleanup(server);
    if (dns) await dns.close();
    if (world) await rm(world.dir, { recursive: true, force: true });
  });

  // --- SPF results -------------------------------------------------------

  it("SPF pass: Authentication-Results and Received-SPF above Received, logged", async () => {
    const { text, log, sent } = await deliver({ from: "bob@pass.test" });
    assert.match(sent.mail, /^250 2\.1\.0 /);
    const comment = "domain of bob@pass.test designates 127.0.0.1 as permitted sender";
    assert.equal(field(text, "Received-SPF"), receivedSpf("pass", comment, "bob@pass.test"));
    assert.deepEqual(rows(text), [
      "dkim=none (message not signed)",
      spfRow("pass", comment, "bob@pass.test"),
      "dmarc=none header.from=pass.test",
    ]);
    // The hook's fields, then ours, then the Received of this hop.
    const names = headerFields(text).map((l) => l.slice(0, l.indexOf(":")));
    assert.deepEqual(names.slice(0, 7), [
      "Return-Path",
      "Delivered-To",
      "X-Spf-Pass",
      "X-Hook-Saw",
      "Authentication-Results",
      "Received-SPF",
      "Received",
    ]);
    assert.match(log, / client=127\.0\.0\.1 helo=client\.test from=<bob@pass\.test> /);
    assert.match(log, / spf=pass dkim=none dmarc=none$/);
  });

  it("removes Authentication-Results fields from outside that claim our name (RFC 8601 section 5)", async () => {
    const data = [
      `Authentication-Results: ${HOSTNAME}; spf=pass smtp.mailfrom=forged@pass.test`,
      `Authentication-Results: ${HOSTNAME.toUpperCase()};`,
      "\tdkim=pass header.d=forged.test",
      "Authentication-Results: elsewhere.test; spf=fail",
      "From: Bob <bob@pass.test>",
      "To: alice@example.test",
      "Subject: forged verdict",
      "",
      `Authentication-Results: ${HOSTNAME}; in the body stays`,
      "",
    ].join("\r\n");
    const { text } = await deliver({ from: "bob@pass.test", data });
    const ours = headerFields(text).filter((l) =>
      l.toLowerCase().startsWith(`authentication-results: ${HOSTNAME.toLowerCase()}`)
    );
    assert.equal(ours.length, 1, text);
    assert.ok(!text.includes("forged@pass.test"), text);
    assert.ok(!text.includes("header.d=forged.test"), text);
    assert.ok(text.includes("Authentication-Results: elsewhere.test; spf=fail"), text);
    assert.ok(text.includes(`Authentication-Results: ${HOSTNAME}; in the body stays`), text);
    await eventually(
      () =>
        Promise.resolve(
          /removed Authentication-Results fields that claimed our name.* fields=2/.test(
              server.stderr(),
            )
            ? true
            : undefined,
        ),
      5_000,
      "the log line",
    );
  });

  it("SPF fail (-all): 550 5.7.23 at MAIL FROM with the domain's exp= text", async () => {
    const log = await refusedAtMail(
      { from: "bob@fail.test" },
      new RegExp(
        "^" + escape(
          "550 5.7.23 SPF check failed: domain of bob@fail.test does not designate 127.0.0.1 " +
            "as permitted sender; fail.test explains: 127.0.0.1 is not one of fail.test's mail servers",
        ) + "$",
      ),
    );
    assert.match(log, / event=rejected stage=mail reason=spf_fail client=127\.0\.0\.1 /);
    assert.match(log, / reply="550 5\.7\.23 SPF check failed: domain of bob@fail\.test /);
    // The expansion of %{i} and %{d} in the explanation was looked up.
    assert.equal(dns.count("why.fail.test", "TXT"), 1);
    // Without exp=, the reply says why, without an explanation.
    const bare = await send({ from: "bob@bare-fail.test" });
    assert.equal(
      bare.mail,
      "550 5.7.23 SPF check failed: domain of bob@bare-fail.test does not designate 127.0.0.1 " +
        "as permitted sender",
    );
    assert.equal(bare.data, "");
  });

  it("SPF is checked after STARTTLS too: TLS is not authentication", async () => {
    const sent = await send({ from: "bob@bare-fail.test", tls: true });
    assert.match(sent.result.stdout, /TLS started/);
    assert.equal(
      sent.mail,
      "550 5.7.23 SPF check failed: domain of bob@bare-fail.test does not designate 127.0.0.1 " +
        "as permitted sender",
    );
  });

  it("SPF softfail (~all) is accepted and tagged", async () => {
    const { text, log } = await deliver({ from: "bob@softfail.test" });
    const comment =
      "domain of transitioning bob@softfail.test does not designate 127.0.0.1 as permitted sender";
    assert.equal(
      field(text, "Received-SPF"),
      receivedSpf("softfail", comment, "bob@softfail.test"),
    );
    assert.equal(rows(text)[1], spfRow("softfail", comment, "bob@softfail.test"));
    assert.match(log, / spf=softfail dkim=none dmarc=none$/);
  });

  it("SPF neutral (?all) is accepted and tagged", async () => {
    const { text, log } = await deliver({ from: "bob@neutral.test" });
    const comment = "127.0.0.1 is neither permitted nor denied by domain of bob@neutral.test";
    assert.equal(field(text, "Received-SPF"), receivedSpf("neutral", comment, "bob@neutral.test"));
    assert.equal(rows(text)[1], spfRow("neutral", comment, "bob@neutral.test"));
    assert.match(log, / spf=neutral dkim=none dmarc=none$/);
  });

  it("SPF none (no SPF record, or no such domain) is accepted and tagged", async () => {
    for (const domain of ["none.test", "nowhere.test"]) {
      const from = `bob@${domain}`;
      const { text, log } = await deliver({ from });
      const comment = `${domain} does not designate permitted sender hosts`;
      assert.equal(field(text, "Received-SPF"), receivedSpf("none", comment, from));
      assert.equal(rows(text)[1], spfRow("none", comment, from));
      assert.match(log, / spf=none dkim=none dmarc=none$/);
    }
  });

  it("SPF temperror (the DNS server silent, or SERVFAIL): 451 4.4.3", async () => {
    const log = await refusedAtMail(
      { from: "bob@timeout.test" },
      /^451 4\.4\.3 Temporary SPF error, try again later: error in processing during lookup of bob@timeout\.test: DNS timeout$/,
    );
    assert.match(log, / event=rejected stage=mail reason=spf_temperror /);
    // The DNS server was asked and stayed silent: the reply above, "DNS
    // timeout", is the resolver's timeout (dns.timeout: 1s) firing.
    assert.ok(dns.count("timeout.test", "TXT") >= 1);
    const servfail = await refusedAtMail(
      { from: "bob@servfail.test" },
      /^451 4\.4\.3 Temporary SPF error, try again later: error in processing during lookup of bob@servfail\.test: DNS server failure/,
    );
    assert.match(servfail, / reason=spf_temperror /);
  });

  it("SPF permerror (bad syntax, over 10 lookups, over 2 void lookups) is accepted", async () => {
    const cases = [
      ["syntax.test", "invalid cidr definition: 127.0.0.1/33"],
      ["lookups.test", "Too many DNS requests"],
      ["void.test", "Too many void DNS results"],
    ];
    for (const [domain, why] of cases) {
      const from = `bob@${domain}`;
      const { text, log } = await deliver({ from });
      const comment = `permanent error in processing during lookup of ${from}: ${why}`;
      assert.equal(field(text, "Received-SPF"), receivedSpf("permerror", comment, from));
      assert.equal(rows(text)[1], spfRow("permerror", comment, from));
      assert.match(log, / spf=permerror dkim=none dmarc=none$/);
    }
    // RFC 7208 section 4.6.4: the eleventh include is never looked up.
    assert.equal(dns.count("l9.lookups.test", "TXT"), 1);
    assert.equal(dns.count("l10.lookups.test", "TXT"), 0);
    assert.equal(dns.count("gone3.void.test", "A"), 1);
  });

  it("SPF include and redirect", async () => {
    const include = await deliver({ from: "bob@include.test" });
    assert.equal(
      field(include.text, "Received-SPF"),
      receivedSpf(
        "pass",
        "domain of bob@include.test designates 127.0.0.1 as permitted sender",
        "bob@include.test",
      ),
    );
    assert.equal(dns.count("_spf.include.test", "TXT"), 1);
    // The included record's -all does not match; include-miss.test's own -all decides.
    await refusedAtMail({ from: "bob@include-miss.test" }, /^550 5\.7\.23 SPF check failed: /);
    const redirect = await deliver({ from: "bob@redirect.test" });
    assert.equal(
      field(redirect.text, "Received-SPF"),
      receivedSpf(
        "pass",
        "domain of bob@redirect.test designates 127.0.0.1 as permitted sender",
        "bob@redirect.test",
      ),
    );
    // After redirect= the target's record decides: bare-fail.test's -all.
    await refusedAtMail({ from: "bob@redirect-miss.test" }, /^550 5\.7\.23 SPF check failed: /);
  });

  it("SPF macros: exists:%{i}._spf.%{d} and exists:%{l}.%{i}._spf.%{d}", async () => {
    const macro = await deliver({ from: "bob@macro.test" });
    assert.match(field(macro.text, "Received-SPF")!, /^pass \(/);
    assert.equal(dns.count("127.0.0.1._spf.macro.test", "A"), 1);
    const alice = await deliver({ from: "alice@local.test" });
    assert.match(field(alice.text, "Received-SPF")!, /^pass \(/);
    await refusedAtMail({ from: "carol@local.test" }, /^550 5\.7\.23 SPF check failed: /);
    assert.equal(dns.count("carol.127.0.0.1._spf.local.test", "A"), 1);
  });

  it("SPF for an IPv6 client", async () => {
    // No silent fallback to IPv4: this test needs ::1, as CI has.
    assert.ok(ipv6, "this machine cannot listen on the IPv6 loopback address ::1");
    const { text, log } = await deliver({ from: "bob@v6.test", ipv6: true });
    assert.equal(
      field(text, "Received-SPF"),
      receivedSpf(
        "pass",
        "domain of bob@v6.test designates ::1 as permitted sender",
        "bob@v6.test",
        "::1",
      ),
    );
    assert.match(field(text, "Received")!, /^from client\.test \(\[::1\]\)/);
    assert.match(log, / client=::1 .* spf=pass dkim=none dmarc=none$/);
    // The IPv4-only record fails an IPv6 client.
    const refused = await refusedAtMail(
      { from: "bob@pass.test", ipv6: true },
      /^550 5\.7\.23 SPF check failed: domain of bob@pass\.test does not designate ::1 as permitted sender$/,
    );
    assert.match(refused, / reason=spf_fail client=::1 /);
  });

  it("SPF for the null sender checks the HELO identity (pass and fail)", async () => {
    const { text, log } = await deliver({ from: "", helo: "mail.helo.test" });
    const comment = "domain of postmaster@mail.helo.test designates 127.0.0.1 as permitted sender";
    // RFC 7208 section 9.1: no envelope-from for the HELO identity.
    assert.equal(
      field(text, "Received-SPF"),
      `pass (${HOSTNAME}: ${comment}) client-ip=127.0.0.1; helo=mail.helo.test;`,
    );
    assert.equal(
      rows(text)[1],
      `spf=pass (${HOSTNAME}: ${comment}) smtp.mailfrom=postmaster@mail.helo.test ` +
        "smtp.helo=mail.helo.test",
    );
    assert.match(log, / from=<> .* spf=pass /);
    const fail = await refusedAtMail(
      { from: "", helo: "bad.helo.test" },
      /^550 5\.7\.23 SPF check failed: domain of postmaster@bad\.helo\.test does not designate 127\.0\.0\.1 as permitted sender$/,
    );
    assert.match(fail, / reason=spf_fail client=127\.0\.0\.1 helo=bad\.helo\.test from=<> /);
  });

  it("a sender in our own domain from a host its record does not list (~all): 550 5.7.23", async () => {
    const log = await refusedAtMail(
      { from: "alice@example.test" },
      /^550 5\.7\.23 SPF check failed: example\.test is a local domain, and this host may not send its mail \(softfail\); use authenticated submission$/,
    );
    // spf_policy.ts's decision names this refusal spf_local_domain for the mail log.
    assert.match(log, / event=rejected stage=mail reason=spf_local_domain /);
  });

  // --- The hook -----------------------------------------------------------

  it("exports SPF_PASS to the post-data hook, which sees Authentication-Results", async () => {
    const pass = await deliver({ from: "bob@pass.test" });
    assert.equal(field(pass.text, "X-Spf-Pass"), "true");
    assert.equal(field(pass.text, "X-Hook-Saw"), "Authentication-Results,Received-SPF,Received");
    const softfail = await deliver({ from: "bob@softfail.test" });
    assert.equal(field(softfail.text, "X-Spf-Pass"), "false");
  });

  // --- DKIM and DMARC -----------------------------------------------------

  it("DKIM: a signed message passes; the same message with a changed body fails", async () => {
    const original = await signed("dkim.test", message("bob@dkim.test", "DKIM pass"));
    const good = await deliver({ from: "bob@pass.test", data: original });
    // header.b is the first 8 characters of b= (RFC 6008), quoted when it has a "/".
    const head = original.slice(0, original.indexOf("\r\nFrom: ")).replace(/\s+/g, "");
    const b = /;b=([A-Za-z0-9+/]{8})/.exec(head)![1]!;
    assert.deepEqual(rows(good.text), [
      "dkim=pass header.i=@dkim.test header.s=s1 header.a=rsa-sha256 " +
      `header.b=${b.includes("/") ? `"${b}"` : b}`,
      spfRow(
        "pass",
        "domain of bob@pass.test designates 127.0.0.1 as permitted sender",
        "bob@pass.test",
      ),
      "dmarc=none header.from=dkim.test",
    ]);
    assert.match(good.log, / spf=pass dkim=pass dmarc=none$/);

    // RFC 6376 section 6.1.3: a body hash mismatch is PERMFAIL, which RFC 8601
    // section 2.7.1 reports as "fail".
    const tampered = await deliver({
      from: "bob@pass.test",
      data: original.replace("see you at noon", "see you at one"),
    });
    assert.match(
      rows(tampered.text)[0]!,
      /^dkim=fail \(body hash did not verify\) header\.i=@dkim\.test header\.s=s1 header\.a=rsa-sha256 /,
    );
    assert.match(tampered.log, / spf=pass dkim=fail dmarc=none$/);
  });

  it("DMARC p=reject without aligned SPF or DKIM: 550 5.7.1 after DATA, not delivered", async () => {
    const sent = await send({
      from: "bob@pass.test",
      data: message("bob@dmarc-reject.test", "DMARC reject"),
    });
    assert.match(sent.mail, /^250 /);
    assert.equal(
      sent.data,
      "550 5.7.1 Message rejected: DMARC policy of dmarc-reject.test says reject",
    );
    const log = await server.waitForLog(/event=rejected stage=data reason=dmarc_reject /);
    assert.match(log, /from=<bob@pass\.test>/);
    // The next message is delivered; the refused one never is.
    const next = await deliver({ from: "bob@pass.test" });
    assert.ok(next.text);
    const all = await maildirMessages(server.dataDir, "example.test", "alice");
    assert.equal(all.filter((m) => m.includes("Subject: DMARC reject")).length, 0);
  });

  it("DMARC pass through an aligned DKIM signature is delivered", async () => {
    const data = await signed(
      "dmarc-reject.test",
      message("bob@dmarc-reject.test", "DMARC aligned"),
    );
    const { text, log } = await deliver({ from: "bob@pass.test", data });
    const [dkim, spf, dmarc, ...more] = rows(text);
    assert.match(dkim!, /^dkim=pass header\.i=@dmarc-reject\.test header\.s=s1 /);
    assert.match(spf!, /^spf=pass /);
    assert.equal(
      dmarc,
      "dmarc=pass (p=REJECT arc=none) policy.dmarc=reject header.from=dmarc-reject.test " +
        "header.d=dmarc-reject.test",
    );
    assert.deepEqual(more, []);
    assert.match(log, / spf=pass dkim=pass dmarc=pass$/);
  });

  it("DMARC p=none failure is accepted with dmarc=fail", async () => {
    const { text, log } = await deliver({
      from: "bob@pass.test",
      data: message("bob@dmarc-none.test", "DMARC none"),
    });
    assert.match(
      field(text, "Authentication-Results")!,
      /; dmarc=fail \(p=NONE arc=none\) policy\.dmarc=none header\.from=dmarc-none\.test header\.d=dmarc-none\.test$/,
    );
    assert.match(log, / dmarc=fail$/);
  });

  // --- Bad input ----------------------------------------------------------

  it("absurd MAIL FROM domains end in SPF none, accepted, without a bad query", async () => {
    const before = dns.queries.length;
    const longLabel = `bob@${"x".repeat(64)}.test`;
    const longName = `bob@${Array.from({ length: 5 }, () => "y".repeat(60)).join(".")}.test`;
    // RFC 7208 section 4.3: a malformed or single-label domain is "none".
    for (const from of [longLabel, "bob@[127.0.0.1]", "bob@localhost"]) {
      const { text, log } = await deliver({ from });
      const domain = from.slice(4);
      assert.equal(
        field(text, "Received-SPF"),
        receivedSpf("none", `${domain} does not designate permitted sender hosts`, from),
      );
      assert.match(log, / spf=none /, from);
    }
    // A domain over 253 octets is not even an address: 501 before any check.
    const tooLong = await send({ from: longName });
    assert.equal(tooLong.mail, "501 5.1.7 Error: Bad sender address syntax");
    // Names that cannot be sent on the wire are never asked.
    const asked = dns.queries.slice(before).map((q) => q.name);
    assert.ok(
      !asked.some((n) => n.includes("x".repeat(64)) || n.includes("[") || n.includes("yyy")),
      asked.join(" "),
    );
  });

  it("a DNS server answering garbage: 451 4.4.3, and the session goes on", async () => {
    const session = await rawSession(server);
    try {
      assert.match(await session.read(), /^220 /);
      assert.match(await session.send("EHLO client.test"), /^250 /);
      assert.match(
        await session.send("MAIL FROM:<bob@garbage.test>"),
        /^451 4\.4\.3 Temporary SPF error, try again later: error in processing during lookup of bob@garbage\.test: Malformed DNS response/,
      );
      assert.ok(dns.count("garbage.test", "TXT") >= 1);
      assert.match(
        await server.waitForLog(/event=rejected stage=mail .*from=<bob@garbage\.test> /),
        / reason=spf_temperror /,
      );
      assert.match(await session.send("MAIL FROM:<bob@pass.test>"), /^250 /);
      assert.match(await session.send("RCPT TO:<alice@example.test>"), /^250 /);
      assert.match(await session.send("DATA"), /^354 /);
      assert.match(
        await session.send("Subject: after garbage\r\n\r\nstill here\r\n."),
        /^250 2\.0\.0 Ok: queued as \w+$/,
      );
      assert.match(await session.send("QUIT"), /^221 /);
    } finally {
      session.close();
    }
    // And a new connection works too; the server never went down.
    await deliver({ from: "bob@pass.test" });
    assert.equal(server.child.exitCode, null);
    assert.doesNotMatch(server.stderr(), /unexpected error|SPF check failed/);
  });
});
