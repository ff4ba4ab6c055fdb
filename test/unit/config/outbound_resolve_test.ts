/**
 * `resolveOutbound()`: the `outbound` section of `postern.yaml` turned into
 * settings (defaults, virtual MTAs, routes, the smarthost and the files it
 * reads), with files read through the context a test gives it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULTS } from "../../../src/config/mod.ts";
import { resolveOutbound } from "../../../src/config/outbound.ts";
import type { ConfigFile } from "../../../src/config/mod.ts";

/** A context for `resolveOutbound()` whose files are the entries of `files`. */
function context(files: Record<string, string> = {}) {
  return {
    hostname: "mx.ours.test",
    mainFile: "/etc/postern/postern.yaml",
    relativeToConfig: (path: string) => path.startsWith("/") ? path : `/etc/postern/${path}`,
    readText: (path: string) => files[path],
  };
}

/** The error `work` throws (or its promise rejects with). */
async function rejection(work: Promise<unknown> | (() => unknown)): Promise<Error> {
  try {
    await (typeof work === "function" ? work() : work);
  } catch (err) {
    assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a rejection");
}

describe("resolveOutbound", () => {
  it("resolveOutbound() gives every default for a missing section", async () => {
    const outbound = await resolveOutbound(undefined, context());
    const d = DEFAULTS.outbound;
    assert.equal(outbound.port, d.port);
    assert.equal(outbound.maxConnections, d.maxConnections);
    assert.equal(outbound.maxConnectionsPerDestination, d.maxConnectionsPerDestination);
    assert.equal(outbound.messagesPerConnection, d.messagesPerConnection);
    assert.equal(outbound.connectionIdleMs, d.connectionIdleMs);
    assert.equal(outbound.connectTimeoutMs, d.connectTimeoutMs);
    assert.equal(outbound.commandTimeoutMs, d.commandTimeoutMs);
    assert.equal(outbound.mtaSts, d.mtaSts);
    assert.equal(outbound.dkimSign, d.dkimSign);
    assert.equal(outbound.delayWarningMs, d.delayWarningMs);
    assert.equal(outbound.sendidHeader, d.sendidHeader);
    assert.equal(outbound.listidHeader, d.listidHeader);
    assert.equal(outbound.smarthost, undefined);
    assert.deepEqual(outbound.routes, []);
    assert.deepEqual([...outbound.virtualMtas.keys()], ["default"]);
    assert.deepEqual(outbound.virtualMtas.get("default"), {
      name: "default",
      bind: undefined,
      ehlo: "mx.ours.test",
      maxConnectionsPerDestination: d.maxConnectionsPerDestination,
    });
  });

  it("resolveOutbound() keeps the implicit default MTA beside named ones", async () => {
    const outbound = await resolveOutbound({
      max_connections_per_destination: 4,
      virtual_mtas: {
        bulk: { bind: "192.0.2.7", ehlo: "bulk.ours.test", max_connections_per_destination: 2 },
        plain: null,
      },
    }, context());
    assert.deepEqual([...outbound.virtualMtas.keys()].sort(), ["bulk", "default", "plain"]);
    assert.deepEqual(outbound.virtualMtas.get("bulk"), {
      name: "bulk",
      bind: "192.0.2.7",
      ehlo: "bulk.ours.test",
      maxConnectionsPerDestination: 2,
    });
    assert.deepEqual(outbound.virtualMtas.get("plain"), {
      name: "plain",
      bind: undefined,
      ehlo: "mx.ours.test",
      maxConnectionsPerDestination: 4,
    });
    assert.equal(outbound.virtualMtas.get("default")!.maxConnectionsPerDestination, 4);
  });

  it("resolveOutbound() lets virtual_mtas override the default MTA", async () => {
    const outbound = await resolveOutbound(
      { virtual_mtas: { default: { ehlo: "out.ours.test" } } },
      context(),
    );
    assert.equal(outbound.virtualMtas.get("default")!.ehlo, "out.ours.test");
  });

  it("resolveOutbound() resolves routes with lower-cased domains", async () => {
    const outbound = await resolveOutbound({
      virtual_mtas: { bulk: null },
      routes: [
        { sender_domain: "News.Ours.TEST", mta: "bulk" },
        { recipient_domain: "GMail.test", mta: "default" },
      ],
    }, context());
    assert.deepEqual(outbound.routes, [
      { senderDomain: "news.ours.test", recipientDomain: undefined, mta: "bulk" },
      { senderDomain: undefined, recipientDomain: "gmail.test", mta: "default" },
    ]);
  });

  it("resolveOutbound() refuses a route naming an unknown virtual MTA", async () => {
    const err = await rejection(() =>
      resolveOutbound({
        virtual_mtas: { bulk: null },
        routes: [{ recipient_domain: "a.test", mta: "bulk" }, {
          recipient_domain: "b.test",
          mta: "nosuch",
        }],
      }, context())
    );
    assert.match(err.message, /postern\.yaml/);
    assert.match(err.message, /outbound\.routes\.1/);
    assert.match(err.message, /nosuch/);
  });

  it("resolveOutbound() refuses a route with neither sender_domain nor recipient_domain", async () => {
    const err = await rejection(() => resolveOutbound({ routes: [{ mta: "default" }] }, context()));
    assert.match(err.message, /outbound\.routes\.0/);
  });

  it("resolveOutbound() parses a smarthost host:port and defaults to STARTTLS", async () => {
    const outbound = await resolveOutbound(
      { smarthost: { address: "relay.provider.test:587" } },
      context(),
    );
    assert.deepEqual(outbound.smarthost, {
      host: "relay.provider.test",
      port: 587,
      tls: "starttls",
      auth: undefined,
      ca: undefined,
    });
  });

  it("resolveOutbound() parses a bracketed IPv6 smarthost address", async () => {
    const outbound = await resolveOutbound(
      { smarthost: { address: "[2001:db8::25]:465", tls: "implicit" } },
      context(),
    );
    assert.equal(outbound.smarthost?.host, "2001:db8::25");
    assert.equal(outbound.smarthost?.port, 465);
    assert.equal(outbound.smarthost?.tls, "implicit");
  });

  it("resolveOutbound() reads the first line of the password file, relative to the config", async () => {
    const outbound = await resolveOutbound(
      { smarthost: { address: "relay.test:587", username: "me", password_file: "relay.pass" } },
      context({ "/etc/postern/relay.pass": "s3cret\r\nignored\n" }),
    );
    assert.deepEqual(outbound.smarthost?.auth, { user: "me", pass: "s3cret" });
  });

  it("resolveOutbound() refuses a username without password_file, and the reverse", async () => {
    const noFile = await rejection(() =>
      resolveOutbound(
        { smarthost: { address: "relay.test:587", username: "me" } },
        context(),
      )
    );
    assert.match(noFile.message, /outbound\.smarthost/);
    assert.match(noFile.message, /password_file/);
    const noUser = await rejection(() =>
      resolveOutbound(
        { smarthost: { address: "relay.test:587", password_file: "relay.pass" } },
        context({ "/etc/postern/relay.pass": "s3cret\n" }),
      )
    );
    assert.match(noUser.message, /username/);
  });

  it("resolveOutbound() refuses a password file that is missing or starts with an empty line", async () => {
    const section = (file: string): ConfigFile["outbound"] => ({
      smarthost: { address: "relay.test:587", username: "me", password_file: file },
    });
    const missing = await rejection(() => resolveOutbound(section("nosuch.pass"), context()));
    assert.match(missing.message, /outbound\.smarthost\.password_file/);
    assert.match(missing.message, /\/etc\/postern\/nosuch\.pass/);
    const files = { "/etc/postern/empty.pass": "", "/etc/postern/blank.pass": "\nsecret\n" };
    const empty = await rejection(() => resolveOutbound(section("empty.pass"), context(files)));
    assert.match(empty.message, /password_file/);
    const blank = await rejection(() => resolveOutbound(section("blank.pass"), context(files)));
    assert.match(blank.message, /password_file/);
  });

  it("resolveOutbound() reads ca_file and refuses one that does not exist", async () => {
    const ok = await resolveOutbound(
      { smarthost: { address: "relay.test:587", ca_file: "/tls/relay-ca.pem" } },
      context({ "/tls/relay-ca.pem": "-----BEGIN CERTIFICATE-----\n" }),
    );
    assert.equal(ok.smarthost?.ca, "-----BEGIN CERTIFICATE-----\n");
    const err = await rejection(() =>
      resolveOutbound(
        { smarthost: { address: "relay.test:587", ca_file: "/tls/nosuch.pem" } },
        context(),
      )
    );
    assert.match(err.message, /outbound\.smarthost\.ca_file/);
    assert.match(err.message, /\/tls\/nosuch\.pem/);
  });
});
