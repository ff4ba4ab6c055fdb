/**
 * Outbound delivery beyond plain MX lookups, end to end: a smarthost that
 * takes every message (AUTH over verified STARTTLS or implicit TLS, a wrong
 * password, an untrusted certificate, and the configuration check), virtual
 * MTAs with their own source address and EHLO name, the per-destination
 * connection limit with connection reuse and the messages-per-connection
 * cap, a slow destination that must not hold up the others, and MTA-STS in enforce mode (RFC 8461) with the policy fetched over
 * HTTPS from a server whose certificate a test CA signed.
 */

import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import { createServer, type Server as HttpsServer } from "node:https";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { hashPassword } from "../../src/users/mod.ts";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import { TestCa } from "../support/test_ca.ts";
import {
  cleanup,
  freePort,
  outboundBaseYaml,
  posternCommand,
  queuedId,
  run,
  type RunResult,
  type Server,
  startServer,
  submitMail,
  tempDir,
  writeTree,
} from "./harness.ts";

const USERS = {
  "alice@example.test": "pw-alice-1",
  "bob@second.test": "pw-bob-2",
} as const;

/** Submits one message over STARTTLS with AUTH PLAIN as `from` (a user of {@linkcode USERS}). */
function submit(port: number, from: keyof typeof USERS, to: string): Promise<RunResult> {
  return submitMail(port, { user: from, password: USERS[from] }, from, [to]);
}

/** The queue id the submission got. */
const queued = queuedId;

/** A client address without the IPv4-mapped IPv6 prefix some runtimes add. */
function ipv4(address: string): string {
  return address.replace(/^::ffff:/, "");
}

/** Config files: postern.yaml from `yaml` lines, plus both users' password files. */
async function configFiles(
  yaml: string[],
  extra: Record<string, string> = {},
): Promise<Record<string, string>> {
  return {
    "postern.yaml": [...yaml, ""].join("\n"),
    "domains/example.test/users": `alice ${await hashPassword(USERS["alice@example.test"])}\n`,
    "domains/second.test/users": `bob ${await hashPassword(USERS["bob@second.test"])}\n`,
    ...extra,
  };
}

/** Starts Postern on a new config directory: postern.yaml from `yaml` lines, the users, `extra`. */
async function startWith(
  yaml: string[],
  extra: Record<string, string> = {},
  env?: Record<string, string>,
): Promise<Server> {
  const configDir = await tempDir("postern-config-");
  await writeTree(configDir, await configFiles(yaml, extra));
  return await startServer({ configDir, ...(env ? { env } : {}) });
}

/** The settings every server here shares: submission, test DNS, fast retries. */
function commonYaml(submission: number, dns: TestDnsServer): string[] {
  return outboundBaseYaml(submission, dns.address);
}

