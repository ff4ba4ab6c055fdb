/**
 * Envelopes and spool items shared by the queue and delivery tests.
 *
 * @module
 */

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
