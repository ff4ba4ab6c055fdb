import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { copyState, type DeliveryState } from "../../../src/queue/records.ts";

describe("copyState", () => {
  const state = (): DeliveryState => ({
    v: 1,
    recipients: [
      { address: "a@example.test", status: "pending", attempts: 2, done: ["/m/a", "/m/b"] },
      {
        address: "b@example.test",
        status: "failed",
        attempts: 1,
        last_error: "550 no such user",
        last_status: "5.1.1",
        remote_mta: "mx.example.test",
      },
    ],
    warned: true,
    next_attempt_at: "2026-12-04T20:00:00.000Z",
    held: true,
  });

  it("copyState() copies every field", () => {
    assert.deepEqual(copyState(state()), state());
  });

  it("copyState() shares no object or array with the original", () => {
    const original = state();
    const copy = copyState(original);
    copy.recipients[0]!.attempts = 9;
    copy.recipients[0]!.done!.push("/m/c");
    copy.recipients[1]!.status = "sent";
    copy.recipients.push({ address: "c@example.test", status: "pending", attempts: 0 });
    copy.held = false;
    assert.deepEqual(original, state());
  });
});
