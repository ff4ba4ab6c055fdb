// Types of the npm package parse-prometheus-text-format, which ships none.

/** One sample of a counter, gauge or untyped family. */
export interface PrometheusMetric {
  value: string;
  labels?: Record<string, string>;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

/** One metric family. */
export interface PrometheusFamily {
  name: string;
  help: string;
  type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
  metrics: PrometheusMetric[];
}

/** Parses the text exposition format. */
export default function parsePrometheusTextFormat(text: string): PrometheusFamily[];
