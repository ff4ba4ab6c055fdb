/**
 * A hostile module hook against what the hook runtime reads from it, end
 * to end over SMTP (issue 15):
 * - the answer channel: a hook that reaches descriptor 3 and writes 16 MiB
 *   frames, or small frames no call asked for, or a forged answer too deep
 *   to turn into text, has its worker ended at once and logged, and a
 *   session of RCPT commands is served meanwhile;
 * - output floods: a hook printing a lot during a call gets its first lines
 *   logged, one line saying the rest is dropped, and a session of RCPT
 *   commands is served meanwhile; one that floods between calls is ended,
 *   logged once.
 *
 * Descriptors and memory are in hooks_hostile_runtime_resources_test.ts;
 * the probe hook is in hooks_hostile_runtime_fixtures.ts.
 */

import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, eventually, rawSession, type Server, startServer, tempDir } from "./harness.ts";
import {
  accepted,
  alive,
  delivered,
  header,
  PROBE_HOOK,
  send,
  USERS,
} from "./hooks_hostile_runtime_fixtures.ts";

/** Application log lines matching `pattern`. */
function logLines(server: Server, pattern: RegExp): string[] {
  return server.stderr().split("\n").filter((l) => pattern.test(l));
}

/**
 * A session of `count` RCPT commands (in transactions of 50), each of which
 * must get 250, ended with QUIT. (How fast is for the benchmarks.)
 */
async function rcptSession(server: Server, count: number): Promise<void> {
  const session = await rawSession(server);
  try {
    assert.match(await session.read(), /^220 /);
    assert.match(await session.send("EHLO client.test"), /^250 /);
    let inTransaction = 0;
    for (let i = 0; i < count; i++) {
      if (inTransaction === 0) {
        assert.match(await session.send("MAIL FROM:<carol@client.test>"), /^250 /);
      }
      assert.match(await session.send("RCPT TO:<alice@example.test>"), /^250 /);
      if (++inTransaction === 50) {
        assert.match(await session.send("RSET"), /^250 /);
        inTransaction = 0;
      }
    }
    assert.match(await session.send("QUIT"), /^221 /);
  } finally {
    session.close();
  }
}

describe("hostile hook: the answer channel", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        ...USERS,
        "postern.yaml": "hooks:\n  post_data:\n    timeout: 20s\n",
        "hooks/post-data.ts": PROBE_HOOK,
      },
    });
  });
  after(() => cleanup(server));

  for (
    const [name, cause] of [
      ["frames-big", /cause="Cannot read frame: length 167\d{5} is out of range"/],
      ["frames-small", /cause="a result for call 424242, which is not in flight"/],
    ] as const
  ) {
    it(`ends a worker that writes ${name === "frames-big" ? "16 MiB frames" : "frames no call asked for"} on fd 3, at once, and RCPT is served`, async () => {
      const first = await accepted(server, "none");
      const pid = Number(header(first, "X-Pid"));
      const message = await accepted(server, name);
      assert.equal(header(message, "X-Result"), "flooding");
      await rcptSession(server, 200);
      const ended = new RegExp(
        `level=error msg="hook worker broke the protocol; it is ended" hook=post-data pid=${pid} `,
      );
      await eventually(
        () => Promise.resolve(logLines(server, ended)[0]),
        10_000,
        "the protocol error line",
      );
      assert.match(logLines(server, ended)[0]!, cause);
      assert.equal(logLines(server, ended).length, 1, "one line for the event");
      await eventually(
        () => Promise.resolve(alive(pid) ? undefined : true),
        10_000,
        "the worker to end",
      );
      // Nothing lost: the next message gets a fresh worker.
      const next = await accepted(server, "none");
      assert.notEqual(Number(header(next, "X-Pid")), pid);
    });
  }
});

describe("hostile hook: a forged answer too deep to turn into text", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        ...USERS,
        "postern.yaml": "hooks:\n  post_data:\n    timeout: 20s\n",
        "hooks/post-data.ts": PROBE_HOOK,
      },
    });
  });
  after(() => cleanup(server));

  it("ends the worker and answers 451; Postern lives on (under Deno it died of a RangeError)", async () => {
    const first = await accepted(server, "none");
    const pid = Number(header(first, "X-Pid"));
    const sent = await send(server, "frames-deep");
    assert.equal(sent.reply, "451 4.3.0 Message could not be checked, try again later");
    const ended = new RegExp(
      `level=error msg="hook worker broke the protocol; it is ended" hook=post-data pid=${pid} ` +
        `cause="a result whose error is not text \\(call 2\\)"`,
    );
    await eventually(
      () => Promise.resolve(logLines(server, ended)[0]),
      10_000,
      "the protocol error line",
    );
    assert.equal(server.child.exitCode, null, `Postern exited:\n${server.stderr().slice(-1500)}`);
    const next = await accepted(server, "none");
    assert.notEqual(Number(header(next, "X-Pid")), pid);
  });
});

