/**
 * The fleet view: each node announces its name, version, queue size and
 * policy epoch in the shared server every `cluster.heartbeat`, under a key
 * that expires after three missed beats; a node that stops removes its
 * key at once. `GET /cluster` lists the keys that are there.
 *
 * @module
 */

import * as v from "valibot";
import type { Logger } from "../log/mod.ts";
import type { ClusterLink } from "./client.ts";
import { ClusterUnavailable } from "./unavailable.ts";

/** What a node announces; read back from the server, so validated. */
const NodeSchema = v.object({
  name: v.pipe(v.string(), v.maxLength(64)),
  version: v.pipe(v.string(), v.maxLength(64)),
  runtime: v.pipe(v.string(), v.maxLength(64)),
  state: v.picklist(["shared", "local"]),
  queue_size: v.pipe(v.number(), v.integer(), v.minValue(0)),
  policy_epoch: v.pipe(v.number(), v.integer(), v.minValue(0)),
  started_at: v.pipe(v.string(), v.isoTimestamp()),
  heartbeat_at: v.pipe(v.string(), v.isoTimestamp()),
});

/** One node of the fleet, as it last announced itself. */
export type FleetNode = v.InferOutput<typeof NodeSchema>;

/** The most nodes listed (a fleet is a handful; this bounds a scan of a shared server). */
const MAX_NODES = 1_000;
/** A node is gone after this many missed heartbeats. */
const MISSED_BEATS = 3;

/** What a node reports of itself at each beat. */
export interface NodeFacts {
  version: string;
  runtime: string;
  startedAt: Date;
  queueSize: () => number;
  policyEpoch: () => number;
}

/** This node's heartbeat, and the list of the fleet's live nodes. */
export class Fleet {
  #link: ClusterLink;
  #facts: NodeFacts;
  #logger: Logger;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Announces `facts` through `link` once started. */
  constructor(link: ClusterLink, facts: NodeFacts, logger: Logger) {
    this.#link = link;
    this.#facts = facts;
    this.#logger = logger;
  }

  /** Beats now and every `cluster.heartbeat`. */
  start(): void {
    this.#link.onShared(() => void this.beat());
    void this.beat();
    this.#timer = setInterval(() => void this.beat(), this.#link.config.heartbeatMs);
  }

  /** Announces this node once; skipped while the server does not answer. */
  async beat(): Promise<void> {
    if (!this.#link.shared) return;
    const node: FleetNode = {
      name: this.#link.config.nodeName,
      version: this.#facts.version,
      runtime: this.#facts.runtime,
      state: "shared",
      queue_size: this.#facts.queueSize(),
      policy_epoch: this.#facts.policyEpoch(),
      started_at: this.#facts.startedAt.toISOString(),
      heartbeat_at: new Date().toISOString(),
    };
    const ttl = MISSED_BEATS * this.#link.config.heartbeatMs;
    try {
      await this.#link.call((redis) =>
        redis.set(this.#nodeKey(node.name), JSON.stringify(node), "PX", ttl)
      );
    } catch (err) {
      if (!(err instanceof ClusterUnavailable)) throw err;
    }
  }

  /**
   * The live nodes, by name.
   *
   * @throws {ClusterUnavailable} when the server does not answer.
   */
  async nodes(): Promise<FleetNode[]> {
    const keys: string[] = [];
    let cursor = "0";
    // SCAN in steps (never KEYS on a shared server), bounded in count.
    do {
      const [next, found] = await this.#link.call((redis) =>
        redis.scan(cursor, "MATCH", `${this.#nodeKey("")}*`, "COUNT", 500)
      );
      cursor = next;
      keys.push(...found);
    } while (cursor !== "0" && keys.length < MAX_NODES);
    if (keys.length === 0) return [];
    const values = await this.#link.call((redis) => redis.mget(keys.slice(0, MAX_NODES)));
    const nodes: FleetNode[] = [];
    for (const text of values) {
      if (text === null) continue;
      const parsed = v.safeParse(NodeSchema, safeJson(text));
      if (parsed.success) nodes.push(parsed.output);
      else this.#logger.debug("cluster: a node's announcement is not understood; skipped");
    }
    return nodes.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Stops beating and removes this node from the list. */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      await this.#link.call((redis) => redis.del(this.#nodeKey(this.#link.config.nodeName)));
    } catch (err) {
      if (!(err instanceof ClusterUnavailable)) throw err;
    }
  }

  #nodeKey(name: string): string {
    return this.#link.key("node", name);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
