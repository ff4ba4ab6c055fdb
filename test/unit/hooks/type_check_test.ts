/**
 * Tests of `postern check`'s type check: what a hook's module graph may
 * import (`importRefusals()`), and `typeCheckHooks()` run against a fake
 * deno, so that what each answer of deno leads to is certain, a deno that
 * misbehaves included. `test/e2e/check_imports_test.ts` runs the real one.
 *
 * @module
 */

import assert from "node:assert/strict";
import { chmod, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fencingMap, importRefusals, typeCheckHooks } from "../../../src/hooks/type_check.ts";
import { makeTempDir, removeDir, writeTree } from "../helpers.ts";

const LAYOUT = { scratch: "/tmp/postern-check-x", configDir: "/etc/postern" };
const HOOKS = "file:///tmp/postern-check-x/hooks";

/** A module of a `deno info --json` graph importing `code` and `types`. */
function module(specifier: string, code: string[] = [], types: string[] = []) {
  return {
    specifier,
    dependencies: [
      ...code.map((s) => ({ specifier: s, code: { specifier: s } })),
      ...types.map((s) => ({ specifier: s, type: { specifier: s } })),
    ],
  };
}

describe("fencingMap", () => {
  it("fencingMap() maps the copy and the SDK to themselves and every other file under outside/", () => {
    assert.deepEqual(fencingMap("/tmp/postern-check-x"), {
      imports: {
        "file:///tmp/postern-check-x/hooks/": "file:///tmp/postern-check-x/hooks/",
        "file:///tmp/postern-check-x/mod.ts": "file:///tmp/postern-check-x/mod.ts",
        "file:///": "file:///tmp/postern-check-x/outside/",
      },
    });
  });

  it("fencingMap() writes a scratch path with spaces or % as a URL", () => {
    const map = fencingMap("/tmp/a b%c");
    assert.equal(map.imports["file:///"], "file:///tmp/a%20b%25c/outside/");
  });
});

