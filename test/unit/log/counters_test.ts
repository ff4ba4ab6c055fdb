import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Counters } from "../../../src/log/mod.ts";

describe("Counters", () => {
  it("get() returns 0 when a counter was never incremented", () => {
    const counters = new Counters();
    assert.equal(counters.get("smtp_connections_total"), 0);
    assert.equal(counters.get("deliveries_total", { result: "sent" }), 0);
  });

  it("inc() adds 1 by default and the given amount otherwise", () => {
    const counters = new Counters();
    counters.inc("x");
    counters.inc("x");
    counters.inc("x", {}, 5);
    assert.equal(counters.get("x"), 7);
  });

  it("inc() keeps counters with different labels apart", () => {
    const counters = new Counters();
    counters.inc("deliveries_total", { result: "sent" });
    counters.inc("deliveries_total", { result: "sent" });
    counters.inc("deliveries_total", { result: "failed" });
    assert.equal(counters.get("deliveries_total", { result: "sent" }), 2);
    assert.equal(counters.get("deliveries_total", { result: "failed" }), 1);
    assert.equal(counters.get("deliveries_total"), 0);
  });

  it("inc() treats labels given in another order as the same counter", () => {
    const counters = new Counters();
    counters.inc("smtp_rejected_total", { stage: "rcpt", reason: "relay_denied" });
    counters.inc("smtp_rejected_total", { reason: "relay_denied", stage: "rcpt" });
    assert.equal(counters.get("smtp_rejected_total", { stage: "rcpt", reason: "relay_denied" }), 2);
  });

  it('snapshot() lists name{label="v"} keys sorted, with labels sorted and quoted', () => {
    const counters = new Counters();
    counters.inc("b_total");
    counters.inc("a_total", { z: "1", a: 'say "x"' });
    assert.deepEqual(counters.snapshot(), [
      ['a_total{a="say \\"x\\"",z="1"}', 1],
      ["b_total", 1],
    ]);
  });

  it("snapshot() does not confuse label values that contain separators", () => {
    const counters = new Counters();
    counters.inc("c", { a: '1",b="2' });
    counters.inc("c", { a: "1", b: "2" });
    assert.equal(counters.get("c", { a: "1", b: "2" }), 1);
    assert.equal(counters.snapshot().length, 2);
  });
});
