/**
 * Outbound connection slots and the cache of idle sessions.
 *
 * A slot is an open connection, busy or idle: at most `maxConnections` in
 * all and a per-destination limit for each destination key (virtual MTA and
 * domain). A delivery takes an idle session of its destination when there
 * is one (connection reuse, which is what lets a queue drain fast), else a
 * free slot to open a new one; when the total is reached, an idle session
 * of another destination is closed to make room.
 *
 * @module
 */

import type { SmtpSession } from "./client.ts";

/** What `checkout` hands out: an idle session to reuse, or a slot to open one in. */
export interface Lease {
  key: string;
  session: SmtpSession | undefined;
}

interface Idle {
  session: SmtpSession;
  timer: ReturnType<typeof setTimeout>;
}

interface Waiter {
  key: string;
  limit: number;
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

  /**
   * A session or slot for destination `key`, whose limit is `limit`;
   * waits while the limits are reached.
   */
  checkout(key: string, limit: number): Promise<Lease> {
    const lease = this.#tryLease(key, limit);
    if (lease) return Promise.resolve(lease);
    return new Promise((grant) => this.#waiters.push({ key, limit, grant }));
  }

  /**
   * Gives a lease back: `session` to keep it for reuse (when it is still
   * usable), undefined when it was closed or never opened.
   */
  checkin(key: string, session: SmtpSession | undefined): void {
    if (session && session.usable && !this.#closed) {
      // A delivery waiting for this destination takes it at once.
      const index = this.#waiters.findIndex((w) => w.key === key);
      if (index >= 0) {
        const [waiter] = this.#waiters.splice(index, 1);
        waiter!.grant({ key, session });
        return;
      }
      const timer = setTimeout(() => this.#expire(key, session), this.#idleMs);
      (timer as { unref?: () => void }).unref?.();
      const list = this.#idle.get(key) ?? [];
      list.push({ session, timer });
      this.#idle.set(key, list);
      this.#wake();
      return;
    }
    session?.close();
    this.#release(key);
  }

  /** Closes every idle session; leases out are closed when they come back. */
  close(): void {
    this.#closed = true;
    for (const [key, list] of this.#idle) {
      for (const idle of list) {
        clearTimeout(idle.timer);
        idle.session.close();
        this.#release(key);
      }
    }
    this.#idle.clear();
  }

  #tryLease(key: string, limit: number): Lease | undefined {
    const list = this.#idle.get(key);
    while (list && list.length > 0) {
      const idle = list.pop()!;
      clearTimeout(idle.timer);
      if (list.length === 0) this.#idle.delete(key);
      if (idle.session.usable) return { key, session: idle.session };
      this.#release(key);
    }
    if ((this.#perKey.get(key) ?? 0) >= limit) return undefined;
    if (this.#total >= this.#maxConnections && !this.#evictOther(key)) return undefined;
    this.#total++;
    this.#perKey.set(key, (this.#perKey.get(key) ?? 0) + 1);
    return { key, session: undefined };
  }

  /** Closes the oldest idle session of another destination to free a slot. */
  #evictOther(key: string): boolean {
    for (const [other, list] of this.#idle) {
      if (other === key || list.length === 0) continue;
      const idle = list.shift()!;
      if (list.length === 0) this.#idle.delete(other);
      clearTimeout(idle.timer);
      idle.session.close();
      this.#release(other, false);
      return true;
    }
    return false;
  }

  #expire(key: string, session: SmtpSession): void {
    const list = this.#idle.get(key);
    const index = list?.findIndex((idle) => idle.session === session) ?? -1;
    if (!list || index < 0) return;
    list.splice(index, 1);
    if (list.length === 0) this.#idle.delete(key);
    session.close();
    this.#release(key);
  }

  #release(key: string, wake = true): void {
    this.#total--;
    const count = (this.#perKey.get(key) ?? 1) - 1;
    if (count <= 0) this.#perKey.delete(key);
    else this.#perKey.set(key, count);
    if (wake) this.#wake();
  }

  /** Starts the waiting deliveries that now fit, in arrival order. */
  #wake(): void {
    for (let i = 0; i < this.#waiters.length;) {
      const waiter = this.#waiters[i]!;
      const lease = this.#tryLease(waiter.key, waiter.limit);
      if (lease) {
        this.#waiters.splice(i, 1);
        waiter.grant(lease);
      } else {
        i++;
      }
    }
  }
}
