import assert from "node:assert/strict";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { grantedProgram, grantedPrograms, lookUp } from "../../../src/hooks/pipe_grants.ts";
import { makeTempDir, removeDir } from "../helpers.ts";

describe("pipe grants", () => {
  let root: string;
  let first: string;
  let second: string;
  let config: string;
  let path: string;

  before(async () => {
    root = await makeTempDir("postern-pipe-grants-");
    first = join(root, "first");
    second = join(root, "second");
    config = join(root, "config");
    for (const dir of [first, second, join(config, "bin")]) await mkdir(dir, { recursive: true });
    // "tool" in both PATH directories, "plain" only in the second, and
    // "data" not executable at all.
    for (const file of [join(first, "tool"), join(second, "tool"), join(second, "plain")]) {
      await writeFile(file, "#!/bin/sh\n");
      await chmod(file, 0o755);
    }
    await writeFile(join(first, "data"), "not a program\n");
    await writeFile(join(config, "bin", "local"), "#!/bin/sh\n");
    await chmod(join(config, "bin", "local"), 0o755);
    path = [first, "", "relative/dir", second].join(":");
  });

  after(async () => {
    await removeDir(root);
  });

  it("lookUp() finds the first executable file in PATH, skipping empty and relative entries", () => {
    assert.equal(lookUp("tool", path), join(first, "tool"));
    assert.equal(lookUp("plain", path), join(second, "plain"));
    assert.equal(lookUp("data", path), undefined);
    assert.equal(lookUp("missing", path), undefined);
    assert.equal(lookUp("tool", undefined), undefined);
  });

  it("grantedPrograms() resolves entries as deno does: absolute as is, relative to the config dir, bare names in PATH", () => {
    const programs = grantedPrograms({
      run: ["/bin/sh", "bin/local", "tool", "missing"],
      path,
      cwd: config,
    });
    assert.deepEqual(
      [...programs].sort(),
      ["/bin/sh", join(config, "bin", "local"), join(first, "tool")].sort(),
    );
  });

  it("grantedPrograms() grants nothing for an empty allow.run", () => {
    assert.equal(grantedPrograms({ run: [], path, cwd: config }).size, 0);
  });

  it("grantedProgram() allows an absolute path only when it is granted exactly", () => {
    const programs = grantedPrograms({ run: ["/bin/sh"], path, cwd: config });
    assert.equal(grantedProgram("/bin/sh", programs, path), "/bin/sh");
    for (const program of ["/bin/bash", "/bin/../bin/sh", "/bin//sh", "/usr/bin/id"]) {
      assert.equal(grantedProgram(program, programs, path), undefined, program);
    }
  });

  it("grantedProgram() resolves a bare name in PATH and returns the path checked", () => {
    const programs = grantedPrograms({ run: [join(first, "tool")], path, cwd: config });
    assert.equal(grantedProgram("tool", programs, path), join(first, "tool"));
    // The same name found elsewhere first would be another program.
    assert.equal(grantedProgram("tool", programs, [second, first].join(":")), undefined);
    assert.equal(grantedProgram(join(second, "tool"), programs, path), undefined);
  });

  it("grantedProgram() refuses every program when nothing is granted", () => {
    const programs = grantedPrograms({ run: [], path, cwd: config });
    for (const program of ["sh", "/bin/sh", "tool", join(first, "tool"), ""]) {
      assert.equal(grantedProgram(program, programs, path), undefined, program);
    }
  });

  it("grantedProgram() refuses a relative path with a slash, even one that names a granted file", () => {
    const programs = grantedPrograms({ run: ["bin/local"], path, cwd: config });
    assert.equal(grantedProgram("bin/local", programs, path), undefined);
    assert.equal(grantedProgram("./bin/local", programs, path), undefined);
    assert.equal(
      grantedProgram(join(config, "bin", "local"), programs, path),
      join(config, "bin", "local"),
    );
  });
});
