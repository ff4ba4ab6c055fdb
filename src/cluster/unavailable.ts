/**
 * The error of a node that cannot reach the fleet's server; apart from the
 * link so that code which only checks for it does not load ioredis.
 *
 * @module
 */

/** Thrown by `ClusterLink.call` while the node counts locally. */
export class ClusterUnavailable extends Error {
  /** Creates the error with the reason the server cannot be used. */
  constructor(reason: string) {
    super(`Cannot reach the cluster server: ${reason}`);
    this.name = "ClusterUnavailable";
  }
}