describe("importRefusals", () => {
  it("importRefusals() allows the hooks folder, the SDK one folder up, node: and data: modules", () => {
    const graph = {
      modules: [
        module(
          `${HOOKS}/post-data.ts`,
          [`${HOOKS}/post-data/lib.ts`, `${HOOKS}/post-data/data.json`, "node:fs", "data:,x"],
          ["file:///tmp/postern-check-x/mod.ts"],
        ),
        module(`${HOOKS}/post-data/lib.ts`),
        { specifier: "file:///tmp/postern-check-x/mod.ts" },
        { specifier: "node:fs" },
        { specifier: "data:,x" },
      ],
    };
    assert.deepEqual(importRefusals(graph, "post-data", LAYOUT), []);
  });

  it("importRefusals() refuses each local module outside, naming the importer, never quoting the module", () => {
    const graph = {
      modules: [
        module(`${HOOKS}/post-data.ts`, ["file:///etc/passwd", `${HOOKS}/post-data/lib.ts`]),
        module(`${HOOKS}/post-data/lib.ts`, ["file:///tmp/postern-check-x/domains/x/users"]),
        // deno's error text quotes the line it could not parse.
        { specifier: "file:///etc/passwd", error: "SyntaxError\n1 | root:x:0:0:root" },
        { specifier: "file:///tmp/postern-check-x/domains/x/users", error: "1 | alice $scrypt$" },
      ],
    };
    const lines = importRefusals(graph, "post-data", LAYOUT)!;
    assert.deepEqual(lines, [
      "post-data.ts imports /etc/passwd, outside the hooks folder; the sandbox refuses it",
      // A path in the scratch copy is shown where it is in the configuration.
      "post-data/lib.ts imports /etc/postern/domains/x/users, outside the hooks folder; " +
      "the sandbox refuses it",
    ]);
    assert.doesNotMatch(lines.join("\n"), /root:x|scrypt/);
  });

  it("importRefusals() refuses type imports from outside, and remote and npm modules", () => {
    const graph = {
      modules: [
        module(
          `${HOOKS}/alias-exists.ts`,
          ["https://example.test/x.ts", "npm:left-pad", "jsr:@std/path"],
          ["file:///srv/secret.ts"],
        ),
        { specifier: "file:///srv/secret.ts" },
        { specifier: "https://example.test/x.ts" },
        { specifier: "npm:left-pad" },
        { specifier: "jsr:@std/path" },
      ],
    };
    assert.deepEqual(importRefusals(graph, "alias-exists", LAYOUT), [
      "alias-exists.ts imports https://example.test/x.ts, not a local file; the sandbox refuses it",
      "alias-exists.ts imports npm:left-pad, not a local file; the sandbox refuses it",
      "alias-exists.ts imports jsr:@std/path, not a local file; the sandbox refuses it",
      "alias-exists.ts imports types from /srv/secret.ts, outside the hooks folder; " +
      "postern check reads nothing outside it",
    ]);
  });

  it("importRefusals() refuses what a data: module imports from outside, and a folder next to the copy", () => {
    const graph = {
      modules: [
        module(`${HOOKS}/post-data.ts`, ["data:,import '/etc/shadow'"]),
        module("data:,import '/etc/shadow'", ["file:///etc/shadow"]),
        module(`${HOOKS}/alias-resolve.ts`, ["file:///tmp/postern-check-x/hooks2/a.ts"]),
        { specifier: "file:///etc/shadow" },
        { specifier: "file:///tmp/postern-check-x/hooks2/a.ts" },
      ],
    };
    assert.deepEqual(importRefusals(graph, "post-data", LAYOUT), [
      "post-data.ts imports /etc/shadow, outside the hooks folder; the sandbox refuses it",
      "alias-resolve.ts imports /etc/postern/hooks2/a.ts, outside the hooks folder; " +
      "the sandbox refuses it",
    ]);
  });

  it("importRefusals() names a file the import map moved under outside/ by the path the hook gave", () => {
    const fenced = "file:///tmp/postern-check-x/outside";
    const graph = {
      modules: [
        module(
          `${HOOKS}/post-data.ts`,
          [`${fenced}/etc/passwd`, `${fenced}/tmp/postern-check-x/secret.ts`],
          [`${fenced}/srv/types.ts`],
        ),
        { specifier: `${fenced}/etc/passwd`, error: 'Module not found "…"' },
      ],
    };
    assert.deepEqual(importRefusals(graph, "post-data", LAYOUT), [
      "post-data.ts imports /etc/passwd, outside the hooks folder; the sandbox refuses it",
      "post-data.ts imports /etc/postern/secret.ts, outside the hooks folder; the sandbox refuses it",
      "post-data.ts imports types from /srv/types.ts, outside the hooks folder; " +
      "postern check reads nothing outside it",
    ]);
  });

  it("importRefusals() refuses a graph holding a module outside that no importer names", () => {
    const graph = { modules: [module(`${HOOKS}/post-data.ts`), { specifier: "file:///etc/x" }] };
    assert.deepEqual(importRefusals(graph, "post-data", LAYOUT), [
      "post-data.ts imports modules outside the hooks folder; the sandbox refuses them",
    ]);
  });

  it("importRefusals() returns undefined for what is not a module graph", () => {
    for (const graph of [null, {}, { modules: "x" }, { modules: [{ error: "x" }] }]) {
      assert.equal(importRefusals(graph, "post-data", LAYOUT), undefined, JSON.stringify(graph));
    }
  });
});

/**
 * A stand-in for deno: `info` runs `graph.sh` (beside it) with the hook's
 * path in `$last`; `check` prints `check.txt`, with `@SCRATCH@` standing
 * for the scratch folder, and exits with the status in `check.status`.
 * Every call is appended to `calls`, marked "fenced" when it was given an
 * import map.
 */
const FAKE_DENO = `#!/bin/sh
dir=$(dirname "$0")
case " $* " in
  *" --import-map="*) echo "$1 fenced" >> "$dir/calls" ;;
  *) echo "$1" >> "$dir/calls" ;;
esac
for last in "$@"; do :; done
case "$1" in
  info) . "$dir/graph.sh" ;;
  check) sed "s|@SCRATCH@|\${last%/hooks/*}|g" "$dir/check.txt"; exit $(cat "$dir/check.status") ;;
esac
`;

