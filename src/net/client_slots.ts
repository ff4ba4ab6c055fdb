/**
 * Connections held per client, counted from accept to close, against a
 * share each client may hold at once: SMTP's `smtp.max_connections_per_ip`
 * (src/smtp/connection_limits.ts) and the HTTP servers' per-client share
 * (src/http/http1_server.ts). A client is a key from client_key.ts.
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

  /** Changes the share (a policy reload); slots already held stay held. */
  setMax(max: number): void {
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
