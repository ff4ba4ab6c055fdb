/**
 * Opens the link to the fleet's server. ioredis (and the link built on it)
 * is loaded here, only when `cluster` is set, not at every start (issue 17).
 *
 * @module
 */

import type { ClusterLink } from "./client.ts";

/** Loads the link's code and creates the link (it connects in the background). */
export async function openClusterLink(
  ...args: ConstructorParameters<typeof ClusterLink>
): Promise<ClusterLink> {
  const { ClusterLink } = await import("./client.ts");
  return new ClusterLink(...args);
}
