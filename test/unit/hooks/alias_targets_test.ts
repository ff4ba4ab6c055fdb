import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AliasHookError, aliasHookTargets } from "../../../src/hooks/alias_targets.ts";
import type { AliasResolveVerdict } from "../../../src/hooks/points.ts";
import { Counters, Logger } from "../../../src/log/mod.ts";

/** The targets function over a fixed verdict, with its log lines and counters. */
function setup(verdict: AliasResolveVerdict | undefined, run: string[] = []) {
  const lines: string[] = [];
  const counters = new Counters();
  const extra = aliasHookTargets({
    resolve: () => Promise.resolve(verdict),
    runGrants: () => ({ run, path: "/usr/bin:/bin", cwd: "/etc/postern" }),
    logger: new Logger("info", (l) => lines.push(l)),
    counters,
  });
  return { extra, lines, counters };
}

const refused = (counters: Counters) =>
  counters.get("hook_answers_refused", { hook: "alias-resolve", kind: "pipe" });

describe("aliasHookTargets", () => {
  it("returns undefined, not an answer, when there is no hook", async () => {
    assert.equal(await setup(undefined).extra("a@example.test"), undefined);
  });

  it("parses addresses in the address's domain; remote addresses need no grant", async () => {
    const { extra, counters } = setup({ ok: true, rhs: ["bob, carol@far.test"], sandboxed: true });
    assert.deepEqual(await extra("a@example.test"), [
      { kind: "address", address: "bob@example.test" },
      { kind: "address", address: "carol@far.test" },
    ]);
    assert.equal(refused(counters), 0);
  });

  it("refuses a module hook's pipe to a program outside its allow.run: logged, counted, deferred", async () => {
    const { extra, lines, counters } = setup({
      ok: true,
      rhs: ["| /bin/sh -c id>pwned"],
      sandboxed: true,
    });
    await assert.rejects(
      extra("victim@example.test"),
      (err: unknown) =>
        err instanceof AliasHookError &&
        err.message ===
          'alias-resolve hook may not run "/bin/sh": it is not in hooks.alias_resolve.allow.run',
    );
    assert.equal(refused(counters), 1);
    assert.equal(lines.length, 1);
    assert.match(
      lines[0]!,
      /level=warn msg="alias-resolve hook answered a pipe to a program it may not run; the delivery is deferred" hook=alias-resolve address=victim@example\.test program=\/bin\/sh allow_run=none/,
    );
  });

  it("refuses the whole answer when one of its pipes is not granted", async () => {
    const { extra, counters } = setup(
      { ok: true, rhs: ["bob", "| /bin/true", "| /bin/sh -c x"], sandboxed: true },
      ["/bin/true"],
    );
    await assert.rejects(extra("a@example.test"), AliasHookError);
    assert.equal(refused(counters), 1);
  });

  it("runs a granted program: allow.run /bin/sh is the operator's grant, even with -c", async () => {
    const { extra, counters } = setup(
      { ok: true, rhs: ["| /bin/sh -c id>pwned"], sandboxed: true },
      ["/bin/sh"],
    );
    assert.deepEqual(await extra("a@example.test"), [
      { kind: "pipe", argv: ["/bin/sh", "-c", "id>pwned"] },
    ]);
    assert.equal(refused(counters), 0);
  });

  it("runs a bare name as the absolute path granted for it", async () => {
    const { extra } = setup({ ok: true, rhs: ["| sh -c true"], sandboxed: true }, ["sh"]);
    const [target] = await extra("a@example.test") ?? [];
    assert.equal(target?.kind, "pipe");
    assert.ok(target?.kind === "pipe" && /^\/(usr\/)?bin\/sh$/.test(target.argv[0]!));
    assert.deepEqual(target?.kind === "pipe" && target.argv.slice(1), ["-c", "true"]);
  });

  it("refuses a bare name granted under another path", async () => {
    const { extra } = setup({ ok: true, rhs: ["| sh -c true"], sandboxed: true }, [
      "/opt/other/sh",
    ]);
    await assert.rejects(extra("a@example.test"), /may not run "sh"/);
  });

  it("trusts an executable hook's pipe, as chasquid does: it already runs unsandboxed", async () => {
    const { extra, counters } = setup({ ok: true, rhs: ["| /bin/sh -c x"], sandboxed: false });
    assert.deepEqual(await extra("a@example.test"), [
      { kind: "pipe", argv: ["/bin/sh", "-c", "x"] },
    ]);
    assert.equal(refused(counters), 0);
  });

  it("throws AliasHookError for a failed call and for output that does not parse", async () => {
    await assert.rejects(
      setup({ ok: false, cause: "timeout: no result" }).extra("a@example.test"),
      /alias-resolve hook failed: timeout: no result/,
    );
    await assert.rejects(
      setup({ ok: true, rhs: ["a b c"], sandboxed: true }).extra("a@example.test"),
      /alias-resolve hook output cannot be parsed/,
    );
  });
});
