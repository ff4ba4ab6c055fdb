/**
 * Outbound connection slots and the cache of idle sessions.
 *
 * A slot is an open connection, busy or idle: at most `maxConnections` in
 * all and a limit for each limit key (virtual MTA and the domain limits
 * count by, which `deliver_as_if_to_domain` may make another domain's). A
 * delivery takes an idle session of its destination (virtual MTA and the
 * real domain, whose hosts the session reaches) when there is one
 * (connection reuse, which is what lets a queue drain fast), else a free
 * slot to open a new one; when the total is reached, an idle session of
 * another destination is closed to make room.
 *
 * @module
 */

import type { SmtpSession } from "./client.ts";

/** What `checkout` hands out: an idle session to reuse, or a slot to open one in. */
export interface Lease {
  session: SmtpSession | undefined;
}

/** Where a delivery goes: `key` names the destination, `limitKey` what its limit counts. */
export interface Destination {
  key: string;
  limitKey: string;
  limit: number;
}

interface Idle {
  session: SmtpSession;
  limitKey: string;
  timer: ReturnType<typeof setTimeout>;
}

interface Waiter {
  destination: Destination;
  grant: (lease: Lease) => void;
}

/** Connection slots and idle sessions. */
export class ConnectionPool {
  #maxConnections: number;
  #idleMs: number;
  #total = 0;
  #perKey = new Map<string, number>();
  #idle = new Map<string, Idle[]>();
  #waiters: Waiter[] = [];
  #closed = false;

  /** Creates the pool. */
  constructor(maxConnections: number, idleMs: number) {
    this.#maxConnections = maxConnections;
    this.#idleMs = idleMs;
  }

  /** Changes the limits (a policy reload); waiting deliveries may now start. */
  setLimits(maxConnections: number, idleMs: number): void {
    this.#maxConnections = maxConnections;
    this.#idleMs = idleMs;
    this.#wake();
  }

  /** Open connections, busy and idle. */
  get open(): number {
    return this.#total;
  }

  /** A session or slot for `destination`; waits while the limits are reached. */
  checkout(destination: Destination): Promise<Lease> {
    const lease = this.#tryLease(destination);
    if (lease) return Promise.resolve(lease);
    return new Promise((grant) => this.#waiters.push({ destination, grant }));
  }

  /**
   * Gives a lease back: `session` to keep it for reuse (when it is still
   * usable), undefined when it was closed or never opened.
   */
  checkin(destination: Destination, session: SmtpSession | undefined): void {
    const { key, limitKey } = destination;
    if (session && session.usable && !this.#closed) {
      // A delivery waiting for this destination takes it at once.
      const index = this.#waiters.findIndex((w) =>
        w.destination.key === key && w.destination.limitKey === limitKey
      );
      if (index >= 0) {
        const [waiter] = this.#waiters.splice(index, 1);
        waiter!.grant({ session });
        return;
      }
      const timer = setTimeout(() => this.#expire(key, session), this.#idleMs);
      (timer as { unref?: () => void }).unref?.();
      const list = this.#idle.get(key) ?? [];
      list.push({ session, limitKey, timer });
      this.#idle.set(key, list);
      this.#wake();
      return;
    }
    session?.close();
    this.#release(limitKey);
  }

  /** Closes every idle session; leases out are closed when they come back. */
  close(): void {
    this.#closed = true;
    for (const list of this.#idle.values()) {
      for (const idle of list) {
        clearTimeout(idle.timer);
        idle.session.close();
        this.#release(idle.limitKey);
      }
    }
    this.#idle.clear();
  }

  #tryLease({ key, limitKey, limit }: Destination): Lease | undefined {
    const list = this.#idle.get(key);
    // Idle sessions of this destination counted under another limit key
    // (a reload moved a route) stay for their own deliveries.
    const index = list?.findLastIndex((idle) => idle.limitKey === limitKey) ?? -1;
    if (list && index >= 0) {
      const [idle] = list.splice(index, 1);
      clearTimeout(idle!.timer);
      if (list.length === 0) this.#idle.delete(key);
      if (idle!.session.usable) return { session: idle!.session };
      this.#release(limitKey, false);
      return this.#tryLease({ key, limitKey, limit });
    }
    // An idle session of another destination under the same limit (as-if
    // domains) gives its slot up rather than making this delivery wait.
    if (
      (this.#perKey.get(limitKey) ?? 0) >= limit &&
      !this.#evict((other, idle) => other !== key && idle.limitKey === limitKey)
    ) {
      return undefined;
    }
    // A reload may have lowered the total: close idle sessions until under it.
    while (this.#total >= this.#maxConnections) {
      if (!this.#evict((other) => other !== key)) return undefined;
    }
    this.#total++;
    this.#perKey.set(limitKey, (this.#perKey.get(limitKey) ?? 0) + 1);
    return { session: undefined };
  }

  /** Closes the oldest idle session that `which` picks, to free its slot. */
  #evict(which: (key: string, idle: Idle) => boolean): boolean {
    for (const [other, list] of this.#idle) {
      const index = list.findIndex((idle) => which(other, idle));
      if (index < 0) continue;
      const [idle] = list.splice(index, 1);
      if (list.length === 0) this.#idle.delete(other);
      clearTimeout(idle!.timer);
      idle!.session.close();
      this.#release(idle!.limitKey, false);
      return true;
    }
    return false;
  }

  #expire(key: string, session: SmtpSession): void {
    const list = this.#idle.get(key);
    const index = list?.findIndex((idle) => idle.session === session) ?? -1;
    if (!list || index < 0) return;
    const [idle] = list.splice(index, 1);
    if (list.length === 0) this.#idle.delete(key);
    session.close();
    this.#release(idle!.limitKey);
  }

  #release(limitKey: string, wake = true): void {
    this.#total--;
    const count = (this.#perKey.get(limitKey) ?? 1) - 1;
    if (count <= 0) this.#perKey.delete(limitKey);
    else this.#perKey.set(limitKey, count);
    if (wake) this.#wake();
  }

  /** Starts the waiting deliveries that now fit, in arrival order. */
  #wake(): void {
    for (let i = 0; i < this.#waiters.length;) {
      const waiter = this.#waiters[i]!;
      const lease = this.#tryLease(waiter.destination);
      if (lease) {
        this.#waiters.splice(i, 1);
        waiter.grant(lease);
      } else {
        i++;
      }
    }
  }
}
