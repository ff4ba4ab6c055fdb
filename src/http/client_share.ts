/**
 * Which refusals of an HTTP server's per-client share to log. The share
 * itself is counted by src/net/client_slots.ts, as SMTP's per-address limit
 * is; a client is an IPv4 address or an IPv6 /64 (src/net/client_key.ts).
 *
 * @module
 */

/**
 * Which refusals to log: the first of each client per interval, so that a
 * flood is one line a minute per client, not one per connection. At most
 * `maxClients` are remembered; past them, refusals of new clients go
 * unlogged until the oldest expire (a counter still counts them).
 */
export class ShareRefusals {
  #intervalMs: number;
  #maxClients: number;
  #clock: () => number;
  /** Client → when its refusal was last logged, oldest first. */
  #logged = new Map<string, number>();

  /** Logs a client's refusal at most once per `intervalMs`. */
  constructor(intervalMs: number, maxClients = 4096, clock: () => number = Date.now) {
    this.#intervalMs = intervalMs;
    this.#maxClients = maxClients;
    this.#clock = clock;
  }

  /** True when a refusal of `client` is to be logged now; it is then noted. */
  shouldLog(client: string): boolean {
    const now = this.#clock();
    // Entries go in as they are logged, so the expired ones come first.
    for (const [key, at] of this.#logged) {
      if (now - at < this.#intervalMs) break;
      this.#logged.delete(key);
    }
    if (this.#logged.has(client) || this.#logged.size >= this.#maxClients) return false;
    this.#logged.set(client, now);
    return true;
  }
}
