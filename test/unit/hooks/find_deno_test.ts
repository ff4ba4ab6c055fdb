import assert from "node:assert/strict";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { findDeno } from "../../../src/hooks/find_deno.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

describe("findDeno", () => {
  let root: string;
  /** Folders holding an executable file named deno. */
  let execA: string;
  let execB: string;
  /** A folder holding a non-executable file named deno. */
  let plain: string;
  /** A folder holding a folder named deno. */
  let withDir: string;
  /** A folder with nothing in it. */
  let empty: string;

  const envOf = (vars: Record<string, string>) => (name: string) => vars[name];
  const NOT_DENO = "/usr/local/bin/bun";

  before(async () => {
    root = await makeTempDir("postern-find-deno-");
    execA = join(root, "a");
    execB = join(root, "b");
    plain = join(root, "plain");
    withDir = join(root, "withdir");
    empty = join(root, "empty");
    for (const dir of [execA, execB, plain, withDir, empty]) await mkdir(dir);
    for (const dir of [execA, execB]) {
      await writeFile(join(dir, "deno"), "#!/bin/sh\n");
      await chmod(join(dir, "deno"), 0o755);
    }
    await writeFile(join(plain, "deno"), "not a program\n");
    await chmod(join(plain, "deno"), 0o644);
    await mkdir(join(withDir, "deno"));
    await chmod(join(withDir, "deno"), 0o755);
  });
  after(async () => {
    await removeDir(root);
  });

  it("findDeno() uses the configured path first, ahead of DENO_BIN and PATH", () => {
    const found = findDeno({
      configured: join(execA, "deno"),
      env: envOf({ DENO_BIN: join(execB, "deno"), PATH: execB }),
      execPath: join(execB, "deno"),
    });
    assert.deepEqual(found, { path: join(execA, "deno"), source: "config" });
  });

  it("findDeno() throws naming the path and hooks.deno when the configured file is not executable", () => {
    assert.throws(
      () =>
        findDeno({
          configured: join(plain, "deno"),
          env: envOf({ DENO_BIN: join(execA, "deno"), PATH: execA }),
          execPath: join(execA, "deno"),
        }),
      (err: unknown) =>
        err instanceof Error && err.message.includes(join(plain, "deno")) &&
        err.message.includes("hooks.deno") && /not an executable file/.test(err.message),
    );
  });

  it("findDeno() throws when the configured path does not exist or is a folder", () => {
    for (const configured of [join(empty, "deno"), join(withDir, "deno")]) {
      assert.throws(
        () => findDeno({ configured, env: envOf({ PATH: execA }), execPath: NOT_DENO }),
        (err: unknown) => err instanceof Error && err.message.includes(configured),
        configured,
      );
    }
  });

  it("findDeno() uses DENO_BIN when nothing is configured, ahead of PATH", () => {
    for (const configured of [undefined, ""]) {
      const found = findDeno({
        configured,
        env: envOf({ DENO_BIN: join(execB, "deno"), PATH: execA }),
        execPath: join(execA, "deno"),
      });
      assert.deepEqual(found, { path: join(execB, "deno"), source: "DENO_BIN" });
    }
  });

  it("findDeno() throws naming DENO_BIN when it is not executable rather than looking on PATH", () => {
    assert.throws(
      () =>
        findDeno({
          env: envOf({ DENO_BIN: join(plain, "deno"), PATH: execA }),
          execPath: NOT_DENO,
        }),
      (err: unknown) =>
        err instanceof Error && err.message.includes(join(plain, "deno")) &&
        err.message.includes("DENO_BIN"),
    );
  });

  it("findDeno() uses the binary's own deno after hooks.deno and DENO_BIN, ahead of PATH", () => {
    const embedded = join(root, "data", "runtime", "deno-2.9.6");
    const env = envOf({ PATH: execA });
    assert.deepEqual(findDeno({ embedded, env, execPath: join(execB, "deno") }), {
      path: embedded,
      source: "embedded",
    });
    assert.deepEqual(
      findDeno({ embedded, env: envOf({ DENO_BIN: join(execB, "deno") }), execPath: NOT_DENO }),
      { path: join(execB, "deno"), source: "DENO_BIN" },
    );
    assert.deepEqual(
      findDeno({ configured: join(execA, "deno"), embedded, env, execPath: NOT_DENO }),
      { path: join(execA, "deno"), source: "config" },
    );
  });

  it("findDeno() ignores an empty DENO_BIN", () => {
    const found = findDeno({ env: envOf({ DENO_BIN: "", PATH: execA }), execPath: NOT_DENO });
    assert.deepEqual(found, { path: join(execA, "deno"), source: "PATH" });
  });

  it("findDeno() takes the first executable deno on PATH, skipping non-executable files and folders", () => {
    const found = findDeno({
      env: envOf({ PATH: [empty, plain, withDir, "", execB, execA].join(delimiter) }),
      execPath: NOT_DENO,
    });
    assert.deepEqual(found, { path: join(execB, "deno"), source: "PATH" });
  });

  it("findDeno() prefers PATH over the running executable", () => {
    const found = findDeno({ env: envOf({ PATH: execA }), execPath: join(execB, "deno") });
    assert.deepEqual(found, { path: join(execA, "deno"), source: "PATH" });
  });

  it("findDeno() uses the running executable when it is an executable named deno and PATH has none", () => {
    for (const env of [envOf({ PATH: [empty, plain].join(delimiter) }), envOf({})]) {
      const found = findDeno({ env, execPath: join(execB, "deno") });
      assert.deepEqual(found, { path: join(execB, "deno"), source: "running deno" });
    }
  });

  it("findDeno() returns undefined when the running executable is not deno and nothing else is found", () => {
    for (const execPath of [NOT_DENO, join(root, "dist", "postern")]) {
      assert.equal(findDeno({ env: envOf({ PATH: empty }), execPath }), undefined, execPath);
    }
  });

  it("findDeno() returns undefined when the running executable is named deno but is not executable", () => {
    assert.equal(
      findDeno({ env: envOf({ PATH: empty }), execPath: join(plain, "deno") }),
      undefined,
    );
  });
});
