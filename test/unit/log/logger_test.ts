import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Counters, Logger, MailLog } from "../../../src/log/mod.ts";

const CLOCK = () => new Date("2026-01-02T03:04:05.678Z");

describe("Logger", () => {
  it("Logger writes ts, level, msg and fields as one line", () => {
    const lines: string[] = [];
    const logger = new Logger("info", (l) => lines.push(l), CLOCK);
    logger.info("started", { addr: "127.0.0.1:2525", note: "two words" });
    assert.deepEqual(lines, [
      'ts=2026-01-02T03:04:05.678Z level=info msg=started addr=127.0.0.1:2525 note="two words"\n',
    ]);
  });

  it("Logger drops lines below its level", () => {
    const lines: string[] = [];
    const logger = new Logger("warn", (l) => lines.push(l), CLOCK);
    logger.debug("d");
    logger.info("i");
    logger.warn("w");
    logger.error("e");
    assert.deepEqual(lines.map((l) => / level=(\w+) /.exec(l)![1]), ["warn", "error"]);
  });

  it("Logger quotes a message with spaces and writes no trailing space without fields", () => {
    const lines: string[] = [];
    new Logger("debug", (l) => lines.push(l), CLOCK).debug("hello world");
    assert.deepEqual(lines, ['ts=2026-01-02T03:04:05.678Z level=debug msg="hello world"\n']);
  });
});

describe("MailLog", () => {
  it("MailLog.delivery() writes one line and counts the result", () => {
    const lines: string[] = [];
    const counters = new Counters();
    const log = new MailLog((l) => lines.push(l), counters, CLOCK);
    log.delivery("0123456789abcdef", "alice@ex.test", "deferred", { error: "busy now" });
    assert.deepEqual(lines, [
      'ts=2026-01-02T03:04:05.678Z qid=0123456789abcdef event=delivery to=<alice@ex.test> result=deferred error="busy now"\n',
    ]);
    assert.equal(counters.get("deliveries_total", { result: "deferred" }), 1);
  });

  it("MailLog.rejected() counts by stage and reason and omits missing fields", () => {
    const lines: string[] = [];
    const counters = new Counters();
    const log = new MailLog((l) => lines.push(l), counters, CLOCK);
    log.rejected(
      { session: "s1" },
      { ip: "192.0.2.1" },
      "rcpt",
      "relay_denied",
      "550 5.7.1 Relaying denied",
      { to: "<x@remote.test>" },
    );
    assert.deepEqual(lines, [
      'ts=2026-01-02T03:04:05.678Z session=s1 event=rejected stage=rcpt reason=relay_denied client=192.0.2.1 to=<x@remote.test> reply="550 5.7.1 Relaying denied"\n',
    ]);
    assert.equal(counters.get("smtp_rejected_total", { stage: "rcpt", reason: "relay_denied" }), 1);
  });

  it("MailLog.queued() writes the envelope and counts an accepted message", () => {
    const lines: string[] = [];
    const counters = new Counters();
    const log = new MailLog((l) => lines.push(l), counters, CLOCK);
    log.queued("q1", { ip: "192.0.2.1", helo: "c.test" }, "", ["a@x.test", "b@x.test"], 123, true);
    // The comma is not a bare-token character, so the list is quoted.
    assert.deepEqual(lines, [
      'ts=2026-01-02T03:04:05.678Z qid=q1 event=queued client=192.0.2.1 helo=c.test from=<> to="<a@x.test>,<b@x.test>" size=123 tls=true\n',
    ]);
    assert.equal(counters.get("smtp_messages_accepted_total"), 1);
  });

  it("MailLog.completed() and connected() count their events", () => {
    const lines: string[] = [];
    const counters = new Counters();
    const log = new MailLog((l) => lines.push(l), counters, CLOCK);
    log.connected("s1", { ip: "192.0.2.1" });
    log.completed("q1", 2, 1);
    assert.equal(counters.get("smtp_connections_total"), 1);
    assert.equal(counters.get("queue_completed_total"), 1);
    assert.match(lines[1]!, /qid=q1 event=completed sent=2 failed=1\n$/);
  });
});
