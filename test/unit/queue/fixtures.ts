/**
 * Envelopes and spool items shared by the queue and delivery tests.
 *
 * @module
 */

import { stat } from "node:fs/promises";
import { join } from "node:path";
import { type Envelope, newQueueId, type Spool, type SpoolItem } from "../../../src/queue/mod.ts";

/** A valid envelope; `overrides` replace fields. */
export function makeEnvelope(overrides: Partial<Envelope> = {}): Envelope {
  const receivedAt = overrides.received_at ?? "2026-01-02T03:04:05.000Z";
  return {
    v: 1,
    id: newQueueId(Date.parse(receivedAt)),
    from: "sender@client.test",
    to: ["alice@ex.test"],
    received_at: receivedAt,
    client: { ip: "192.0.2.1", helo: "client.test", tls: false },
    smtputf8: false,
    ...overrides,
  };
}

/** Receives `body` into `spool` under `envelope` and commits it. */
export async function spoolMessage(
  spool: Spool,
  envelope: Envelope,
  body: string | Uint8Array,
): Promise<SpoolItem> {
  const writer = await spool.receive(envelope);
  await writer.write(typeof body === "string" ? new TextEncoder().encode(body) : body);
  return await writer.commit();
}

/**
 * An ID from `spool.newId()` whose spare file is in queue/: the first call
 * finds none ready and starts the pool, so it is asked again until one is.
 */
export async function spareId(spool: Spool): Promise<string> {
  for (let i = 0; i < 400; i++) {
    const id = spool.newId();
    if (await exists(join(spool.root, "queue", `${id}.msg`))) return id;
    spool.releaseId(id, true);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error("no spare file was made");
}

/** Whether something is at `path`. */
export async function exists(path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false);
}

/** Waits (at most 2 s of turns) until `condition` holds. */
export async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error("condition not reached");
}