describe("hostile hook: output floods", () => {
  let server: Server;
  let release: string;
  before(async () => {
    release = join(await tempDir("postern-flood-"), "release");
    server = await startServer({
      config: {
        ...USERS,
        "postern.yaml": [
          "hooks:",
          "  post_data:",
          "    timeout: 20s",
          "    allow:",
          `      read: [${JSON.stringify(release)}]`,
          "",
        ].join("\n"),
        "hooks/post-data.ts": PROBE_HOOK,
      },
    });
  });
  after(async () => {
    // Also when the test failed: the flood ends.
    if (release) await writeFile(release, "").catch(() => {});
    await cleanup(server);
  });

  it("ends a worker that floods its output between calls, once, with the cause; the next message gets a fresh worker", async () => {
    const first = await accepted(server, "none");
    const pid = Number(header(first, "X-Pid"));
    const logBefore = server.stderr().length;
    // The flood goes on until the test creates the release file.
    const message = await accepted(server, "output-flood", ` release=${release}`);
    assert.equal(header(message, "X-Result"), "flooding");
    // This flood prints line by line as fast as it can: which limit it meets
    // first (writes or bytes a second, or the budget between calls) depends
    // on how Postern's reads keep up; any ends the worker.
    const ended = new RegExp(
      `level=error msg="hook worker wrote too much output; it is ended" hook=post-data ` +
        `pid=${pid} cause="(its output came in more than 1000 writes in one second|` +
        `it wrote more than 1048576 bytes of output in one second|` +
        `its output went over its budget \\(200 lines, 65536 bytes a second\\) while no ` +
        `call was in flight)"`,
    );
    await eventually(
      () => Promise.resolve(logLines(server, ended)[0]),
      10_000,
      "the line that ends the worker",
    );
    await eventually(
      () => Promise.resolve(alive(pid) ? undefined : true),
      10_000,
      "the worker to end",
    );
    const flood = logLines(server, new RegExp(`msg="hook output" hook=post-data pid=${pid} `));
    assert.match(flood[0] ?? "", /line="FLOOD (line|err) 0\.0[ "]/, "the first line is logged");
    assert.ok(flood.length <= 200, `${flood.length} flood lines logged`);
    assert.equal(logLines(server, ended).length, 1, "one line for the event");
    const logged = server.stderr().length - logBefore;
    assert.ok(logged < 512 * 1024, `${logged} bytes of application log`);
    const next = await accepted(server, "none");
    assert.notEqual(Number(header(next, "X-Pid")), pid);
  });
  it("logs the first lines of a call's chatter and one line about the rest; RCPT is served meanwhile; the worker lives on", async () => {
    const first = await accepted(server, "none");
    const pid = Number(header(first, "X-Pid"));
    const logBefore = server.stderr().length;
    const sending = send(server, "chatter");
    const over = new RegExp(
      `level=warn msg="hook output is over its budget; it is dropped until it calms down" ` +
        `hook=post-data pid=${pid} lines_per_second=200 bytes_per_second=65536`,
    );
    const chatting = new RegExp(`msg="hook output" hook=post-data pid=${pid} line="CHAT`);
    await eventually(
      () => Promise.resolve(logLines(server, chatting)[0]),
      10_000,
      "the chatter to start",
    );
    await rcptSession(server, 200);
    const message = await delivered(server, await sending);
    assert.equal(header(message, "X-Result"), "chatted");
    assert.equal(Number(header(message, "X-Pid")), pid, "the same worker answered");
    const logged = server.stderr().length - logBefore;
    await eventually(
      () => Promise.resolve(logLines(server, over)[0]),
      10_000,
      "the over-budget line",
    );
    const chat = logLines(server, new RegExp(`msg="hook output" hook=post-data pid=${pid} `));
    assert.match(chat[0] ?? "", /line="CHAT (line|err) 0\.0[ "]/, "the first line is logged");
    assert.ok(chat.length <= 400, `${chat.length} lines of chatter logged`);
    assert.equal(logLines(server, over).length, 1, "one line says the rest is dropped");
    assert.ok(logged < 512 * 1024, `${logged} bytes of application log`);
    assert.deepEqual(
      logLines(
        server,
        new RegExp(`wrote too much output; it is ended" hook=post-data pid=${pid} `),
      ),
      [],
      "the worker was not ended",
    );
    assert.ok(alive(pid), "the worker lives on");
  });
});
