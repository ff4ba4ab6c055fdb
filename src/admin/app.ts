/**
 * The admin HTTP API (Hono): health, status, policy reload, Prometheus
 * metrics and the queue. Every route but `/health` and `/openapi.json`
 * needs `Authorization: Bearer <token>`; every query and body is validated
 * with valibot (a body must be JSON, `{}` when the route takes none); every
 * error is JSON with a message.
 *
 * @module
 */

import { vValidator } from "@hono/valibot-validator";
import { type Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ClusterLinkStatus, FleetNode } from "../cluster/mod.ts";
import type { Counters } from "../log/mod.ts";
import type { PolicyStore } from "../policy/mod.ts";
import type { AdminOutcome, Queue, QueueEntryView, Spool } from "../queue/mod.ts";
import { type Gauge, METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { OPENAPI } from "./openapi.ts";
import {
  BounceBodySchema,
  HealthQuerySchema,
  invalid,
  jsonBody,
  NoBodySchema,
  QueueQuerySchema,
} from "./requests.ts";
import { adminProof, sameToken } from "./token.ts";

/** What the API reads and steers. */
export interface AdminDeps {
  token: string;
  version: string;
  runtime: string;
  startedAt: Date;
  /** Bound SMTP addresses. */
  listeners: readonly string[];
  policy: PolicyStore;
  queue: Queue;
  spool: Spool;
  counters: Counters;
  /** Hook points and their workers. */
  hooks: () => unknown;
  /** The deno that runs TypeScript hooks: the embedded one and the one in use. */
  hookRuntime?: () => unknown;
  /** SMTP connections open now. */
  connectionsOpen: () => number;
  /** Outbound SMTP connections open now (busy and idle); absent in tests without outbound. */
  outboundConnectionsOpen?: () => number;
  /** ACME certificates, when `tls.acme` is set. */
  acme?: AdminAcme;
  now?: () => number;
  /** The fleet, when `cluster` is set. */
  cluster?: { status: () => ClusterLinkStatus; nodes: () => Promise<FleetNode[]> };
}

/** Most header bytes `GET /queue/:id` shows. */
const MAX_HEADER_BYTES = 64 * 1024;

/** What the API needs of ACME. */
export interface AdminAcme {
  /** Shown as /status's `acme`; these two fields also feed /metrics. */
  status(): { not_after: string | null; consecutive_failures: number };
  renewNow(): Promise<void>;
}

/** Builds the API. */
export function adminApp(deps: AdminDeps): Hono {
  const now = deps.now ?? Date.now;
  const app = new Hono();

  app.onError((err, c) =>
    err instanceof HTTPException
      ? c.json({ error: err.message }, err.status)
      : c.json({ error: `internal error: ${err.message}` }, 500)
  );
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));

  // With ?challenge=, the proof that this server holds the token, which
  // the command line checks before it sends the token (see adminProof).
  app.get("/health", vValidator("query", HealthQuerySchema, invalid), async (c) => {
    const { challenge } = c.req.valid("query");
    if (challenge === undefined) return c.json({ status: "ok" });
    return c.json({ status: "ok", proof: await adminProof(deps.token, challenge) });
  });
  app.get("/openapi.json", (c) => c.json(OPENAPI));

  app.use("*", async (c, next) => {
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match || !sameToken(match[1]!, deps.token)) {
      c.header("WWW-Authenticate", 'Bearer realm="postern"');
      return c.json({ error: "a valid bearer token is required" }, 401);
    }
    await next();
  });

  app.get("/status", (c) => c.json(status(deps, now())));

  app.get("/cluster", async (c) => {
    if (!deps.cluster) {
      return c.json({ error: "this node is not in a cluster (no cluster setting)" }, 404);
    }
    const self = deps.cluster.status();
    try {
      return c.json({ self, nodes: await deps.cluster.nodes() });
    } catch (err) {
      return c.json({ self, error: (err as Error).message }, 503);
    }
  });

  app.post("/reload", jsonBody(NoBodySchema), async (c) => {
    await deps.policy.reload("api");
    const policy = deps.policy.status();
    return c.json({ ok: policy.lastError === undefined, policy: policyJson(policy) });
  });

  app.post("/acme/renew", jsonBody(NoBodySchema), async (c) => {
    if (!deps.acme) return c.json({ error: "tls.acme is not configured" }, 404);
    await deps.acme.renewNow();
    const acme = deps.acme.status();
    return c.json({ ok: acme.consecutive_failures === 0, acme });
  });

  app.get("/metrics", (c) => {
    c.header("Content-Type", METRICS_CONTENT_TYPE);
    return c.body(renderMetrics(deps.counters, gauges(deps, now())));
  });

  app.get("/queue", vValidator("query", QueueQuerySchema, invalid), (c) => {
    const query = c.req.valid("query");
    const at = now();
    const matching = deps.queue.list().filter((entry) => {
      const { envelope } = entry.item;
      if (query.sender !== undefined && envelope.from.toLowerCase() !== query.sender) return false;
      if (
        query.domain !== undefined &&
        !entry.item.state.recipients.some((r) =>
          r.status === "pending" && r.address.toLowerCase().endsWith(`@${query.domain}`)
        )
      ) return false;
      if (query.state !== undefined && stateOf(entry) !== query.state) return false;
      if (query.min_age !== undefined && ageSeconds(entry, at) < query.min_age) return false;
      return true;
    }).sort((a, b) => a.item.envelope.received_at.localeCompare(b.item.envelope.received_at));
    return c.json({
      total: matching.length,
      offset: query.offset,
      items: matching.slice(query.offset, query.offset + query.limit).map((e) => itemJson(e, at)),
    });
  });

  app.get("/queue/:id", async (c) => {
    const entry = deps.queue.get(c.req.param("id"));
    if (!entry) return c.json({ error: `no queued message ${c.req.param("id")}` }, 404);
    return c.json({ ...itemJson(entry, now()), headers: await headersOf(deps.spool, entry) });
  });

  const act = (c: Context, id: string, outcome: AdminOutcome, done: string) => {
    if (outcome === "missing") return c.json({ error: `no queued message ${id}` }, 404);
    if (outcome === "busy") {
      return c.json(
        { error: `${id} is being delivered or changed right now; try again shortly` },
        409,
      );
    }
    return c.json({ ok: true, id, done });
  };
  app.post("/queue/:id/retry", jsonBody(NoBodySchema), (c) => {
    const id = c.req.param("id");
    return act(c, id, deps.queue.retryNow(id), "due now");
  });
  app.post("/queue/:id/hold", jsonBody(NoBodySchema), async (c) => {
    const id = c.req.param("id");
    return act(c, id, await deps.queue.setHeld(id, true), "held");
  });
  app.post("/queue/:id/release", jsonBody(NoBodySchema), async (c) => {
    const id = c.req.param("id");
    return act(c, id, await deps.queue.setHeld(id, false), "released");
  });
  app.post("/queue/:id/bounce", jsonBody(BounceBodySchema), async (c) => {
    const id = c.req.param("id");
    const reason = c.get("body").reason ?? "bounced by the administrator";
    return act(c, id, await deps.queue.finish(id, "bounce", reason), "bounced");
  });
  app.delete("/queue/:id", jsonBody(NoBodySchema), async (c) => {
    const id = c.req.param("id");
    return act(
      c,
      id,
      await deps.queue.finish(id, "delete", "deleted by the administrator"),
      "deleted",
    );
  });

  return app;
}

