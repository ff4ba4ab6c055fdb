/**
 * The per-client share of an HTTP server's connections: how many each
 * client holds, and which of its refusals to log. A client is an IPv4
 * address or an IPv6 /64 (src/net/client_key.ts), as for SMTP.
 *
 * @module
 */

/** Connections held per client, from accept to close. */
export class ClientSlots {
  #max: number;
  #held = new Map<string, number>();

  /** Lets each client hold `max` connections at once. */
  constructor(max: number) {
    this.#max = max;
  }

  /** Clients holding a connection now. */
  get clients(): number {
    return this.#held.size;
  }

  /** Takes a slot for `client` and returns true, or returns false when it holds its share. */
  claim(client: string): boolean {
    const held = this.#held.get(client) ?? 0;
    if (held >= this.#max) return false;
    this.#held.set(client, held + 1);
    return true;
  }

  /** Gives back a slot `claim()` took. */
  release(client: string): void {
    const left = (this.#held.get(client) ?? 1) - 1;
    // Only clients holding something are remembered: the map stays as
    // small as the connections open.
    if (left <= 0) this.#held.delete(client);
    else this.#held.set(client, left);
  }
}

/**
 * Which refusals to log: the first of each client per interval, so that a
 * flood is one line a minute per client, not one per connection. At most
 * `maxClients` are remembered; past them, refusals of new clients go
 * unlogged until the oldest expire (a counter still counts them).
 */
export class RefusalLog {
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
