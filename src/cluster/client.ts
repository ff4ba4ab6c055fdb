/**
 * The link of one node to the fleet's shared Redis or Valkey server.
 *
 * It is either "shared" (the server answers) or "local" (it does not, or
 * too slowly: every caller then falls back to this node's own counts).
 * A node never waits for the server to start, and mail never waits for a
 * server that is down: commands are not queued while disconnected, each
 * has a deadline of `cluster.timeout`, and the first failure switches the
 * node to local counts, with one log line and a counter. The client
 * reconnects by itself; a PING that answers in time switches back.
 *
 * @module
 */

import { Redis, type RedisOptions } from "ioredis";
import type { Counters, Logger } from "../log/mod.ts";
import type { ClusterConfig } from "./settings.ts";
import { ClusterUnavailable } from "./unavailable.ts";

export { ClusterUnavailable };

/** What `/status` and `/cluster` show of the link. */
export interface ClusterLinkStatus {
  node: string;
  server: string;
  /** shared: counts are the fleet's; local: this node's own, the server being unreachable. */
  state: "shared" | "local";
  since: string;
  last_error: string | null;
}

/** How long a node waits between probes of a server that stopped answering. */
const PROBE_INTERVAL_MS = 1_000;
/** At most one outage a minute is told in the log. */
const FLAP_LOG_MS = 60_000;

/** A node's connection to the shared server, with its shared/local state. */
export class ClusterLink {
  /** The `cluster` settings it was started with. */
  readonly config: ClusterConfig;
  #redis: Redis;
  #logger: Logger;
  #counters: Counters;
  #shared = false;
  #since = new Date();
  #lastError: string | null = null;
  #probe: ReturnType<typeof setInterval> | undefined;
  #probing = false;
  #closed = false;
  #onShared: Array<() => void> = [];
  #everShared = false;
  #warned = false;
  /** When an outage was last told in the log, whether the current one was, and how many were not. */
  #toldAt = -Infinity;
  #told = true;
  #untold = 0;

  /** Starts connecting in the background; the node counts locally until the server answers. */
  constructor(config: ClusterConfig, logger: Logger, counters: Counters) {
    this.config = config;
    this.#logger = logger;
    this.#counters = counters;
    this.#redis = new Redis(redisOptions(config));
    this.#redis.on("ready", () => void this.#check());
    this.#redis.on("error", (err: Error) => this.fail(err.message));
    this.#redis.on("close", () => this.fail("connection closed"));
    this.#startProbe();
  }

  /** True while the server answers: counts are the fleet's. */
  get shared(): boolean {
    return this.#shared;
  }

  /** Calls `handler` each time the server answers again (and first answers). */
  onShared(handler: () => void): void {
    this.#onShared.push(handler);
  }

  /** The client, for the modules that define their scripts on it. */
  get redis(): Redis {
    return this.#redis;
  }

  /** The name of a key under the fleet's prefix. */
  key(...parts: string[]): string {
    return this.config.keyPrefix + parts.join(":");
  }

