/**
 * chasquid's hook reference, the parts that were wrong (issue 15):
 * `AUTH_AS` (and `authAs` of module hooks) is the user of a completed AUTH
 * on a submission listener, empty otherwise; `USER` and `SHELL` are always
 * in an executable hook's environment, empty when Postern's lacks them.
 */

import assert from "node:assert/strict";
import { chmod } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  freePort,
  maildirMessages,
  posternCommand,
  queuedId,
  run,
  type Server,
  startServer,
  submitMail,
  swaks,
  tempDir,
  writeTree,
} from "./harness.ts";

const EXEC_HOOK = `#!/bin/sh
cat > /dev/null
echo "X-Auth-As: [$AUTH_AS]"
echo "X-User: [\${USER-unset}]"
echo "X-Shell: [\${SHELL-unset}]"
`;

const MODULE_HOOK = `export default (input) => ({
  action: "accept",
  headers: ["X-Auth-As: [" + input.authAs + "]"],
});
`;

const ALICE = { user: "alice@example.test", password: "s3cret-pass" };

/** Starts a server with a submission listener, alice's login and `hook` as hooks/<file>. */
async function serverWith(
  file: string,
  hook: string,
  env?: Record<string, string>,
): Promise<{ server: Server; submission: number }> {
  const configDir = await tempDir("postern-config-");
  const submission = await freePort();
  await writeTree(configDir, {
    "postern.yaml": [
      "submission:",
      `  listen: ["127.0.0.1:${submission}"]`,
      "hooks:",
      "  allow_unsandboxed_exec: true",
      "",
    ].join("\n"),
    "domains/example.test/users": "bob\n",
    [`hooks/${file}`]: hook,
  });
  await chmod(join(configDir, "hooks", file), 0o755);
  const [cmd, ...args] = posternCommand(["user", "add", ALICE.user, "--config", configDir]);
  const added = await run(cmd!, args, `${ALICE.password}\n`);
  assert.equal(added.code, 0, added.stderr);
  return { server: await startServer({ configDir, ...(env ? { env } : {}) }), submission };
}

/** The value of header `name` in bob's copy of message `qid`. */
async function headerOf(server: Server, qid: string, name: string): Promise<string | undefined> {
  const message = await eventually(
    async () =>
      (await maildirMessages(server.dataDir, "example.test", "bob")).find((m) =>
        m.includes(`id ${qid}`)
      ),
    15_000,
    `delivery of ${qid}`,
  );
  return message.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
}

for (
  const [form, file, hook] of [
    ["executable hook, AUTH_AS", "post-data", EXEC_HOOK],
    ["module hook, authAs", "post-data.ts", MODULE_HOOK],
  ] as const
) {
  describe(`post-data ${form}`, () => {
    let server: Server;
    let submission = 0;

    before(async () => {
      // Postern's own environment without USER and SHELL (undefined drops a variable).
      const unset = { USER: undefined, SHELL: undefined } as unknown as Record<string, string>;
      ({ server, submission } = await serverWith(file, hook, unset));
    });
    after(async () => {
      await cleanup(server);
    });

    it("is the user who logged in on the submission listener", async () => {
      const sent = await submitMail(submission, ALICE, ALICE.user, ["bob@example.test"]);
      assert.equal(await headerOf(server, queuedId(sent), "X-Auth-As"), `[${ALICE.user}]`);
    });

    it("is empty without AUTH", async () => {
      const sent = await swaks(server, ["--from", "carol@client.test", "--to", "bob@example.test"]);
      assert.equal(await headerOf(server, queuedId(sent), "X-Auth-As"), "[]");
    });

    if (file === "post-data") {
      it("has USER and SHELL, empty, when Postern's environment lacks them", async () => {
        const sent = await swaks(server, [
          "--from",
          "carol@client.test",
          "--to",
          "bob@example.test",
        ]);
        const qid = queuedId(sent);
        assert.equal(await headerOf(server, qid, "X-User"), "[]");
        assert.equal(await headerOf(server, qid, "X-Shell"), "[]");
      });
    }
  });
}
