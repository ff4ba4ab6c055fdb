/**
 * The counters, histograms and gauges in the Prometheus text exposition
 * format (version 0.0.4): one `# HELP` and `# TYPE` per family, every
 * metric prefixed `postern_`, counters ending in `_total`.
 *
 * @module
 */

import { type Counters, HISTOGRAM_BUCKETS } from "../log/mod.ts";

/** A value measured now. */
export interface Gauge {
  name: string;
  help: string;
  labels?: Record<string, string>;
  value: number;
}

/** The Content-Type of the text format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** What each counter family counts, for `# HELP`. */
const HELP: Record<string, string> = {
  smtp_connections_total: "SMTP connections accepted",
  smtp_messages_accepted_total: "Messages accepted (250 after DATA)",
  smtp_transactions_total: "SMTP transactions started (MAIL FROM)",
  smtp_rejected_total: "SMTP commands refused, by stage and reason",
  smtp_listener_restarts_total:
    "SMTP listeners found not accepting connections, closed and listening again",
  auth_results_total: "SPF, DKIM and DMARC results of checked messages",
  hook_calls_total: "Hook calls by hook and outcome",
  hook_call_seconds: "Time a hook call took, by hook",
  hook_answers_refused_total: "Hook answers refused for naming what the hook may not use",
  hook_timeouts_total: "Hook calls that ran past their timeout (the worker is retired)",
  hook_memory_kills_total: "Hook workers ended for using too much memory",
  hook_worker_starts_total: "Hook worker processes started",
  hook_worker_crashes_total: "Hook worker processes that exited unexpectedly",
  deliveries_total: "Delivery attempts by result",
  queue_completed_total: "Messages done with (every recipient sent or failed)",
  queue_recovered_total: "Messages found in the spool at start-up",
  queue_quarantined_total: "Spool items moved aside as corrupt",
  queue_unfinished_removed_total:
    "Unsealed spool files (messages never acknowledged) removed at start-up",
  policy_reloads_total: "Policy reloads by result",
  cluster_state_changes_total: "Switches between fleet-wide (shared) and local counts",
  cluster_local_checks_total:
    "Rate-limit checks counted locally because the cluster server did not answer",
  dsn_total: "Delivery status notifications queued (bounces and delay warnings), by kind",
  smtp_logins_total: "AUTH attempts on the submission listeners, by result and reason",
  acme_orders_total: "ACME certificate orders, by result (issued or failed)",
  dkim_key_errors_total: "Reloads that failed because a DKIM key folder or key could not be read",
  dkim_record_problems_total:
    "Times the DNS record of a domain's signing DKIM key was found gone or changed, by domain",
};

/** Renders everything in the text format. */
export function renderMetrics(counters: Counters, gauges: readonly Gauge[]): string {
  const families = new Map<string, { type: string; help: string; lines: string[] }>();
  const family = (name: string, type: string, help: string) => {
    let entry = families.get(name);
    if (!entry) {
      entry = { type, help, lines: [] };
      families.set(name, entry);
    }
    return entry;
  };

  for (const [key, value] of counters.snapshot()) {
    const brace = key.indexOf("{");
    const base = brace < 0 ? key : key.slice(0, brace);
    const labels = brace < 0 ? "" : key.slice(brace);
    const name = base.endsWith("_total") ? base : `${base}_total`;
    family(`postern_${name}`, "counter", HELP[name] ?? name.replaceAll("_", " ")).lines.push(
      `postern_${name}${labels} ${value}`,
    );
  }
  for (const histogram of counters.histograms()) {
    const name = `postern_${histogram.name}`;
    const entry = family(name, "histogram", HELP[histogram.name] ?? histogram.name);
    const labels = Object.entries(histogram.labels).map(([k, v]) => `${k}=${quote(v)}`);
    HISTOGRAM_BUCKETS.forEach((bound, i) => {
      entry.lines.push(
        `${name}_bucket{${[...labels, `le="${bound}"`].join(",")}} ${histogram.counts[i]}`,
      );
    });
    entry.lines.push(`${name}_bucket{${[...labels, 'le="+Inf"'].join(",")}} ${histogram.count}`);
    const plain = labels.length > 0 ? `{${labels.join(",")}}` : "";
    entry.lines.push(`${name}_sum${plain} ${histogram.sum}`);
    entry.lines.push(`${name}_count${plain} ${histogram.count}`);
  }
  for (const gauge of gauges) {
    const name = `postern_${gauge.name}`;
    const labels = Object.entries(gauge.labels ?? {}).map(([k, v]) => `${k}=${quote(v)}`);
    family(name, "gauge", gauge.help).lines.push(
      `${name}${labels.length > 0 ? `{${labels.join(",")}}` : ""} ${gauge.value}`,
    );
  }

  let text = "";
  for (const [name, entry] of families) {
    text += `# HELP ${name} ${entry.help}\n# TYPE ${name} ${entry.type}\n`;
    text += entry.lines.join("\n") + "\n";
  }
  return text;
}

/** A label value in double quotes, with `\`, `"` and newlines escaped as the format says. */
function quote(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}