function stateOf(entry: QueueEntryView): "pending" | "held" | "running" {
  return entry.running ? "running" : entry.held ? "held" : "pending";
}

function ageSeconds(entry: QueueEntryView, at: number): number {
  return Math.max(0, Math.floor((at - Date.parse(entry.item.envelope.received_at)) / 1000));
}

function itemJson(entry: QueueEntryView, at: number) {
  const { envelope, state } = entry.item;
  return {
    id: envelope.id,
    from: envelope.from,
    to: envelope.to,
    received_at: envelope.received_at,
    age_seconds: ageSeconds(entry, at),
    client: envelope.client,
    state: stateOf(entry),
    next_attempt_at: entry.held ? null : new Date(entry.dueAt).toISOString(),
    recipients: state.recipients.map((r) => ({
      address: r.address,
      status: r.status,
      attempts: r.attempts,
      ...(r.last_error === undefined ? {} : { last_error: r.last_error }),
    })),
  };
}

/** The message's header section, from the spool, at most {@linkcode MAX_HEADER_BYTES}. */
async function headersOf(spool: Spool, entry: QueueEntryView): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of spool.openMessage(entry.item)) {
    text += decoder.decode(chunk, { stream: true });
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) return text.slice(0, end + 2);
    if (text.length >= MAX_HEADER_BYTES) break;
  }
  return text.slice(0, MAX_HEADER_BYTES);
}

