import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SMTPStream } from "smtp-server/lib/smtp-stream.js";
import { InputTracker, type TrackedParser } from "../../../src/smtp/input_tracker.ts";

/**
 * Feeds `chunks` to a parser, one write each, as a socket would; every
 * command is answered on a later turn, like an async handler, so later
 * chunks wait behind the one being parsed. Records, for each command,
 * whether input followed it.
 */
async function follow(chunks: string[]): Promise<Array<[string, boolean]>> {
  const parser = new SMTPStream();
  const seen: Array<[string, boolean]> = [];
  parser.oncommand = (command: Uint8Array, callback?: () => void) => {
    seen.push([new TextDecoder().decode(command), tracker.pending()]);
    setImmediate(() => callback?.());
  };
  const tracker = new InputTracker(parser as unknown as TrackedParser);
  for (const chunk of chunks) parser.write(new TextEncoder().encode(chunk));
  await new Promise<void>((resolve) => parser.end(resolve));
  return seen;
}

describe("InputTracker", () => {
  it("InputTracker sees the lines that follow in the same chunk", async () => {
    assert.deepEqual(await follow(["MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"]), [
      ["MAIL FROM:<a@b>", true],
      ["RCPT TO:<c@d>", true],
      ["DATA", false],
    ]);
  });

  it("InputTracker sees a message pipelined behind DATA, with LF or CRLF line ends", async () => {
    assert.deepEqual(await follow(["DATA\nSubject: x\n"]), [
      ["DATA", true],
      ["Subject: x", false],
    ]);
  });

  it("InputTracker sees input in a chunk waiting behind the current one", async () => {
    const seen = await follow(["NOOP\r\nDATA\r\n", "Subject: x\r\n"]);
    assert.deepEqual(seen[1], ["DATA", true]);
  });

  it("InputTracker joins a partial line with the next chunk", async () => {
    // "DA" after NOOP is input too: the start of the next line.
    assert.deepEqual(await follow(["NO", "OP\r\nDA", "TA\r\n"]), [
      ["NOOP", true],
      ["DATA", false],
    ]);
  });
});
