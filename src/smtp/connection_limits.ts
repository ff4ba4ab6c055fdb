/**
 * Connection counting for the total and per-client-IP limits.
 *
 * @module
 */

import { ClientSlots } from "../net/client_slots.ts";
import { clientKey } from "./rate_limits.ts";
import { Replies, type SmtpReply } from "./reply.ts";

/** Counts open connections and refuses those over the limits. */
export class ConnectionLimits {
  #max: number;
  #byIp: ClientSlots;
  #sessions = new Map<string, string>();

  /** Creates limits of `max` connections, `maxPerIp` from one address. */
  constructor(max: number, maxPerIp: number) {
    this.#max = max;
    this.#byIp = new ClientSlots(maxPerIp);
  }

  /**
   * Changes the limits (a policy reload). Connections already open stay;
   * the new limits apply to the next ones.
   */
  setLimits(max: number, maxPerIp: number): void {
    this.#max = max;
    this.#byIp.setMax(maxPerIp);
  }

  /** Connections currently counted. */
  get open(): number {
    return this.#sessions.size;
  }

  /**
   * Counts a new session, or returns the 421 reply that refuses it (RFC
   * 5321 section 3.8: the server may close with 421 when it must).
   */
  admit(sessionId: string, address: string): SmtpReply | undefined {
    if (this.#sessions.size >= this.#max) return Replies.tooManyConnections;
    // An IPv6 host counts as its /64, which it may use all of.
    const ip = clientKey(address);
    if (!this.#byIp.claim(ip)) return Replies.tooManyConnectionsFromIp;
    this.#sessions.set(sessionId, ip);
    return undefined;
  }

  /** Stops counting a session; sessions never admitted are ignored. */
  release(sessionId: string): void {
    const ip = this.#sessions.get(sessionId);
    if (ip === undefined) return;
    this.#sessions.delete(sessionId);
    this.#byIp.release(ip);
  }
}
