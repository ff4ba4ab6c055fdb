import assert from "node:assert/strict";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { adminListenWarning, type AdminOptions, startAdmin } from "../../../src/admin/server.ts";
import { Logger } from "../../../src/log/mod.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

describe("adminListenWarning", () => {
  it("says nothing of a loopback address", () => {
    for (
      const listen of [
        "127.0.0.1:2526",
        "127.1.2.3:0",
        "[::1]:2526",
        "[0:0:0:0:0:0:0:1]:2526",
        "[::ffff:127.0.0.1]:2526",
        "localhost:2526",
      ]
    ) {
      assert.equal(adminListenWarning(listen), undefined, listen);
    }
  });

  it("names any other address and the risk of plain HTTP", () => {
    for (
      const listen of [
        "0.0.0.0:2526",
        "[::]:2526",
        "192.0.2.7:2526",
        "[2001:db8::1]:2526",
        "[::ffff:192.0.2.7]:2526",
        "128.0.0.1:2526",
        "mail.example.com:2526",
      ]
    ) {
      const warning = adminListenWarning(listen) ?? "";
      assert.ok(warning.includes(`admin.listen ${listen} is not a loopback address`), listen);
      assert.match(warning, /plain HTTP/);
      assert.match(warning, /bearer token/);
    }
  });
});

describe("startAdmin", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir("postern-admin-");
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it("logs the warning for a non-loopback address at start", async () => {
    const lines: string[] = [];
    const options: AdminOptions = {
      // TEST-NET-1: not this host's, so nothing is exposed: the bind fails
      // after the warning (or, on a host that has it, the server stops).
      listen: "192.0.2.7:0",
      tokenFile: join(dir, "admin.token"),
      runDir: join(dir, "run"),
      logger: new Logger("info", (line) => lines.push(line)),
      deps: {} as AdminOptions["deps"],
    };
    try {
      await (await startAdmin(options)).close();
    } catch (err) {
      assert.match((err as Error).message, /cannot listen on 192\.0\.2\.7:0/);
    }
    const warnings = lines.filter((l) => / level=warn /.test(l));
    assert.equal(warnings.length, 1, lines.join(""));
    assert.match(warnings[0]!, /admin\.listen 192\.0\.2\.7:0 is not a loopback address/);
  });

  it("logs no warning on loopback", async () => {
    const lines: string[] = [];
    const server = await startAdmin({
      listen: "127.0.0.1:0",
      tokenFile: join(dir, "admin.token"),
      runDir: join(dir, "run"),
      logger: new Logger("info", (line) => lines.push(line)),
      deps: {} as AdminOptions["deps"],
    });
    await server.close();
    assert.deepEqual(lines.filter((l) => / level=warn /.test(l)), []);
  });
});
