import assert from "node:assert/strict";
import { describe, it } from "node:test";
// @deno-types="../../support/parse_prometheus.d.ts"
import parsePrometheus from "parse-prometheus-text-format";
import { renderMetrics } from "../../../src/admin/mod.ts";
import { Counters } from "../../../src/log/mod.ts";

describe("renderMetrics", () => {
  it("renders counters with _total names, labels, HELP and TYPE, parseable", () => {
    const counters = new Counters();
    counters.inc("smtp_rejected_total", { stage: "rcpt", reason: "no_such_user" }, 3);
    counters.inc("hook_calls", { hook: "post-data", outcome: "accept" });
    const text = renderMetrics(counters, []);
    assert.match(text, /^# HELP postern_smtp_rejected_total /m);
    assert.match(text, /^# TYPE postern_hook_calls_total counter$/m);
    const families = parsePrometheus(text);
    const rejected = families.find((f) => f.name === "postern_smtp_rejected_total")!;
    assert.equal(rejected.type, "COUNTER");
    assert.deepEqual(rejected.metrics, [
      { value: "3", labels: { reason: "no_such_user", stage: "rcpt" } },
    ]);
    assert.equal(
      families.find((f) => f.name === "postern_hook_calls_total")!.metrics[0]!.value,
      "1",
    );
  });

  it("has HELP text of its own for every counter Postern counts", () => {
    const counters = new Counters();
    for (
      const name of [
        "dsn_total",
        "smtp_logins_total",
        "dkim_key_errors_total",
        "dkim_record_problems_total",
      ]
    ) counters.inc(name);
    const text = renderMetrics(counters, []);
    for (const name of ["dsn", "smtp_logins", "dkim_key_errors", "dkim_record_problems"]) {
      const help = new RegExp(`^# HELP postern_${name}_total (.*)$`, "m").exec(text)?.[1];
      assert.ok(help, `no HELP for ${name}`);
      assert.notEqual(help, `${name.replaceAll("_", " ")} total`, `only the fallback for ${name}`);
    }
  });

  it("renders histograms with cumulative buckets, +Inf, sum and count", () => {
    const counters = new Counters();
    for (const seconds of [0.0004, 0.003, 0.003, 0.2, 90]) {
      counters.observe("reload_seconds", {}, seconds);
      counters.observe("hook_call_seconds", { hook: "post-data" }, seconds);
    }
    const text = renderMetrics(counters, []);
    // The parser reads histograms without labels only.
    const histogram = parsePrometheus(text).find((f) => f.name === "postern_reload_seconds")!;
    assert.equal(histogram.type, "HISTOGRAM");
    const metric = histogram.metrics[0]!;
    assert.equal(metric.buckets?.["0.001"], "1");
    assert.equal(metric.buckets?.["0.005"], "3");
    assert.equal(metric.buckets?.["0.25"], "4");
    assert.equal(metric.buckets?.["60"], "4");
    assert.equal(metric.buckets?.["+Inf"], "5");
    assert.equal(metric.count, "5");
    assert.ok(Math.abs(Number(metric.sum) - 90.2064) < 1e-9);
    // With labels: the same lines, the labels ahead of le.
    assert.match(text, /^postern_hook_call_seconds_bucket\{hook="post-data",le="0\.005"\} 3$/m);
    assert.match(text, /^postern_hook_call_seconds_bucket\{hook="post-data",le="\+Inf"\} 5$/m);
    assert.match(text, /^postern_hook_call_seconds_count\{hook="post-data"\} 5$/m);
  });

  it("renders gauges and escapes label values as the format says", () => {
    const text = renderMetrics(new Counters(), [
      { name: "queue_messages", help: "Messages in the queue", value: 7 },
      { name: "odd", help: "x", labels: { path: 'C:\\dir "q"\nz' }, value: 1 },
    ]);
    assert.match(text, /^postern_odd\{path="C:\\\\dir \\"q\\"\\nz"\} 1$/m);
    const families = parsePrometheus(text);
    assert.equal(families.find((f) => f.name === "postern_queue_messages")!.type, "GAUGE");
    assert.equal(
      families.find((f) => f.name === "postern_odd")!.metrics[0]!.labels?.path,
      'C:\\dir "q"\nz',
    );
  });
});
