/**
 * Outbound delivery through a smarthost that takes every message, end to
 * end: AUTH over verified STARTTLS or implicit TLS, a relay named by IP
 * address, a wrong password, an untrusted certificate, and `postern check`
 * of the section. Each test starts its own Postern against the same relays.
 */

import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { startDnsServer, type TestDnsServer } from "../support/dns_server.ts";
import { SmtpReceiver } from "../support/smtp_receiver.ts";
import { cleanup, freePort, posternCommand, run, tempDir, writeTree } from "./harness.ts";
import { commonYaml, queued, startWith, submit } from "./outbound_relay_setup.ts";

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