describe("typeCheckHooks with a fake deno", () => {
  let dir: string;
  let deno: string;
  before(async () => {
    dir = await makeTempDir();
    deno = join(dir, "fake", "deno");
    await writeTree(dir, {
      "fake/deno": FAKE_DENO,
      "config/hooks/post-data.ts": "export default () => undefined;\n",
    });
    await chmod(deno, 0o755);
  });
  after(() => removeDir(dir));

  /** Sets what the fake deno answers, runs the check, and returns it with the calls made. */
  async function check(graph: string, report = "", status = 0) {
    await writeTree(dir, {
      "fake/graph.sh": graph,
      "fake/check.txt": report,
      "fake/check.status": String(status),
      "fake/calls": "",
    });
    const result = await typeCheckHooks(join(dir, "config"), deno, () => undefined);
    const calls = (await readFile(join(dir, "fake", "calls"), "utf8")).split("\n").filter(Boolean);
    return { result, calls };
  }

  /** A graph script: the hook (its path is $last) importing `imports`. */
  const graphOf = (imports: string[]) =>
    `printf '{"modules":[{"specifier":"file://%s","dependencies":[${
      imports.map((s) => `{"code":{"specifier":"${s}"}}`).join(",")
    }]}]}' "$last"\n`;

  it("typeCheckHooks() refuses an import outside without running deno check or showing its content", async () => {
    const { result, calls } = await check(
      graphOf(["file:///etc/passwd"]) + 'echo "1 | root:x:0:0:root" >&2\n',
    );
    assert.deepEqual(calls, ["info fenced"]);
    assert.equal(result.ok, false);
    assert.equal(
      result.report,
      "post-data.ts imports /etc/passwd, outside the hooks folder; the sandbox refuses it",
    );
  });

  it("typeCheckHooks() withholds a deno check report that names a file outside the hooks folder", async () => {
    const report = "error: SyntaxError\n1 | alice $scrypt$ln=15\n    at file:///etc/users:1:7\n";
    const { result, calls } = await check(graphOf([]), report, 1);
    assert.deepEqual(calls, ["info fenced", "check fenced"]);
    assert.equal(result.ok, false);
    assert.doesNotMatch(result.report, /scrypt|alice/);
    assert.match(result.report, /names files outside the hooks folder, so it is not shown/);
  });

  it("typeCheckHooks() shows a deno check report about the hooks, with the configuration's paths", async () => {
    const report = "TS2322 [ERROR]: Type 'string' is not assignable to type 'number'.\n" +
      "    at file://@SCRATCH@/hooks/post-data.ts:1:7\n";
    const { result } = await check(graphOf([]), report, 1);
    assert.deepEqual(result, {
      checked: [join(dir, "config", "hooks", "post-data.ts")],
      ok: false,
      report: "TS2322 [ERROR]: Type 'string' is not assignable to type 'number'.\n" +
        `    at ${join(dir, "config", "hooks")}/post-data.ts:1:7`,
    });
  });

  it("typeCheckHooks() fails, quoting nothing, when deno info does not answer with a graph", async () => {
    for (const graph of ['echo "1 | SECRET-LINE" >&2; exit 1\n', "echo not json\n"]) {
      const { result, calls } = await check(graph);
      assert.deepEqual(calls, ["info fenced"]);
      assert.equal(result.ok, false);
      assert.match(result.report, /^post-data\.ts: its imports could not be listed \(deno info /);
      assert.doesNotMatch(result.report, /SECRET|not json/);
    }
  });

  it("typeCheckHooks() passes a hook whose graph stays inside and that deno check accepts", async () => {
    const { result, calls } = await check(graphOf(["node:fs"]));
    assert.deepEqual(calls, ["info fenced", "check fenced"]);
    assert.deepEqual(result, {
      checked: [join(dir, "config", "hooks", "post-data.ts")],
      ok: true,
      report: "",
    });
  });
});
