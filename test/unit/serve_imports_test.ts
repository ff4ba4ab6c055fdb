/**
 * What start-up loads (issue 17): the npm packages that only some paths
 * need are reached from `src/main.ts` through dynamic `import()` with a
 * static string (so that `bun build --compile` still bundles them), never
 * through a static import. The graph is read from the source files.
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const MAIN = resolve(fileURLToPath(import.meta.url), "../../../src/main.ts");

/** Packages loaded on first use, with the reason they are not needed at start. */
const LAZY: Record<string, string> = {
  selfsigned: "only when no certificate exists",
  "acme-client": "only with tls.acme",
  ioredis: "only with cluster",
  nodemailer: "first outbound or LMTP delivery",
  mailauth: "the first message from an untrusted client, DKIM signing or MTA-STS",
  hono: "the admin API's first request",
  "@hono/valibot-validator": "the admin API's first request",
};

/**
 * Single files of a lazy package that start-up may load: each is one small
 * module that requires nothing else (nodemailer's address parser reads the
 * authors of a From field for DMARC, src/auth/author_addresses.ts).
 */
const SMALL_PARTS = new Set(["nodemailer/lib/addressparser"]);

/** Packages start-up does load, to show that the walk finds static imports. */
const EAGER = ["smtp-server", "yaml", "valibot"];

interface Imports {
  /** Specifiers of static imports that are not erased (type-only ones are). */
  statics: string[];
  /** Specifiers of `import("…")` with a string literal. */
  dynamics: string[];
}

/** The imports of one TypeScript source, comments left out. */
export function importsOf(source: string): Imports {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const statics: string[] = [];
  const clause = /^\s*(import|export)\s+(type\s+)?([\w*{}\s,$]*?)\s*from\s+"([^"]+)"/gm;
  for (const m of code.matchAll(clause)) {
    if (m[2]) continue;
    const named = /^\{([\s\S]*)\}$/.exec(m[3]!.trim());
    const parts = named?.[1]?.split(",").map((p) => p.trim()).filter((p) => p !== "");
    // `import { type A, type B } from "x"` is erased as a whole.
    if (parts && parts.length > 0 && parts.every((p) => p.startsWith("type "))) continue;
    statics.push(m[4]!);
  }
  for (const m of code.matchAll(/^\s*import\s+"([^"]+)"/gm)) statics.push(m[1]!);
  const dynamics = [...code.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g)].map((m) => m[1]!);
  return { statics, dynamics };
}

/** Bare specifiers reachable from `entry`, following dynamic imports too or not. */
async function reachable(entry: string, followDynamic: boolean): Promise<Set<string>> {
  const bare = new Set<string>();
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const { statics, dynamics } = importsOf(await readFile(file, "utf8"));
    for (const spec of followDynamic ? [...statics, ...dynamics] : statics) {
      if (spec.startsWith(".")) todo.push(resolve(dirname(file), spec));
      else if (!spec.startsWith("node:")) bare.add(spec);
    }
  }
  return bare;
}

const inPackage = (name: string) => (spec: string) => spec === name || spec.startsWith(`${name}/`);

describe("start-up imports", () => {
  it("importsOf() tells static, type-only and dynamic imports apart", () => {
    const found = importsOf([
      'import { a, type B } from "one";',
      'import type { C } from "two";',
      'import {\n  type D,\n  type E,\n} from "three";',
      'export { f } from "./four.ts";',
      '/** import { g } from "five"; */',
      'import "six";',
      'const m = await import("seven");',
    ].join("\n"));
    assert.deepEqual(found, { statics: ["one", "./four.ts", "six"], dynamics: ["seven"] });
  });

  it("the walk finds the packages start-up does load", async () => {
    const statics = [...await reachable(MAIN, false)];
    for (const name of EAGER) {
      assert.ok(statics.some(inPackage(name)), `${name} is not found among ${statics}`);
    }
  });

  for (const [name, why] of Object.entries(LAZY)) {
    it(`${name} is loaded on first use (${why}), not at start-up`, async () => {
      const statics = [...await reachable(MAIN, false)];
      assert.deepEqual(statics.filter((s) => inPackage(name)(s) && !SMALL_PARTS.has(s)), []);
      // Still reachable through import("…") with a string, which the
      // compiled binary bundles.
      const all = [...await reachable(MAIN, true)];
      assert.ok(all.some(inPackage(name)), `no import("${name}…") is reachable from main.ts`);
    });
  }
});
