/**
 * The `cluster` section: its URL forms, its defaults, its files, and the
 * errors that name the field.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseClusterUrl } from "../../../src/cluster/settings.ts";
import { loadConfig } from "../../../src/config/mod.ts";
import { configDirs, configError } from "./config_dirs.ts";

describe("parseClusterUrl", () => {
  it("reads redis://, rediss:// and unix: URLs", () => {
    assert.deepEqual(parseClusterUrl("redis://127.0.0.1:6380"), {
      kind: "tcp",
      host: "127.0.0.1",
      port: 6380,
      tls: false,
      username: undefined,
      db: 0,
    });
    assert.deepEqual(parseClusterUrl("rediss://postern@valkey.example.net/2"), {
      kind: "tcp",
      host: "valkey.example.net",
      port: 6379,
      tls: true,
      username: "postern",
      db: 2,
    });
    assert.deepEqual(parseClusterUrl("redis://[::1]:7000"), {
      kind: "tcp",
      host: "::1",
      port: 7000,
      tls: false,
      username: undefined,
      db: 0,
    });
    assert.deepEqual(parseClusterUrl("unix:/run/valkey/valkey.sock"), {
      kind: "unix",
      path: "/run/valkey/valkey.sock",
    });
  });

  it("refuses a password in the URL, other schemes, relative sockets and odd paths", () => {
    assert.throws(() => parseClusterUrl("redis://:secret@127.0.0.1"), /password_file/);
    assert.throws(
      () => parseClusterUrl("http://127.0.0.1:6379"),
      /redis:\/\/, rediss:\/\/ or unix:/,
    );
    assert.throws(() => parseClusterUrl("unix:run/valkey.sock"), /absolute socket path/);
    assert.throws(() => parseClusterUrl("redis://127.0.0.1/x"), /database number/);
    assert.throws(() => parseClusterUrl("redis://127.0.0.1/?a=1"), /no query/);
    assert.throws(() => parseClusterUrl("not a url"), /not a URL/);
  });

  it("never quotes a password in what it refuses", () => {
    // The forms a password reaches the URL in, valid or not: with a user,
    // without one, with an "@" or a "/" in it, and in a URL that does not
    // parse at all (a port out of range).
    const urls = [
      "redis://:Pw-1a2b3c@127.0.0.1:6379",
      "redis://admin:Pw-1a2b3c@127.0.0.1",
      "rediss://:Pw-1a@2b3c@valkey.example.net",
      "redis://:Pw-1a/2b3c@127.0.0.1",
      "redis://:Pw-1a2b3c@127.0.0.1:99999",
      "http://:Pw-1a2b3c@127.0.0.1",
    ];
    for (const url of urls) {
      assert.throws(() => parseClusterUrl(url), (err: unknown) => {
        assert.ok(err instanceof SyntaxError, url);
        assert.doesNotMatch(err.message, /Pw-1a|2b3c/, url);
        assert.match(err.message, /\*\*\*@/, url);
        return true;
      });
    }
  });
});

describe("loadConfig: cluster", () => {
  const configDir = configDirs("postern-cluster-config-");

  it("is off without the section", async () => {
    const config = await loadConfig({ configDir: await configDir({ "postern.yaml": "" }) });
    assert.equal(config.cluster, undefined);
  });

  it("fills in the defaults; the node's name is the hostname setting", async () => {
    const dir = await configDir({
      "postern.yaml": "hostname: mx1.example.net\ncluster:\n  url: redis://10.0.0.5\n",
    });
    const { cluster } = await loadConfig({ configDir: dir });
    assert.deepEqual(cluster, {
      server: {
        kind: "tcp",
        host: "10.0.0.5",
        port: 6379,
        tls: false,
        username: undefined,
        db: 0,
      },
      url: "redis://10.0.0.5",
      password: undefined,
      tlsCa: undefined,
      nodeName: "mx1.example.net",
      timeoutMs: 50,
      heartbeatMs: 5_000,
      keyPrefix: "postern:",
    });
  });

  it("reads the password file (first line) and the CA file relative to the config dir", async () => {
    const dir = await configDir({
      "postern.yaml": [
        "cluster:",
        "  url: rediss://valkey.example.net:6380",
        "  password_file: valkey.password",
        "  tls_ca_file: ca.pem",
        "  node_name: node-7",
        "  timeout: 20ms",
        "  heartbeat: 2s",
        '  key_prefix: "fleet1:"',
        "",
      ].join("\n"),
      "valkey.password": "s3cret\nignored\n",
      "ca.pem": "-----BEGIN CERTIFICATE-----\n",
    });
    const { cluster } = await loadConfig({ configDir: dir });
    assert.equal(cluster?.password, "s3cret");
    assert.equal(cluster?.tlsCa, "-----BEGIN CERTIFICATE-----\n");
    assert.equal(cluster?.nodeName, "node-7");
    assert.equal(cluster?.timeoutMs, 20);
    assert.equal(cluster?.heartbeatMs, 2_000);
    assert.equal(cluster?.keyPrefix, "fleet1:");
  });

  it("names the field at fault", async () => {
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ["cluster:\n  url: redis://:pw@h\n", {}, /cluster\.url.*password_file/s],
      ["cluster:\n  url: ftp://h\n", {}, /cluster\.url/],
      ["cluster: {}\n", {}, /cluster\.url/],
      [
        "cluster:\n  url: redis://h\n  password_file: missing\n",
        {},
        /cluster\.password_file: cannot read/,
      ],
      ["cluster:\n  url: redis://h\n  password_file: p\n", { p: "\nx\n" }, /first line is empty/],
      [
        "cluster:\n  url: redis://h\n  tls_ca_file: ca.pem\n",
        { "ca.pem": "x" },
        /needs a rediss:\/\/ url/,
      ],
      ["cluster:\n  url: redis://h\n  node_name: a b\n", {}, /cluster\.node_name/],
      ["cluster:\n  url: redis://h\n  timeout: 0s\n", {}, /cluster\.timeout must be at least 1ms/],
      [
        "cluster:\n  url: redis://h\n  heartbeat: 10ms\n",
        {},
        /cluster\.heartbeat must be at least/,
      ],
      ["cluster:\n  url: redis://h\n  urls: x\n", {}, /urls/],
    ];
    for (const [yaml, files, message] of cases) {
      const err = await configError(await configDir({ "postern.yaml": yaml, ...files }));
      assert.match(err.message, message, yaml);
    }
  });

  it("keeps the password out of the configuration error", async () => {
    const err = await configError(
      await configDir({ "postern.yaml": "cluster:\n  url: redis://:S3cretValkey@127.0.0.1\n" }),
    );
    assert.match(err.message, /cluster\.url.*password_file/s);
    assert.doesNotMatch(err.message, /S3cretValkey/);
  });
});
