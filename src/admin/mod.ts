/**
 * Operations: the admin HTTP API (status, reload, metrics, queue) behind a
 * bearer token, and the Prometheus rendering of the counters.
 *
 * @module
 */

export { adminApp } from "./app.ts";
export type { AdminDeps } from "./app.ts";
export { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
export type { Gauge } from "./metrics.ts";
export { OPENAPI } from "./openapi.ts";
export { adminProof, loadOrCreateToken, sameToken } from "./token.ts";
export type { AdminToken } from "./token.ts";
