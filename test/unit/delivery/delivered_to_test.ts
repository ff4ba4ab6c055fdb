import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deliveredTo, deliveredToOf } from "../../../src/delivery/delivered_to.ts";
import { chunksOf } from "../helpers.ts";

/** `deliveredTo` of a message given as text chunks, as a sorted list. */
async function of(...chunks: string[]): Promise<string[]> {
  return [...await deliveredTo(chunksOf(...chunks))].sort();
}

describe("deliveredTo", () => {
  it("deliveredToOf() reads the header only when the envelope does not say it has none", async () => {
    let opened = 0;
    const open = () => {
      opened++;
      return chunksOf("Delivered-To: alice@ex.test\r\n\r\nbody\r\n");
    };
    assert.deepEqual([...await deliveredToOf({ envelope: { delivered_to: false } }, open)], []);
    assert.equal(opened, 0, "noted at intake: none, so the spool file is not read");
    for (const noted of [true, undefined]) {
      assert.deepEqual([...await deliveredToOf({ envelope: { delivered_to: noted } }, open)], [
        "alice@ex.test",
      ]);
    }
    assert.equal(opened, 2, "noted, or nobody looked (a bounce, an older spool file): read");
  });

  it("deliveredTo() finds every Delivered-To field, lower-cased, without angle brackets", async () => {
    assert.deepEqual(
      await of(
        "Received: from a\r\n",
        "Delivered-To: Alice@Example.TEST\r\n",
        "delivered-to: <bob@ex.test>\r\n",
        "DELIVERED-TO:carol@ex.test  \r\n",
        "Subject: Delivered-To: not@a.field\r\n",
        "\r\nbody\r\n",
      ),
      ["alice@example.test", "bob@ex.test", "carol@ex.test"],
    );
  });

  it("deliveredTo() reads LF line endings and folded fields", async () => {
    assert.deepEqual(await of("Delivered-To:\n alice@ex.test\nSubject: x\n\n"), ["alice@ex.test"]);
  });

  it("deliveredTo() finds a field split across chunks anywhere", async () => {
    const text = "Subject: x\r\nDelivered-To: alice@ex.test\r\n\r\nbody\r\n";
    for (let cut = 1; cut < text.length; cut++) {
      assert.deepEqual(
        await of(text.slice(0, cut), text.slice(cut)),
        ["alice@ex.test"],
        `at ${cut}`,
      );
    }
  });

  it("deliveredTo() does not read the body: a Delivered-To there does not count, and reading stops", async () => {
    let pulled = 0;
    async function* message(): AsyncGenerator<Uint8Array> {
      const encoder = new TextEncoder();
      for (const part of ["Subject: x\r\n\r\n", "Delivered-To: alice@ex.test\r\n", "more\r\n"]) {
        pulled++;
        yield encoder.encode(part);
      }
    }
    assert.deepEqual([...await deliveredTo(message())], []);
    assert.equal(pulled, 1, "the body was read");
  });

  it("deliveredTo() keeps no line longer than an address can be, and skips such a field", async () => {
    const long = "x".repeat(5000);
    assert.deepEqual(
      await of(
        `X-Long: ${long}\r\n`,
        `Delivered-To: ${long}@ex.test\r\n`,
        "Delivered-To: ok@ex.test\r\n\r\n",
      ),
      ["ok@ex.test"],
    );
  });

  it("deliveredTo() takes a message that ends inside its header", async () => {
    assert.deepEqual(await of("Subject: x\r\nDelivered-To: alice@ex.test"), ["alice@ex.test"]);
    assert.deepEqual(await of(""), []);
  });
});
