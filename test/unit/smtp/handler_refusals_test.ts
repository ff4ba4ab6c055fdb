import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { SMTPServerAddress, SMTPServerSession } from "smtp-server";
import { complete, replyError } from "../../../src/smtp/adapter.ts";
import { markingHandlers, takeHandlerMark } from "../../../src/smtp/handler_refusals.ts";
import { reply } from "../../../src/smtp/reply.ts";

const session = () => ({ id: "s" }) as unknown as SMTPServerSession;
const address = { address: "a@b.example", args: false } as unknown as SMTPServerAddress;

describe("handler refusals", () => {
  it("markingHandlers() marks a session whose handler refused, for that reply code", async () => {
    const s = session();
    const options = markingHandlers({
      onRcptTo: (_a, _s, cb) => cb(replyError(reply(550, "5.1.1", "No such user here"))),
    });
    await new Promise<void>((resolve) => options.onRcptTo!(address, s, () => resolve()));
    assert.equal(takeHandlerMark(s, 550), true);
    // The mark goes with the first error reply.
    assert.equal(takeHandlerMark(s, 550), false);
  });

  it("markingHandlers() leaves a session unmarked on success", async () => {
    const s = session();
    const options = markingHandlers({ onMailFrom: (_a, _s, cb) => cb() });
    await new Promise<void>((resolve) => options.onMailFrom!(address, s, () => resolve()));
    assert.equal(takeHandlerMark(s, 550), false);
  });

  it("takeHandlerMark() takes a mark for another code without claiming the reply", async () => {
    const s = session();
    const options = markingHandlers({
      onData: (_st, _s, cb) => cb(replyError(reply(451, "4.3.0", "Local error"))),
    });
    await new Promise<void>((resolve) => options.onData!({} as never, s, () => resolve()));
    // smtp-server sent its own 552 instead (an oversized message): that is not logged yet.
    assert.equal(takeHandlerMark(s, 552), false);
    assert.equal(takeHandlerMark(s, 451), false);
  });

  it("the reply to an unexpected error of a handler is left to the connection to log", async () => {
    const s = session();
    const options = markingHandlers({
      onMailFrom: (_a, _s, cb) =>
        complete(() => Promise.reject(new Error("bug")), (err) => cb(err), () => {}),
    });
    const err = await new Promise<Error | null | undefined>((resolve) =>
      options.onMailFrom!(address, s, (e) => resolve(e))
    );
    assert.match(String(err?.message), /^4\.3\.0 /);
    assert.equal(takeHandlerMark(s, 451), false);
  });
});
