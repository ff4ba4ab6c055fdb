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

/**
 * Feeds `chunks` to a parser whose lines may be `max` bytes long; returns
 * the lines dispatched, each flagged when it stands for an over-long one,
 * and the message of a DATA command (taken as smtp-server's DATA does).
 */
async function lines(
  chunks: string[],
  max: number,
): Promise<{ seen: Array<[string, boolean]>; message: string }> {
  const parser = new SMTPStream({ maxCommandLength: max });
  const seen: Array<[string, boolean]> = [];
  let message = "";
  parser.oncommand = (command: Uint8Array, callback?: () => void) => {
    const line = new TextDecoder().decode(command);
    seen.push([line, tracker.lineTooLong]);
    if (line === "DATA") {
      const stream = parser.startDataMode();
      stream.on("data", (chunk: Uint8Array) => message += new TextDecoder().decode(chunk));
      stream.on("end", () => parser.continue());
    }
    setImmediate(() => callback?.());
  };
  const tracker = new InputTracker(parser as unknown as TrackedParser);
  const failed = new Promise<Error>((resolve) => parser.on("error", resolve));
  for (const chunk of chunks) parser.write(new TextEncoder().encode(chunk));
  const ended = new Promise<undefined>((resolve) => parser.end(() => resolve(undefined)));
  const outcome = await Promise.race([ended, failed]);
  assert.equal(outcome, undefined, "the parser failed");
  return { seen, message };
}

describe("InputTracker and over-long lines", () => {
  it("InputTracker hands over an empty, flagged line for a line over the limit", async () => {
    const { seen } = await lines([`NOOP\r\nNOOP ${"a".repeat(200)}\r\nQUIT\r\n`], 100);
    assert.deepEqual(seen, [["NOOP", false], ["", true], ["QUIT", false]]);
  });

  it("InputTracker takes a line at the limit as it is, with LF or CRLF", async () => {
    const exact = `NOOP ${"a".repeat(95)}`;
    const { seen } = await lines([`${exact}\r\n${exact}\n`], 100);
    assert.deepEqual(seen, [[exact, false], [exact, false]]);
  });

  it("InputTracker drops an over-long line arriving in pieces, up to its end", async () => {
    // Before, smtp-server's parser failed on the second chunk (421).
    const { seen } = await lines(
      ["NOOP\r\nNOOP " + "a".repeat(150), "b".repeat(150), "c".repeat(10) + "\r\nQUIT\r\n"],
      100,
    );
    assert.deepEqual(seen, [["NOOP", false], ["", true], ["QUIT", false]]);
  });

  it("InputTracker leaves a message alone, long lines and all, after DATA", async () => {
    const long = "x".repeat(300);
    const { seen, message } = await lines([`DATA\r\n${long}\r\n.\r\nNOOP\r\n`], 100);
    assert.deepEqual(seen, [["DATA", false], ["NOOP", false]]);
    assert.equal(message, `${long}\r\n`);
  });

  it("InputTracker still sees what follows a line that stood for an over-long one", async () => {
    const parser = new SMTPStream({ maxCommandLength: 50 });
    const seen: Array<[string, boolean, boolean]> = [];
    parser.oncommand = (command: Uint8Array, callback?: () => void) => {
      seen.push([new TextDecoder().decode(command), tracker.lineTooLong, tracker.pending()]);
      setImmediate(() => callback?.());
    };
    const tracker = new InputTracker(parser as unknown as TrackedParser);
    parser.write(new TextEncoder().encode(`${"z".repeat(80)}\r\nDATA\r\n`));
    await new Promise<void>((resolve) => parser.end(resolve));
    assert.deepEqual(seen, [["", true, true], ["DATA", false, false]]);
  });
});