  /**
   * Runs `op` against the server within the timeout; a failure switches
   * the node to local counts and rethrows as {@linkcode ClusterUnavailable}.
   */
  async call<T>(op: (redis: Redis) => Promise<T>): Promise<T> {
    if (!this.#shared) throw new ClusterUnavailable(this.#lastError ?? "not connected");
    try {
      return await withDeadline(op(this.#redis), this.config.timeoutMs);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.fail(reason);
      throw new ClusterUnavailable(reason);
    }
  }

  /** Switches to local counts (once; later failures only update the reason). */
  fail(reason: string): void {
    this.#lastError = reason;
    if (this.#closed) return;
    if (!this.#shared) {
      // Never reached yet: said once, at the first failure.
      if (!this.#everShared && !this.#warned) {
        this.#warned = true;
        this.#say("warn", "cluster server unavailable; counting locally until it answers", reason);
      }
      return;
    }
    this.#shared = false;
    this.#since = new Date();
    this.#counters.inc("cluster_state_changes_total", { state: "local" });
    // A server that comes and goes (or a node too loaded to hear it in
    // time) would flood the log: one outage is told per minute, the
    // others counted into the next line (and every change in /metrics).
    const now = Date.now();
    if (now - this.#toldAt >= FLAP_LOG_MS) {
      this.#toldAt = now;
      this.#told = true;
      this.#say("warn", "cluster server unavailable; counting locally until it answers", reason);
      this.#untold = 0;
    } else {
      this.#told = false;
      this.#untold++;
    }
    this.#startProbe();
  }

  /** One log line about the link, with the outages not told since the last. */
  #say(level: "warn" | "info", msg: string, error?: string): void {
    this.#logger[level](msg, {
      node: this.config.nodeName,
      server: this.config.url,
      ...(error === undefined ? {} : { error }),
      ...(this.#untold > 0 ? { untold_outages: this.#untold } : {}),
    });
  }

  /** The link's state for `/status`. */
  status(): ClusterLinkStatus {
    return {
      node: this.config.nodeName,
      server: this.config.url,
      state: this.#shared ? "shared" : "local",
      since: this.#since.toISOString(),
      last_error: this.#lastError,
    };
  }

  /** Disconnects; nothing is called on the server afterwards. */
  close(): void {
    this.#closed = true;
    this.#shared = false;
    if (this.#probe !== undefined) clearInterval(this.#probe);
    this.#redis.disconnect();
  }

  #startProbe(): void {
    if (this.#probe !== undefined || this.#closed) return;
    this.#probe = setInterval(() => void this.#check(), PROBE_INTERVAL_MS);
  }

  /** A PING that answers within the timeout switches back to shared counts. */
  async #check(): Promise<void> {
    if (this.#shared || this.#probing || this.#closed || this.#redis.status !== "ready") return;
    this.#probing = true;
    try {
      await withDeadline(this.#redis.ping(), this.config.timeoutMs);
      if (this.#closed) return;
      this.#shared = true;
      this.#everShared = true;
      this.#since = new Date();
      if (this.#probe !== undefined) clearInterval(this.#probe);
      this.#probe = undefined;
      this.#counters.inc("cluster_state_changes_total", { state: "shared" });
      // Told when its outage was (and the first time).
      if (this.#told) this.#say("info", "cluster server answers; counting across the fleet");
      for (const handler of this.#onShared) handler();
    } catch (err) {
      this.#lastError = err instanceof Error ? err.message : String(err);
    } finally {
      this.#probing = false;
    }
  }
}

/** Times a deadline is moved on because its timer fired late (a busy loop), at most. */
const MAX_LATE_EXTENSIONS = 3;

/**
 * `answer`, or a rejection once `ms` have passed without it. A timer that
 * fires late is most often a busy event loop rather than a slow server
 * (seen on a loaded 2-core machine with ioredis's commandTimeout, which
 * flapped between shared and local counts, and in the bench's cluster
 * row, where a node under load fell back to local counts):
 * - when it fires more than `ms / 2` late, the node itself was not
 *   listening, so the server gets another `ms` (at most
 *   {@linkcode MAX_LATE_EXTENSIONS} times: a server that is down is still
 *   told within a few timeouts, and a closed connection at once);
 * - before giving up, the I/O of one more turn is let in, as the answer
 *   may be read and waiting. That turn is a 0 ms timer: on Deno and on
 *   Bun an immediate queued by the timer runs before the socket's pending
 *   reply is read, while the next timer runs after it.
 */
function withDeadline<T>(answer: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let extensions = 0;
    let timer: ReturnType<typeof setTimeout>;
    const giveUp = () => {
      if (settled) return;
      settled = true;
      reject(new Error(`no answer within ${ms} ms`));
    };
    const arm = () => {
      const due = performance.now() + ms;
      timer = setTimeout(() => {
        if (performance.now() - due > ms / 2 && extensions < MAX_LATE_EXTENSIONS) {
          extensions++;
          arm();
        } else {
          timer = setTimeout(giveUp, 0);
        }
      }, ms);
    };
    arm();
    answer.then((value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(value);
    }, (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    });
  });
}

function redisOptions(config: ClusterConfig): Omit<RedisOptions, "replyMapping"> {
  const { server } = config;
  const common: Omit<RedisOptions, "replyMapping"> = {
    // Mail never waits for a server that is down: no queue while
    // disconnected, no retry of a failed command, a deadline on each.
    // (The deadline is withDeadline's, not ioredis's commandTimeout.)
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: Math.max(1_000, config.timeoutMs),
    // Reconnect forever, at most every 2 s.
    retryStrategy: (times: number) => Math.min(times * 100, 2_000),
    ...(config.password === undefined ? {} : { password: config.password }),
    connectionName: `postern:${config.nodeName}`,
  };
  if (server.kind === "unix") return { ...common, path: server.path };
  return {
    ...common,
    host: server.host,
    port: server.port,
    db: server.db,
    ...(server.username === undefined ? {} : { username: server.username }),
    ...(server.tls ? { tls: config.tlsCa === undefined ? {} : { ca: config.tlsCa } } : {}),
  };
}
