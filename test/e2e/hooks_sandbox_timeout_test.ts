/**
 * The sandbox of module hooks, end to end over SMTP, against a post-data
 * hook that never answers: with `timeout: 2s`, a hook that never settles
 * its promise or blocks its event loop gets the message a 451 after the
 * timeout, not before; its worker is killed and replaced, and the next
 * message is served by a fresh one. The probe hook is in
 * hooks_sandbox_fixtures.ts; the other sandbox cases in hooks_sandbox_test.ts.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { cleanup, type Server, startServer } from "./harness.ts";
import {
  accepted,
  assertRefusedThenServing,
  header,
  logged,
  PROBE_HOOK,
  processGone,
  send,
} from "./hooks_sandbox_fixtures.ts";

describe("module hook sandbox (post-data, timeout 2s)", () => {
  let server: Server;

  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": "hooks:\n  post_data:\n    timeout: 2s\n",
        "domains/example.test/users": "alice\n",
        "hooks/post-data.ts": PROBE_HOOK,
      },
    });
  });

  after(async () => {
    if (server) await cleanup(server);
  });

  for (
    const [name, what] of [
      ["hang", "never settles its promise"],
      ["spin", "blocks its event loop"],
    ] as const
  ) {
    it(`answers 451 after the 2 s timeout when the hook ${what}; the worker is killed and replaced`, async () => {
      const first = await accepted(server, { case: "none", mode: "catch" });
      const pid = Number(header(first, "X-Pid"));
      const sent = await send(server, { case: name, mode: "catch" });
      // Not before the timeout. That the timeout (and not the hook) ended
      // the call is shown by the 451 and the "timed out" line below, since
      // the hook never answers (hang) or answers "accept" after 30 s (spin).
      assert.ok(sent.elapsedMs >= 1_900, `answered after ${sent.elapsedMs} ms`);
      const next = await assertRefusedThenServing(server, sent);
      await logged(
        server,
        new RegExp(
          `level=warn msg="hook timed out; its worker is retired" hook=post-data pid=${pid} timeout_ms=2000`,
        ),
      );
      assert.notEqual(Number(header(next, "X-Pid")), pid);
      assert.equal(header(next, "X-Calls"), "1");
      await processGone(pid);
    });
  }
});
