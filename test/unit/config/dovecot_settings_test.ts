/**
 * The Dovecot settings of postern.yaml: delivery.lmtp (globally and per
 * domain), auth.dovecot and auth.dovecot_userdb.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "../../../src/config/mod.ts";
import { configDirs } from "./config_dirs.ts";

describe("loadConfig() with Dovecot settings", () => {
  const configDir = configDirs("postern-config-");

  it("gives every domain delivery.lmtp unless the domain says otherwise", async () => {
    const dir = await configDir({
      "postern.yaml": [
        "delivery:",
        '  lmtp: "unix:/run/dovecot/lmtp"',
        "domains:",
        '  tcp.example: { delivery: { lmtp: "127.0.0.1:24" } }',
        '  maildir.example: { delivery: { lmtp: "off" } }',
        "  plain.example: {}",
        "",
      ].join("\n"),
      "domains/relative.example/users": "a\n",
    });
    const config = await loadConfig({ configDir: dir });
    assert.deepEqual(config.domains.get("plain.example")!.lmtp, {
      kind: "unix",
      path: "/run/dovecot/lmtp",
    });
    assert.deepEqual(config.domains.get("relative.example")!.lmtp, {
      kind: "unix",
      path: "/run/dovecot/lmtp",
    });
    assert.deepEqual(config.domains.get("tcp.example")!.lmtp, {
      kind: "tcp",
      host: "127.0.0.1",
      port: 24,
    });
    assert.equal(config.domains.get("maildir.example")!.lmtp, undefined);
  });

  it("has no LMTP and no Dovecot auth by default", async () => {
    const config = await loadConfig({
      configDir: await configDir({ "domains/a.example/users": "" }),
    });
    assert.equal(config.domains.get("a.example")!.lmtp, undefined);
    assert.equal(config.auth.dovecot, undefined);
    assert.equal(config.auth.dovecotUserdb, undefined);
  });

  it("reads auth.dovecot and auth.dovecot_userdb, socket paths relative to the config directory", async () => {
    const dir = await configDir({
      "postern.yaml": 'auth:\n  dovecot: "unix:run/auth-client"\n  dovecot_userdb: "[::1]:12345"\n',
    });
    const config = await loadConfig({ configDir: dir });
    assert.deepEqual(config.auth.dovecot, { kind: "unix", path: join(dir, "run/auth-client") });
    assert.deepEqual(config.auth.dovecotUserdb, { kind: "tcp", host: "::1", port: 12345 });
  });

  it("refuses an address that is neither unix:<path> nor host:port, naming the field", async () => {
    const dir = await configDir({ "postern.yaml": 'delivery:\n  lmtp: "/run/dovecot/lmtp"\n' });
    await assert.rejects(
      loadConfig({ configDir: dir }),
      (err: unknown) =>
        err instanceof ConfigError && /:2: delivery\.lmtp must be "unix:/.test(err.message),
    );
  });
});
