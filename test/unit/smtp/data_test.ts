import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Spool, type SpoolItem, type SpoolWriter } from "../../../src/queue/mod.ts";
import { receiveMessage } from "../../../src/smtp/mod.ts";
import { HeaderFilter, HOLD_BYTES } from "../../../src/smtp/header_filter.ts";
import { ourAuthenticationResults } from "../../../src/smtp/authres_claim.ts";
import { HeaderGuard, MAX_HEADER_BYTES, MAX_HEADER_LINES } from "../../../src/smtp/header_guard.ts";
import { collectText, listDir, makeTempDir, removeDir } from "../helpers.ts";
import { makeEnvelope } from "../queue/fixtures.ts";

const HEADER = new TextEncoder().encode("Received: from test\r\n");

/** A client stream that records how far it was read. */
function clientStream(chunks: string[], failAfter?: number) {
  const state = { pulled: 0, finished: false };
  async function* stream(): AsyncGenerator<Uint8Array> {
    for (const chunk of chunks) {
      if (failAfter !== undefined && state.pulled === failAfter) {
        throw new Error("client went away");
      }
      state.pulled++;
      yield new TextEncoder().encode(chunk);
    }
    state.finished = true;
  }
  return { state, stream: stream() };
}

/** A writer whose calls are scripted, for failure paths the disk cannot produce. */
function scriptedWriter(options: { failWriteAt?: number; failCommit?: boolean }) {
  const log: string[] = [];
  let writes = 0;
  const writer = {
    write(_chunk: Uint8Array): Promise<void> {
      writes++;
      log.push("write");
      if (writes === options.failWriteAt) return Promise.reject(new Error("ENOSPC"));
      return Promise.resolve();
    },
    abort(): Promise<void> {
      log.push("abort");
      return Promise.resolve();
    },
    commit(): Promise<SpoolItem> {
      log.push("commit");
      if (options.failCommit) return Promise.reject(new Error("EIO on fsync"));
      return Promise.resolve({} as SpoolItem);
    },
  };
  return { log, writer: writer as unknown as SpoolWriter };
}

