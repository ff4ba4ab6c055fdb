import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  idHeaderFilter,
  type OutboundIntake,
  type SubmittedHeaders,
} from "../../../src/smtp/outbound_headers.ts";
import { ourAuthenticationResults } from "../../../src/smtp/authres_claim.ts";
import { filterBytes } from "./filter_helpers.ts";

const SETTINGS: OutboundIntake = {
  sendidHeader: "X-SendID",
  listidHeader: "X-ListID",
  dkimSign: false,
  dkimKey: () => undefined,
};

/** The filtered text and what the filter saw, for `text` cut every `step` bytes. */
function run(text: string, step: number): { out: string; ids: SubmittedHeaders } {
  const ids: SubmittedHeaders = {};
  const bytes = new TextEncoder().encode(text);
  const cuts = Array.from(
    { length: Math.floor((bytes.byteLength - 1) / step) },
    (_, i) => (i + 1) * step,
  );
  const { out } = filterBytes(idHeaderFilter(SETTINGS, ids), bytes, cuts);
  return { out: new TextDecoder().decode(out), ids };
}

describe("idHeaderFilter", () => {
  it("idHeaderFilter() takes the first SendID and ListID (unfolded) and removes every copy", () => {
    const text = [
      "From: a@example.com",
      "x-sendid :  newsletter-42",
      "X-ListID: list",
      "\tfolded",
      "X-SendID: second",
      "Subject: hi",
      "",
      "X-SendID: in the body stays",
      "",
    ].join("\r\n");
    for (const step of [1, 7, 1000]) {
      const { out, ids } = run(text, step);
      assert.equal(
        out,
        "From: a@example.com\r\nSubject: hi\r\n\r\nX-SendID: in the body stays\r\n",
        `step ${step}`,
      );
      assert.deepEqual(ids, { sendid: "newsletter-42", listid: "list\tfolded", hasFrom: true });
    }
  });

  it("idHeaderFilter() notes From, Date and Message-ID, and keeps them", () => {
    const text =
      "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <a@b>\r\nfrom : <c@d>\r\n\r\nbody";
    const { out, ids } = run(text, 5);
    assert.equal(out, text);
    assert.deepEqual(ids, { hasDate: true, hasMessageId: true, hasFrom: true });
  });

  it("idHeaderFilter() still finds a SendID after a field over 64 KiB, and cuts a long value", () => {
    const long = "X-Filler: " + "y".repeat(100_000) + "\r\n";
    const text = long + "X-SendID: " + "s".repeat(1000) + "\r\n\r\nbody";
    const { out, ids } = run(text, 4096);
    assert.ok(!out.includes("X-SendID"), "the SendID field was kept");
    assert.ok(out === long + "\r\nbody", "the rest of the message changed");
    assert.equal(ids.sendid, "s".repeat(256));
  });

  it("idHeaderFilter() with alsoDrop removes those fields too, and still takes the IDs", () => {
    const ids: SubmittedHeaders = {};
    const text = [
      "Authentication-Results: (forged (nested)) MX.OURS.TEST; dkim=pass",
      "X-SendID: s1",
      "Authentication-Results: other.test; spf=pass",
      "Authentication-Results: mx.ours.test;",
      " dmarc=pass",
      "",
      "body",
    ].join("\r\n");
    const filter = idHeaderFilter(SETTINGS, ids, ourAuthenticationResults("mx.ours.test"));
    const bytes = new TextEncoder().encode(text);
    const { out, dropped } = filterBytes(filter, bytes, [3, 50, 90]);
    assert.equal(
      new TextDecoder().decode(out),
      "Authentication-Results: other.test; spf=pass\r\n\r\nbody",
    );
    assert.equal(dropped, 3);
    assert.deepEqual(ids, { sendid: "s1" });
  });
});
