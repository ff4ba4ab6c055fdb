/**
 * The value schemas of postern.yaml: a duration is finite and within what
 * its use can take, a count is a whole number a loop can reach, and the
 * error names the setting and its maximum.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as v from "valibot";
import {
  Count,
  DnsServer,
  Duration,
  ListenAddress,
  listenAddressProblem,
  QUEUE_SPAN,
  TIMER,
} from "../../../src/config/fields.ts";
import { configDirs, configError } from "./config_dirs.ts";
import { loadConfig } from "../../../src/config/mod.ts";

/** The messages of the issues `schema` finds in `value`, or the output. */
function parse(schema: v.GenericSchema, value: unknown): { output?: unknown; errors?: string[] } {
  const result = v.safeParse(schema, value);
  return result.success
    ? { output: result.output }
    : { errors: result.issues.map((issue) => issue.message) };
}

describe("Duration", () => {
  it("Duration(TIMER) refuses what no timer can wait, and says the maximum", () => {
    for (const value of [1e308, "1" + "0".repeat(400), "30d", 2 ** 31 / 1000]) {
      const { errors } = parse(Duration(TIMER), value);
      assert.ok(errors, `${String(value).slice(0, 20)} passed`);
      assert.match(errors[0]!, /^must be at most 24d20h31m23\.647s \(2147483647 ms, /);
    }
    assert.deepEqual(parse(Duration(TIMER), "24d"), { output: 24 * 86_400_000 });
    assert.deepEqual(parse(Duration(TIMER), (2 ** 31 - 1) / 1000), { output: 2 ** 31 - 1 });
  });

  it("Duration(QUEUE_SPAN) takes a month, not more than a year", () => {
    assert.deepEqual(parse(Duration(QUEUE_SPAN), "30d"), { output: 30 * 86_400_000 });
    assert.match(parse(Duration(QUEUE_SPAN), "366d").errors![0]!, /^must be at most 365d /);
  });

  it("Duration() cuts a long value short in its message", () => {
    const { errors } = parse(Duration(TIMER), "9".repeat(400));
    assert.match(errors![0]!, /not "9{20}…" \(400 characters\)$/);
  });
});

describe("Count", () => {
  it("Count() refuses a whole number past what a double counts exactly", () => {
    assert.deepEqual(parse(Count(1), 1e300).errors, ["must be at most 9007199254740991"]);
    assert.deepEqual(parse(Count(1, 64), 65).errors, ["must be at most 64"]);
    assert.deepEqual(parse(Count(1, 64), 64), { output: 64 });
  });
});

describe("addresses", () => {
  it("ListenAddress refuses a port past 65535, naming it, and takes 0 to 65535", () => {
    assert.deepEqual(parse(ListenAddress, "127.0.0.1:99999").errors, [
      "must have a port from 0 to 65535, not 99999",
    ]);
    assert.deepEqual(parse(ListenAddress, "[::1]:65536").errors, [
      "must have a port from 0 to 65535, not 65536",
    ]);
    for (const ok of ["127.0.0.1:0", "[::1]:25", "mx.example.test:65535"]) {
      assert.deepEqual(parse(ListenAddress, ok), { output: ok });
    }
    assert.equal(
      listenAddressProblem("0.0.0.0:70000"),
      "must have a port from 0 to 65535, not 70000",
    );
    assert.equal(listenAddressProblem("0.0.0.0:25"), undefined);
  });

  it("DnsServer refuses a port outside 1 to 65535", () => {
    for (const bad of ["127.0.0.1:0", "127.0.0.1:99999", "[::1]:70000"]) {
      assert.match(parse(DnsServer, bad).errors![0]!, /the port is not in 1-65535$/, bad);
    }
    for (const ok of ["127.0.0.1", "127.0.0.1:5353", "2001:db8::1", "[::1]:53"]) {
      assert.deepEqual(parse(DnsServer, ok), { output: ok });
    }
  });
});

describe("limits in postern.yaml", () => {
  const configDir = configDirs("postern-fields-");

  it("loadConfig() names the setting, its line and its maximum for a huge idle_timeout", async () => {
    const dir = await configDir({ "postern.yaml": "smtp:\n  idle_timeout: 1e308\n" });
    const error = await configError(dir);
    assert.match(
      error.message,
      /postern\.yaml:2: smtp\.idle_timeout must be at most 24d20h31m23\.647s \(2147483647 ms/,
    );
  });

  it("loadConfig() takes reload.removal_delay up to a minute, 300 ms by default", async () => {
    const dir = await configDir({ "postern.yaml": "reload:\n  removal_delay: 1m\n" });
    assert.equal((await loadConfig({ configDir: dir })).reload.removalDelayMs, 60_000);
    const empty = await configDir({});
    assert.equal((await loadConfig({ configDir: empty })).reload.removalDelayMs, 300);
    const long = await configDir({ "postern.yaml": "reload:\n  removal_delay: 61s\n" });
    assert.match(
      (await configError(long)).message,
      /postern\.yaml:2: reload\.removal_delay must be at most 1m /,
    );
  });

  it("loadConfig() refuses a duration of 400 digits, and 30 days for a timer", async () => {
    const digits = await configDir({
      "postern.yaml": `smtp:\n  command_timeout: "1${"0".repeat(400)}"\n`,
    });
    assert.match((await configError(digits)).message, /smtp\.command_timeout must be at most/);
    const month = await configDir({ "postern.yaml": "outbound:\n  connection_idle: 30d\n" });
    assert.match((await configError(month)).message, /outbound\.connection_idle must be at most/);
  });

  it("loadConfig() takes 30 days where the queue compares ages, and RFC 8461's max_age", async () => {
    const dir = await configDir({ "postern.yaml": "delivery:\n  max_queue_lifetime: 30d\n" });
    assert.equal(
      (await loadConfig({ configDir: dir })).delivery.maxQueueLifetimeMs,
      30 * 86_400_000,
    );
    const sts = await configDir({
      "postern.yaml": [
        "tls:",
        "  acme: { email: postmaster@example.test }",
        "domains:",
        "  example.test:",
        "    mta_sts: { mode: testing, max_age: 366d }",
        "",
      ].join("\n"),
    });
    assert.match(
      (await configError(sts)).message,
      /domains\.example\.test\.mta_sts\.max_age must be at most 365d6h \(31557600 s/,
    );
  });

  it("loadConfig() refuses more hook workers than a pool starts", async () => {
    const dir = await configDir({ "postern.yaml": "hooks:\n  post_data:\n    workers: 1e300\n" });
    assert.match((await configError(dir)).message, /hooks\.post_data\.workers must be at most 64/);
  });

  it("loadConfig() names every listen setting whose port is out of range, with its line", async () => {
    const dir = await configDir({
      "postern.yaml": [
        "smtp:",
        '  listen: ["127.0.0.1:99999"]',
        "submission:",
        '  listen_tls: ["[::1]:70000"]',
        "admin:",
        '  listen: "127.0.0.1:65536"',
        "",
      ].join("\n"),
    });
    const message = (await configError(dir)).message;
    assert.match(
      message,
      /postern\.yaml:2: smtp\.listen\.0 must have a port from 0 to 65535, not 99999/,
    );
    assert.match(
      message,
      /:4: submission\.listen_tls\.0 must have a port from 0 to 65535, not 70000/,
    );
    assert.match(message, /:6: admin\.listen must have a port from 0 to 65535, not 65536/);
  });
});
