/**
 * A fleet of Postern nodes: the link to the shared Redis or Valkey server,
 * rate limits and failed logins counted across the fleet, and the fleet view.
 *
 * @module
 */

export type { ClusterLink, ClusterLinkStatus } from "./client.ts";
export { openClusterLink } from "./open.ts";
export { ClusterUnavailable } from "./unavailable.ts";
export { Fleet } from "./fleet.ts";
export type { FleetNode, NodeFacts } from "./fleet.ts";
export { SharedFailures, type SharedFailuresOptions } from "./login_failures.ts";
export { SharedRateLimits } from "./rate_limits.ts";
export { ClusterSharedStore } from "./shared_state.ts";
export { parseClusterUrl } from "./settings.ts";
export type { ClusterConfig, ClusterServer } from "./settings.ts";