describe("receiveMessage", () => {
  let dataDir: string;
  let spool: Spool;

  beforeEach(async () => {
    dataDir = await makeTempDir("postern-data-");
    spool = new Spool(dataDir);
    await spool.init();
  });
  afterEach(async () => {
    await spool.close();
    await removeDir(dataDir);
  });

  const queueDir = () => join(dataDir, "spool", "queue");
  const incomingDir = () => join(dataDir, "spool", "incoming");

  it("receiveMessage() writes the header and message, leaving the commit to the caller", async () => {
    const envelope = makeEnvelope();
    const writer = await spool.receive(envelope);
    const { state, stream } = clientStream(["Subject: a\r\n", "\r\n", "body\r\n"]);
    const outcome = await receiveMessage(stream, writer, HEADER, 1000);
    assert.deepEqual(outcome, {
      kind: "received",
      bytes: "Subject: a\r\n\r\nbody\r\n".length,
      deliveredTo: false,
    });
    assert.equal(state.finished, true);
    // Not sealed until the commit: a restart now would remove the file.
    await writer.readable();
    const open = await readFile(join(queueDir(), `${envelope.id}.msg`), "utf8");
    assert.match(open, /^OPEN /);
    const item = await writer.commit();
    assert.deepEqual(item.envelope, envelope);
    assert.deepEqual(await listDir(queueDir()), [`${envelope.id}.msg`]);
    assert.equal(
      await collectText(spool.openMessage(item)),
      "Received: from test\r\nSubject: a\r\n\r\nbody\r\n",
    );
  });

  it("receiveMessage() says whether the header section has a Delivered-To field", async () => {
    const headers = [
      ["Subject: a\r\nDelivered-To: alice@ex.test\r\n\r\nbody\r\n", true],
      ["Subject: a\r\nX-Delivered-To: alice@ex.test\r\n\r\nbody\r\n", false],
      ["Subject: a\r\n\r\nDelivered-To: in the body\r\n", false],
    ] as const;
    for (const [text, expected] of headers) {
      const writer = await spool.receive(makeEnvelope());
      const chunks = [text.slice(0, 17), text.slice(17)];
      const outcome = await receiveMessage(clientStream(chunks).stream, writer, HEADER, 1000);
      assert.deepEqual(outcome, { kind: "received", bytes: text.length, deliveredTo: expected });
      await writer.abort();
    }
  });

  it("receiveMessage() queues a message of exactly maxBytes, not counting the header", async () => {
    const writer = await spool.receive(makeEnvelope());
    const { stream } = clientStream(["12345", "67890"]);
    const outcome = await receiveMessage(stream, writer, HEADER, 10);
    assert.deepEqual(outcome, { kind: "received", bytes: 10, deliveredTo: false });
    await writer.commit();
  });

  it("receiveMessage() reads the whole stream and queues nothing when the message is too big", async () => {
    const envelope = makeEnvelope();
    const writer = await spool.receive(envelope);
    const chunks = ["0123456789", "0123456789", "0123456789", "tail"];
    const { state, stream } = clientStream(chunks);
    const outcome = await receiveMessage(stream, writer, HEADER, 15);
    assert.deepEqual(outcome, { kind: "too_big", bytes: 34 });
    assert.equal(state.pulled, chunks.length);
    assert.equal(state.finished, true);
    assert.deepEqual(await listDir(queueDir()), []);
    assert.deepEqual(await listDir(incomingDir()), []);
    assert.deepEqual((await spool.load()).items, []);
  });

  it("receiveMessage() aborts and reports interrupted when the client stream fails", async () => {
    const writer = await spool.receive(makeEnvelope());
    const { stream } = clientStream(["a", "b", "c"], 2);
    const outcome = await receiveMessage(stream, writer, HEADER, 1000);
    assert.equal(outcome.kind, "interrupted");
    assert.match(String(outcome.kind === "interrupted" && outcome.error), /client went away/);
    assert.deepEqual(await listDir(queueDir()), []);
    assert.deepEqual(await listDir(incomingDir()), []);
  });

  it("receiveMessage() aborts and reports interrupted when the stream fails after the size limit", async () => {
    const writer = await spool.receive(makeEnvelope());
    const { stream } = clientStream(["0123456789", "0123456789", "x"], 2);
    const outcome = await receiveMessage(stream, writer, HEADER, 5);
    assert.equal(outcome.kind, "interrupted");
    assert.deepEqual(await listDir(incomingDir()), []);
  });

  it("receiveMessage() keeps reading and reports failed when a write fails", async () => {
    const { log, writer } = scriptedWriter({ failWriteAt: 2 });
    const { state, stream } = clientStream(["a", "b", "c"]);
    const outcome = await receiveMessage(stream, writer, HEADER, 1000);
    assert.equal(outcome.kind, "failed");
    assert.match(String(outcome.kind === "failed" && outcome.error), /ENOSPC/);
    assert.equal(state.finished, true);
    // header, "a" (fails), then no more writes and no commit.
    assert.deepEqual(log, ["write", "write", "abort"]);
  });

  it("receiveMessage() reports failed when writing the header fails", async () => {
    const { log, writer } = scriptedWriter({ failWriteAt: 1 });
    const { state, stream } = clientStream(["a", "b"]);
    const outcome = await receiveMessage(stream, writer, HEADER, 1000);
    assert.equal(outcome.kind, "failed");
    assert.equal(state.finished, true);
    assert.deepEqual(log, ["write", "abort"]);
  });

  it("receiveMessage() reports too_big rather than failed when both happen", async () => {
    const { writer } = scriptedWriter({ failWriteAt: 2 });
    const { stream } = clientStream(["a", "0123456789"]);
    const outcome = await receiveMessage(stream, writer, HEADER, 5);
    assert.deepEqual(outcome, { kind: "too_big", bytes: 11 });
  });

  it("receiveMessage() reads a message with too long a header section to the end and keeps nothing", async () => {
    const writer = await spool.receive(makeEnvelope());
    // The audit's message: one field folded over 80,000 lines, in pieces.
    const head = "X-Big: a\r\n" + " b\r\n".repeat(80_000) + "Subject: big\r\n\r\nbody\r\n";
    const chunks = head.match(/[^]{1,16384}/g)!;
    const { state, stream } = clientStream(chunks);
    const filter = new HeaderFilter(ourAuthenticationResults("mx.ours.test"));
    const outcome = await receiveMessage(stream, writer, HEADER, 10_000_000, filter);
    assert.deepEqual(outcome, {
      kind: "bad_header",
      violation: { kind: "lines", limit: MAX_HEADER_LINES },
      bytes: head.length,
    });
    assert.equal(state.finished, true);
    assert.deepEqual(await listDir(queueDir()), []);
    assert.deepEqual(await listDir(incomingDir()), []);
    assert.deepEqual((await spool.load()).items, []);
  });

  it("receiveMessage() refuses a bare CR in the header section, and only there", async () => {
    const hidden =
      "X-Note: hi\rFrom: <ceo@bank.test>\r\nFrom: <boss@probe.example>\r\n\r\nbody\r\n";
    const refused = await receiveMessage(
      clientStream([hidden.slice(0, 11), hidden.slice(11)]).stream,
      await spool.receive(makeEnvelope()),
      HEADER,
      1000,
    );
    assert.deepEqual(refused, {
      kind: "bad_header",
      violation: { kind: "bare_cr" },
      bytes: hidden.length,
    });
    assert.deepEqual(await listDir(queueDir()), []);
    // In the body it is kept as it came (header_guard.ts says why).
    const writer = await spool.receive(makeEnvelope());
    const text = "Subject: a\r\n\r\nold\rMac\r.\rlines\r\n";
    const outcome = await receiveMessage(clientStream([text]).stream, writer, HEADER, 1000);
    assert.deepEqual(outcome, { kind: "received", bytes: text.length, deliveredTo: false });
    const item = await writer.commit();
    assert.equal(await collectText(spool.openMessage(item)), "Received: from test\r\n" + text);
  });

  it("receiveMessage() reports the first of a bad header and a message too big", async () => {
    const limits = { lines: 1, bytes: 1000 };
    const { writer } = scriptedWriter({});
    const outcome = await receiveMessage(
      clientStream(["A: 1\r\nB: 2\r\n", "0123456789"]).stream,
      writer,
      HEADER,
      15,
      undefined,
      new HeaderGuard(limits),
    );
    assert.equal(outcome.kind, "bad_header");
    const { writer: second } = scriptedWriter({});
    const tooBig = await receiveMessage(
      clientStream(["A: 0123456789", "\r\nB: 2\r\n"]).stream,
      second,
      HEADER,
      15,
      undefined,
      new HeaderGuard(limits),
    );
    assert.equal(tooBig.kind, "too_big");
  });

  it("receiveMessage() takes back from the spool a claim of ours held too long to judge in memory", async () => {
    const writer = await spool.receive(makeEnvelope());
    // Over HOLD_BYTES each, and the three under MAX_HEADER_BYTES together.
    const comment = "(" + "c".repeat(80_000) + ")";
    const ours = `Authentication-Results: ${comment} mx.ours.test; spf=pass\r\n`;
    const theirs = `Authentication-Results: ${comment} other.test; spf=pass\r\n`;
    const text = "Subject: a\r\n" + ours + theirs + ours + "\r\nbody\r\n";
    assert.ok(comment.length > HOLD_BYTES && text.length < MAX_HEADER_BYTES);
    const chunks = text.match(/[^]{1,16384}/g)!;
    const filter = new HeaderFilter(ourAuthenticationResults("mx.ours.test"));
    const outcome = await receiveMessage(
      clientStream(chunks).stream,
      writer,
      HEADER,
      10_000_000,
      filter,
    );
    assert.deepEqual(outcome, { kind: "received", bytes: text.length, deliveredTo: false });
    assert.equal(filter.dropped, 2);
    const item = await writer.commit();
    assert.equal(
      await collectText(spool.openMessage(item)),
      "Received: from test\r\nSubject: a\r\n" + theirs + "\r\nbody\r\n",
    );
  });

  it("receiveMessage() streams a large message to disk byte for byte", async () => {
    const writer = await spool.receive(makeEnvelope());
    const line = "0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    const chunks = ["Subject: big\r\n\r\n", ...Array.from({ length: 20_000 }, () => line)];
    const { stream } = clientStream(chunks);
    const outcome = await receiveMessage(stream, writer, HEADER, 10 * 1024 * 1024);
    assert.equal(outcome.kind, "received");
    const item = await writer.commit();
    const raw = await readFile(join(queueDir(), `${item.envelope.id}.msg`), "utf8");
    const [seal, envelope] = raw.split("\n", 2);
    assert.match(seal!, /^SEALED /);
    assert.equal(
      raw.slice(seal!.length + envelope!.length + 2),
      "Received: from test\r\nSubject: big\r\n\r\n" + line.repeat(20_000),
    );
  });
});