function policyJson(policy: ReturnType<PolicyStore["status"]>) {
  return {
    epoch: policy.epoch,
    loaded_at: policy.loadedAt.toISOString(),
    last_error: policy.lastError
      ? { message: policy.lastError.message, at: policy.lastError.at.toISOString() }
      : null,
    pending_restart: policy.pendingRestart,
    reloads: policy.reloads,
  };
}

/** Size, holds and the oldest item of the queue, read once per request. */
function queueSummary(deps: AdminDeps, at: number) {
  const items = deps.queue.list();
  let oldest: string | undefined;
  let held = 0;
  for (const { item, held: isHeld } of items) {
    if (oldest === undefined || item.envelope.received_at < oldest) {
      oldest = item.envelope.received_at;
    }
    if (isHeld) held++;
  }
  return {
    size: items.length,
    held,
    oldest_received_at: oldest ?? null,
    oldest_age_seconds: oldest === undefined ? 0 : Math.floor((at - Date.parse(oldest)) / 1000),
  };
}

function status(deps: AdminDeps, at: number) {
  return {
    version: deps.version,
    runtime: deps.runtime,
    started_at: deps.startedAt.toISOString(),
    uptime_seconds: Math.floor((at - deps.startedAt.getTime()) / 1000),
    listeners: deps.listeners,
    connections: deps.connectionsOpen(),
    outbound_connections: deps.outboundConnectionsOpen?.() ?? 0,
    policy: policyJson(deps.policy.status()),
    hooks: deps.hooks(),
    hook_runtime: deps.hookRuntime?.() ?? null,
    queue: queueSummary(deps, at),
    cluster: deps.cluster?.status() ?? null,
    ...(deps.acme ? { acme: deps.acme.status() } : {}),
  };
}

function gauges(deps: AdminDeps, at: number): Gauge[] {
  const queue = queueSummary(deps, at);
  const policy = deps.policy.status();
  return [
    { name: "queue_messages", help: "Messages in the queue", value: queue.size },
    { name: "queue_held_messages", help: "Messages held by the administrator", value: queue.held },
    {
      name: "queue_oldest_age_seconds",
      help: "Age of the oldest queued message",
      value: queue.oldest_age_seconds,
    },
    {
      name: "smtp_connections_open",
      help: "SMTP connections open now",
      value: deps.connectionsOpen(),
    },
    {
      name: "outbound_connections_open",
      help: "Outbound SMTP connections open now (busy and idle)",
      value: deps.outboundConnectionsOpen?.() ?? 0,
    },
    { name: "policy_epoch", help: "Epoch of the policy in force", value: policy.epoch },
    {
      name: "policy_last_reload_failed",
      help: "1 while the last reload failed (the previous policy is in force)",
      value: policy.lastError ? 1 : 0,
    },
    ...(deps.cluster
      ? [{
        name: "cluster_shared",
        help: "1 while the cluster server answers (fleet-wide counts), 0 while counting locally",
        value: deps.cluster.status().state === "shared" ? 1 : 0,
      }]
      : []),
    ...acmeGauges(deps, at),
    {
      name: "uptime_seconds",
      help: "Seconds since start",
      value: Math.floor((at - deps.startedAt.getTime()) / 1000),
    },
  ];
}

function acmeGauges(deps: AdminDeps, at: number): Gauge[] {
  if (!deps.acme) return [];
  const acme = deps.acme.status();
  const notAfter = acme.not_after === null ? 0 : Date.parse(acme.not_after);
  return [
    {
      name: "acme_certificate_expiry_timestamp_seconds",
      help: "When the ACME certificate expires (Unix time); 0 before the first is issued",
      value: Math.floor(notAfter / 1000),
    },
    {
      name: "acme_certificate_expires_in_seconds",
      help: "Seconds until the ACME certificate expires; 0 before the first is issued",
      value: notAfter === 0 ? 0 : Math.floor((notAfter - at) / 1000),
    },
    {
      name: "acme_renewal_failures",
      help: "Failed ACME orders since the last success (retried with backoff)",
      value: acme.consecutive_failures,
    },
  ];
}
