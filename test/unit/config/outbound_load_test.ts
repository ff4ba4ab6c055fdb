/**
 * The `outbound` section of `postern.yaml` through the whole loader,
 * `loadConfig()`: defaults, durations, the smarthost and its files, routes
 * and virtual MTAs and the errors that name them, the pre-delivery-attempt
 * hook's single worker, and the DKIM keys of domains.
 *
 * @module
 */

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ConfigError, DEFAULTS, loadConfig } from "../../../src/config/mod.ts";
import { configDirs, configError } from "./config_dirs.ts";

describe("loadConfig outbound", () => {
  const configDir = configDirs("postern-outbound-config-");

  it("loadConfig() fills outbound with the defaults when postern.yaml has no outbound section", async () => {
    const dir = await configDir({ "postern.yaml": "hostname: mail.ours.test\n" });
    const config = await loadConfig({ configDir: dir });
    assert.equal(config.outbound.port, 25);
    assert.equal(config.outbound.maxConnections, DEFAULTS.outbound.maxConnections);
    assert.equal(config.outbound.smarthost, undefined);
    assert.equal(config.outbound.virtualMtas.get("default")?.ehlo, "mail.ours.test");
  });

  it("loadConfig() applies the outbound fields with durations parsed", async () => {
    const dir = await configDir({
      "postern.yaml": [
        "hostname: mail.ours.test",
        "outbound:",
        "  port: 2526",
        "  max_connections: 7",
        "  max_connections_per_destination: 3",
        "  messages_per_connection: 9",
        "  connection_idle: 2s",
        "  connect_timeout: 10s",
        "  command_timeout: 1m",
        "  mta_sts: false",
        "  dkim_sign: false",
        "  delay_warning: 4h",
        "  sendid_header: X-Campaign",
        "  listid_header: X-List",
        "",
      ].join("\n"),
    });
    const { outbound } = await loadConfig({ configDir: dir });
    assert.equal(outbound.port, 2526);
    assert.equal(outbound.maxConnections, 7);
    assert.equal(outbound.maxConnectionsPerDestination, 3);
    assert.equal(outbound.messagesPerConnection, 9);
    assert.equal(outbound.connectionIdleMs, 2_000);
    assert.equal(outbound.connectTimeoutMs, 10_000);
    assert.equal(outbound.commandTimeoutMs, 60_000);
    assert.equal(outbound.mtaSts, false);
    assert.equal(outbound.dkimSign, false);
    assert.equal(outbound.delayWarningMs, 4 * 3_600_000);
    assert.equal(outbound.sendidHeader, "X-Campaign");
    assert.equal(outbound.listidHeader, "X-List");
  });

  it("loadConfig() resolves a smarthost with its password and CA files", async () => {
    const dir = await configDir({
      "postern.yaml": [
        "outbound:",
        "  smarthost:",
        '    address: "[::1]:2587"',
        "    username: relay-user",
        "    password_file: secrets/relay",
        "    ca_file: secrets/ca.pem",
        "",
      ].join("\n"),
      "secrets/relay": "pa ss\n",
      "secrets/ca.pem": "PEM TEXT\n",
    });
    const { outbound } = await loadConfig({ configDir: dir });
    assert.deepEqual(outbound.smarthost, {
      host: "::1",
      port: 2587,
      tls: "starttls",
      auth: { user: "relay-user", pass: "pa ss" },
      ca: "PEM TEXT\n",
    });
  });

  it("loadConfig() throws a ConfigError naming the field for a missing password file", async () => {
    const dir = await configDir({
      "postern.yaml": [
        "outbound:",
        "  smarthost:",
        "    address: relay.test:587",
        "    username: me",
        "    password_file: nosuch",
        "",
      ].join("\n"),
    });
    const err = await configError(dir);
    assert.equal(err.file, join(dir, "postern.yaml"));
    assert.match(err.message, /outbound\.smarthost\.password_file/);
    assert.match(err.message, /nosuch/);
  });

  it("loadConfig() throws a ConfigError for a username without password_file", async () => {
    const dir = await configDir({
      "postern.yaml": "outbound:\n  smarthost:\n    address: relay.test:587\n    username: me\n",
    });
    const err = await configError(dir);
    assert.match(err.message, /password_file/);
  });

  it("loadConfig() throws a ConfigError for a missing ca_file", async () => {
    const dir = await configDir({
      "postern.yaml": "outbound:\n  smarthost:\n    address: relay.test:587\n    ca_file: ca.pem\n",
    });
    const err = await configError(dir);
    assert.match(err.message, /outbound\.smarthost\.ca_file/);
    assert.match(err.message, /ca\.pem/);
  });

  it("loadConfig() refuses a smarthost address without a port", async () => {
    const dir = await configDir({
      "postern.yaml": "outbound:\n  smarthost:\n    address: relay.test\n",
    });
    const err = await configError(dir);
    assert.match(err.message, /outbound\.smarthost\.address/);
  });

  it("loadConfig() refuses a smarthost port outside 1-65535, as it does outbound.port", async () => {
    for (const port of ["0", "70000"]) {
      const dir = await configDir({
        "postern.yaml": `outbound:\n  smarthost:\n    address: relay.test:${port}\n`,
      });
      const err = await configError(dir).catch((e: unknown) => e);
      assert.ok(
        err instanceof ConfigError,
        `smarthost address relay.test:${port} was accepted: ${String(err)}`,
      );
      assert.match(err.message, /outbound\.smarthost\.address/);
    }
  });

  it("loadConfig() throws a ConfigError naming the route of an unknown virtual MTA", async () => {
    const dir = await configDir({
      "postern.yaml": [
        "outbound:",
        "  virtual_mtas:",
        "    bulk:",
        "      ehlo: bulk.ours.test",
        "  routes:",
        "    - sender_domain: news.ours.test",
        "      mta: bulk",
        "    - recipient_domain: gmail.test",
        "      mta: fast",
        "",
      ].join("\n"),
    });
    const err = await configError(dir);
    assert.match(err.message, /outbound\.routes\.1/);
    assert.match(err.message, /fast/);
  });

  it("loadConfig() throws a ConfigError for a route without a domain", async () => {
    const dir = await configDir({
      "postern.yaml": "outbound:\n  routes:\n    - mta: default\n",
    });
    const err = await configError(dir);
    assert.match(err.message, /outbound\.routes\.0/);
  });

  it("loadConfig() routes to named virtual MTAs and keeps the implicit default", async () => {
    const dir = await configDir({
      "postern.yaml": [
        "hostname: mail.ours.test",
        "outbound:",
        "  virtual_mtas:",
        "    bulk:",
        "      bind: 192.0.2.9",
        "      max_connections_per_destination: 1",
        "  routes:",
        "    - sender_domain: News.Ours.Test",
        "      mta: bulk",
        "",
      ].join("\n"),
    });
    const { outbound } = await loadConfig({ configDir: dir });
    assert.deepEqual([...outbound.virtualMtas.keys()].sort(), ["bulk", "default"]);
    assert.deepEqual(outbound.virtualMtas.get("bulk"), {
      name: "bulk",
      bind: "192.0.2.9",
      ehlo: "mail.ours.test",
      maxConnectionsPerDestination: 1,
    });
    assert.deepEqual(outbound.routes, [
      { senderDomain: "news.ours.test", recipientDomain: undefined, mta: "bulk" },
    ]);
  });

  it("loadConfig() refuses a virtual MTA name with other characters", async () => {
    const dir = await configDir({
      "postern.yaml": "outbound:\n  virtual_mtas:\n    bad name:\n      ehlo: x.test\n",
    });
    const err = await configError(dir);
    assert.match(err.message, /virtual_mtas/);
  });

  it("loadConfig() refuses an unknown key in the outbound section", async () => {
    const dir = await configDir({ "postern.yaml": "outbound:\n  max_conections: 5\n" });
    const err = await configError(dir);
    assert.match(err.message, /max_conections/);
  });

  it("loadConfig() refuses hooks.pre_delivery_attempt.workers other than 1", async () => {
    const dir = await configDir({
      "postern.yaml": "hooks:\n  pre_delivery_attempt:\n    workers: 2\n",
    });
    const err = await configError(dir);
    assert.match(err.message, /hooks\.pre_delivery_attempt\.workers/);
    const ok = await configDir({
      "postern.yaml": "hooks:\n  pre_delivery_attempt:\n    workers: 1\n",
    });
    const config = await loadConfig({ configDir: ok });
    assert.equal(config.hooks.points["pre-delivery-attempt"].workers, 1);
  });

  it("loadConfig() still allows several workers for other hook points", async () => {
    const dir = await configDir({ "postern.yaml": "hooks:\n  post_data:\n    workers: 3\n" });
    const config = await loadConfig({ configDir: dir });
    assert.equal(config.hooks.points["post-data"].workers, 3);
  });

  it("loadConfig() reads every DKIM key of a domain, and the selector postern.yaml pins", async () => {
    const pem = (bits: number) =>
      generateKeyPairSync("rsa", { modulusLength: bits }).privateKey.export({
        type: "pkcs8",
        format: "pem",
      }).toString();
    const dir = await configDir({
      "postern.yaml": "domains:\n  ours.test:\n    dkim: { selector: ed1 }\n",
      "domains/ours.test/users": "alice\n",
      "domains/ours.test/dkim/20240101.pem": pem(1024),
      "domains/ours.test/dkim/ed1.pem": generateKeyPairSync("ed25519").privateKey.export({
        type: "pkcs8",
        format: "pem",
      }).toString(),
      "domains/ours.test/dkim/notes.txt": "not a key\n",
      "domains/ours.test/dkim/zz_bad.pem": "not a selector, not read\n",
      "domains/other.test/dkim/readme.txt": "no keys yet\n",
    });
    const config = await loadConfig({ configDir: dir });
    const ours = config.domains.get("ours.test")!;
    assert.deepEqual(ours.dkimKeys.map((k) => [k.selector, k.algorithm]), [
      ["20240101", "rsa"],
      ["ed1", "ed25519"],
    ]);
    assert.equal(ours.dkimSelector, "ed1");
    assert.deepEqual(config.domains.get("other.test")?.dkimKeys, []);
  });

  it("loadConfig() refuses a key file that is not a private key, naming it", async () => {
    const dir = await configDir({ "domains/ours.test/dkim/s1.pem": "GARBAGE\n" });
    const err = await loadConfig({ configDir: dir }).then(() => undefined, (e) => e);
    assert.ok(err instanceof ConfigError);
    assert.equal(err.kind, "dkim_key");
    assert.match(err.message, /domains\/ours\.test\/dkim\/s1\.pem: not a usable DKIM private key/);
  });

  it("loadConfig() refuses a pinned selector that has no key", async () => {
    const dir = await configDir({
      "postern.yaml": "domains:\n  ours.test:\n    dkim: { selector: nope }\n",
      "domains/ours.test/users": "alice\n",
    });
    const err = await loadConfig({ configDir: dir }).then(() => undefined, (e) => e);
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /domains\.ours\.test\.dkim\.selector names "nope"/);
  });
});