describe("outbound through a smarthost", () => {
  const credentials = { user: "relay-user", pass: "relay-secret-9" };
  let dns: TestDnsServer;
  let relay: SmtpReceiver;
  let relayPort: number;
  let implicitRelay: SmtpReceiver;
  let implicitPort: number;

  before(async () => {
    // No records at all: mail for any domain goes to the smarthost without an MX lookup.
    dns = await startDnsServer({});
    relayPort = await freePort();
    implicitPort = await freePort();
    // Certificates for localhost and 127.0.0.1: most tests name the relay
    // "localhost"; one gives its IP address.
    relay = await SmtpReceiver.start({
      host: "127.0.0.1",
      port: relayPort,
      tlsName: "localhost",
      auth: credentials,
    });
    implicitRelay = await SmtpReceiver.start({
      host: "127.0.0.1",
      port: implicitPort,
      implicitTls: true,
      tlsName: "localhost",
      auth: credentials,
    });
  });
  after(async () => {
    await Promise.all([relay.close(), implicitRelay.close()]);
    await dns.close();
  });

  /** Starts Postern with `smarthost` (YAML lines of the section) and extra config files. */
  const withRelay = async (smarthost: string[], files: Record<string, string>) => {
    const submission = await freePort();
    const server = await startWith([
      ...commonYaml(submission, dns),
      "outbound:",
      "  connect_timeout: 3s",
      "  command_timeout: 10s",
      "  mta_sts: false",
      "  smarthost:",
      ...smarthost.map((line) => `    ${line}`),
    ], files);
    return { server, submission };
  };

  it("relays mail for any domain with AUTH over STARTTLS, verifying the relay's certificate", async () => {
    const { server, submission } = await withRelay([
      `address: "localhost:${relayPort}"`,
      `username: ${credentials.user}`,
      "password_file: relay.pass",
      "ca_file: relay-ca.pem",
    ], {
      "relay.pass": `${credentials.pass}\n`,
      "relay-ca.pem": relay.certificate.cert,
    });
    try {
      const before = relay.messages.length;
      const first = queued(await submit(submission, "alice@example.test", "bob@nowhere.test"));
      const second = queued(await submit(submission, "alice@example.test", "carol@else.test"));
      await relay.waitForMessages(before + 2);
      const got = relay.messages.slice(before);
      assert.deepEqual(got.map((m) => m.to).sort(), [["bob@nowhere.test"], ["carol@else.test"]]);
      for (const message of got) {
        assert.equal(message.from, "alice@example.test");
        assert.equal(message.secure, true, "the relay was reached over TLS");
        const seen = relay.connections.find((c) => c.id === message.connection)!;
        assert.equal(seen.user, credentials.user, "Postern logged in to the relay");
        assert.equal(seen.secure, true);
      }
      for (const id of [first, second]) {
        await server.waitForLog(new RegExp(`qid=${id} event=delivery .*result=sent`));
      }
      assert.equal(dns.queries.filter((q) => q.type === "MX").length, 0, "no MX lookups");
    } finally {
      await cleanup(server);
    }
  });

  it("relays with implicit TLS (tls: implicit)", async () => {
    const { server, submission } = await withRelay([
      `address: "localhost:${implicitPort}"`,
      "tls: implicit",
      `username: ${credentials.user}`,
      "password_file: relay.pass",
      "ca_file: relay-ca.pem",
    ], {
      "relay.pass": `${credentials.pass}\n`,
      "relay-ca.pem": implicitRelay.certificate.cert,
    });
    try {
      const before = implicitRelay.messages.length;
      const id = queued(await submit(submission, "alice@example.test", "dan@far.test"));
      await implicitRelay.waitForMessages(before + 1);
      const got = implicitRelay.messages.at(-1)!;
      assert.deepEqual(got.to, ["dan@far.test"]);
      assert.equal(got.secure, true);
      const seen = implicitRelay.connections.find((c) => c.id === got.connection)!;
      assert.equal(seen.user, credentials.user);
      await server.waitForLog(new RegExp(`qid=${id} event=delivery .*result=sent`));
    } finally {
      await cleanup(server);
    }
  });

  it("defers, with the relay's 535 in the error, when the relay refuses the password", async () => {
    const { server, submission } = await withRelay([
      `address: "localhost:${relayPort}"`,
      `username: ${credentials.user}`,
      "password_file: relay.pass",
      "ca_file: relay-ca.pem",
    ], {
      "relay.pass": "not-the-password\n",
      "relay-ca.pem": relay.certificate.cert,
    });
    try {
      const before = relay.messages.length;
      const id = queued(await submit(submission, "alice@example.test", "erin@nowhere.test"));
      const line = await server.waitForLog(
        new RegExp(`qid=${id} event=delivery to=<erin@nowhere\\.test> result=deferred`),
      );
      assert.match(line, /535/);
      assert.equal(relay.messages.length, before, "nothing was relayed");
    } finally {
      await cleanup(server);
    }
  });

  it("defers and delivers nothing when the relay's certificate is not trusted", async () => {
    // No ca_file: the relay's self-signed certificate fails verification.
    const { server, submission } = await withRelay([
      `address: "localhost:${relayPort}"`,
      `username: ${credentials.user}`,
      "password_file: relay.pass",
    ], {
      "relay.pass": `${credentials.pass}\n`,
    });
    try {
      const before = relay.messages.length;
      const loginsBefore = relay.connections.filter((c) => c.user !== undefined).length;
      const id = queued(await submit(submission, "alice@example.test", "fay@nowhere.test"));
      const line = await server.waitForLog(
        new RegExp(`qid=${id} event=delivery to=<fay@nowhere\\.test> result=deferred`),
      );
      assert.match(line, /certificate|self[- ]signed|verif|unknown ?issuer|UnknownIssuer/i);
      assert.equal(relay.messages.length, before, "nothing was relayed");
      assert.equal(
        relay.connections.filter((c) => c.user !== undefined).length,
        loginsBefore,
        "the password was not sent to an unverified relay",
      );
    } finally {
      await cleanup(server);
    }
  });

  it("relays to a smarthost given by IP address, verifying the certificate's IP entry", async () => {
    // RFC 6066 section 3: SNI carries host names only, never an IP address;
    // the certificate is checked against the address (its IP SAN) instead.
    const { server, submission } = await withRelay([
      `address: "127.0.0.1:${relayPort}"`,
      `username: ${credentials.user}`,
      "password_file: relay.pass",
      "ca_file: relay-ca.pem",
    ], {
      "relay.pass": `${credentials.pass}\n`,
      "relay-ca.pem": relay.certificate.cert,
    });
    try {
      const before = relay.messages.length;
      const id = queued(await submit(submission, "alice@example.test", "gus@nowhere.test"));
      const line = await server.waitForLog(new RegExp(`qid=${id} event=delivery `));
      assert.match(line, /result=sent/);
      await relay.waitForMessages(before + 1);
      const got = relay.messages.at(-1)!;
      assert.deepEqual(got.to, ["gus@nowhere.test"]);
      assert.equal(got.secure, true);
      assert.equal(relay.connections.find((c) => c.id === got.connection)!.user, credentials.user);
    } finally {
      await cleanup(server);
    }
  });

  it("`postern check` refuses a smarthost username without password_file", async () => {
    const dir = await tempDir("postern-config-");
    const smarthost = [
      "outbound:",
      "  smarthost:",
      `    address: "127.0.0.1:${relayPort}"`,
      `    username: ${credentials.user}`,
    ];
    try {
      await writeTree(dir, { "postern.yaml": [...smarthost, ""].join("\n") });
      const [cmd, ...args] = posternCommand(["check", "--config", dir]);
      const bad = await run(cmd!, args);
      assert.equal(bad.code, 1, bad.stdout + bad.stderr);
      assert.match(bad.stderr + bad.stdout, /outbound\.smarthost/);
      assert.match(bad.stderr + bad.stdout, /password_file/);
      // With the password file the same section is accepted.
      await writeTree(dir, {
        "postern.yaml": [...smarthost, "    password_file: relay.pass", ""].join("\n"),
        "relay.pass": `${credentials.pass}\n`,
      });
      const good = await run(cmd!, args);
      assert.equal(good.code, 0, good.stdout + good.stderr);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("outbound: virtual MTAs and connection limits", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission: number;
  let vmtaRx: SmtpReceiver;
  let busyRx: SmtpReceiver;

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    vmtaRx = await SmtpReceiver.start({ host: "127.0.0.35", port, starttls: false });
    // Each message is held a moment, so that deliveries overlap.
    busyRx = await SmtpReceiver.start({ host: "127.0.0.36", port, holdMs: 300 });
    dns = await startDnsServer({
      "vmta.test": { MX: [{ priority: 10, exchange: "mx.vmta.test" }] },
      "mx.vmta.test": { A: ["127.0.0.35"] },
      "busy.test": { MX: [{ priority: 10, exchange: "mx.busy.test" }] },
      "mx.busy.test": { A: ["127.0.0.36"] },
    });
    server = await startWith([
      ...commonYaml(submission, dns),
      "outbound:",
      `  port: ${port}`,
      "  connect_timeout: 3s",
      "  mta_sts: false",
      "  max_connections_per_destination: 2",
      "  messages_per_connection: 3",
      "  virtual_mtas:",
      "    ips2:",
      "      bind: 127.0.0.31",
      "      ehlo: out2.example.test",
      "  routes:",
      "    - sender_domain: second.test",
      "      mta: ips2",
    ]);
  });
  after(async () => {
    await cleanup(server);
    await Promise.all([vmtaRx.close(), busyRx.close()]);
    await dns.close();
  });

  it("sends a routed sender's mail from the virtual MTA's address and EHLO name", async () => {
    const before = vmtaRx.messages.length;
    queued(await submit(submission, "bob@second.test", "x@vmta.test"));
    queued(await submit(submission, "alice@example.test", "y@vmta.test"));
    await vmtaRx.waitForMessages(before + 2);
    const bySender = (from: string) => {
      const message = vmtaRx.messages.slice(before).find((m) => m.from === from)!;
      assert.ok(message, `a message from ${from}`);
      return vmtaRx.connections.find((c) => c.id === message.connection)!;
    };
    const routed = bySender("bob@second.test");
    assert.equal(ipv4(routed.remoteAddress), "127.0.0.31");
    assert.equal(routed.ehlo, "out2.example.test");
    const plain = bySender("alice@example.test");
    assert.equal(ipv4(plain.remoteAddress), "127.0.0.1");
    assert.equal(plain.ehlo, "mail.example.test");
  });

  it("keeps to 2 connections per destination, reuses them, and closes each after 3 messages", async () => {
    const count = 10;
    const results = await Promise.all(
      Array.from(
        { length: count },
        (_, i) => submit(submission, "alice@example.test", `u${i}@busy.test`),
      ),
    );
    results.forEach(queued);
    await busyRx.waitForMessages(count, 40_000);
    const used = busyRx.connections.filter((c) => c.messages > 0);
    const carried = used.map((c) => c.messages);
    assert.ok(busyRx.peak <= 2, `at most 2 connections at once, saw ${busyRx.peak}`);
    assert.ok(busyRx.peak === 2, `the limit was reached (deliveries overlapped): ${busyRx.peak}`);
    assert.ok(
      busyRx.connections.length < count,
      `${busyRx.connections.length} connections for ${count} messages`,
    );
    assert.ok(Math.max(...carried) <= 3, `messages per connection: ${carried.join(", ")}`);
    assert.ok(Math.max(...carried) >= 2, `a connection was reused: ${carried.join(", ")}`);
    assert.equal(carried.reduce((a, b) => a + b, 0), count);
  });
});

describe("outbound: a slow destination does not hold up the others", () => {
  let dns: TestDnsServer;
  let server: Server;
  let submission: number;
  let slowRx: SmtpReceiver;
  let fastRx: SmtpReceiver;

  before(async () => {
    const port = await freePort();
    submission = await freePort();
    // Each message is held long enough for the whole test to happen meanwhile.
    slowRx = await SmtpReceiver.start({ host: "127.0.0.37", port, holdMs: 6000 });
    fastRx = await SmtpReceiver.start({ host: "127.0.0.38", port });
    dns = await startDnsServer({
      "slow.test": { MX: [{ priority: 10, exchange: "mx.slow.test" }] },
      "mx.slow.test": { A: ["127.0.0.37"] },
      "fast.test": { MX: [{ priority: 10, exchange: "mx.fast.test" }] },
      "mx.fast.test": { A: ["127.0.0.38"] },
    });
    server = await startWith([
      // outboundBaseYaml ends inside the delivery section.
      ...commonYaml(submission, dns),
      "  concurrency: 3",
      "outbound:",
      `  port: ${port}`,
      "  connect_timeout: 3s",
      "  mta_sts: false",
      "  max_connections_per_destination: 2",
    ]);
  });
  after(async () => {
    await cleanup(server);
    await Promise.all([slowRx.close(), fastRx.close()]);
    await dns.close();
  });

  it("delivers to another domain while the slow one has its limit of attempts in flight", async () => {
    // Four messages for the slow domain: without a limit per destination in
    // the queue they would take all 3 delivery slots (2 connected, 1
    // waiting for a connection) and the fast domain would wait 6 s.
    const slow = await Promise.all(
      [0, 1, 2, 3].map((i) => submit(submission, "alice@example.test", `s${i}@slow.test`)),
    );
    slow.forEach(queued);
    queued(await submit(submission, "alice@example.test", "f@fast.test"));
    await fastRx.waitForMessages(1, 20_000);
    assert.equal(
      slowRx.messages.length,
      0,
      "the fast domain's message arrived before any slow one was accepted",
    );
    assert.ok(slowRx.peak <= 2, `at most 2 connections to the slow domain, saw ${slowRx.peak}`);
    // Nothing is lost: every slow message still arrives.
    await slowRx.waitForMessages(4, 60_000);
    assert.deepEqual(
      slowRx.messages.flatMap((m) => m.to).sort(),
      ["s0@slow.test", "s1@slow.test", "s2@slow.test", "s3@slow.test"],
    );
  });
});

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
