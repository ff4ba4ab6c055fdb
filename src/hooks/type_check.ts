/**
 * Type-checks the TypeScript hooks of a configuration with `deno check`,
 * for `postern check`. The hooks are checked in a scratch copy of the
 * hooks folder, with the SDK's types as `mod.ts` beside them and one
 * folder up (where the examples import them from), so that a hook written
 * against the SDK checks without the SDK being installed in the
 * configuration. Nothing is fetched: remote and npm imports are refused.
 *
 * `deno check` reads whatever a module imports, with no permission to ask
 * for, and quotes what it cannot parse: `import "/etc/passwd"` would put
 * root's line in the report. The runtime sandbox refuses such reads, so
 * the check refuses them too, and makes sure deno cannot make them:
 *
 * 1. deno runs with an import map that sends every `file:` URL outside the
 *    copy (and the SDK beside it) into a folder of the scratch that does
 *    not exist, so whatever the hooks import, deno opens nothing outside;
 * 2. the module graph (`deno info --json`: its specifiers, never its error
 *    texts) must stay in the copy, or the check fails with one line per
 *    import from outside, before `deno check` runs;
 * 3. a report of `deno check` that names a file outside is not shown.
 *
 * @module
 */

import { cp, lstat, mkdtemp, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as v from "valibot";
import { HOOK_POINTS } from "../../hooks/mod.ts";
import { spawnProcess } from "../runtime/mod.ts";
import { SDK_TYPES_SOURCE } from "./sdk_types.ts";

/** The outcome of {@linkcode typeCheckHooks}. */
export interface TypeCheckResult {
  /** The hook files checked (paths in the configuration). */
  checked: string[];
  /** True when every checked hook type-checks. */
  ok: boolean;
  /** deno's report, with paths shown as they are in the configuration. */
  report: string;
}

/** Files copied for the check: what a hook may import. */
const MODULE_FILE = /\.(ts|tsx|mts|js|mjs|jsx|json)$/;

/** Time allowed for `deno check`, and for each `deno info`. */
const CHECK_TIMEOUT_MS = 120_000;

/** The most of `deno info --json` read: a graph of thousands of modules. */
const MAX_GRAPH_BYTES = 16 * 1024 * 1024;

/**
 * Checks `hooks/<point>.ts` of `configDir` with `deno`. `env` gives the
 * variables deno needs to find its cache (HOME, DENO_DIR, XDG_CACHE_HOME).
 */
export async function typeCheckHooks(
  configDir: string,
  deno: string,
  env: (name: string) => string | undefined,
): Promise<TypeCheckResult> {
  const hooksDir = join(configDir, "hooks");
  const present: string[] = [];
  for (const point of HOOK_POINTS) {
    const info = await stat(join(hooksDir, `${point}.ts`)).catch(() => undefined);
    if (info?.isFile()) present.push(point);
  }
  if (present.length === 0) return { checked: [], ok: true, report: "" };
  const checked = present.map((point) => join(hooksDir, `${point}.ts`));

  // Its real path: deno names modules by theirs, and they are compared with it.
  const scratch = await realpath(await mkdtemp(join(tmpdir(), "postern-check-")));
  try {
    const copy = join(scratch, "hooks");
    // Only what a hook can import: folders and module files, no symlinks
    // (which could lead anywhere, a FIFO included) and no package trees.
    await cp(hooksDir, copy, {
      recursive: true,
      filter: async (source) => {
        const info = await lstat(source);
        if (info.isDirectory()) return !/(^|\/)(node_modules|\.git)$/.test(source);
        return info.isFile() && MODULE_FILE.test(source);
      },
    });
    await writeFile(join(copy, "mod.ts"), SDK_TYPES_SOURCE);
    await writeFile(join(scratch, "mod.ts"), SDK_TYPES_SOURCE);
    const childEnv: Record<string, string> = { NO_COLOR: "1" };
    for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
      const value = env(name);
      if (value !== undefined) childEnv[name] = value;
    }
    const layout: CheckLayout = { scratch, configDir };
    const importMap = join(scratch, "import_map.json");
    await writeFile(importMap, JSON.stringify(fencingMap(scratch)));
    const refused: string[] = [];
    for (const point of present) {
      refused.push(...await graphRefusals(deno, point, layout, importMap, childEnv));
    }
    if (refused.length > 0) {
      return { checked, ok: false, report: [...new Set(refused)].join("\n") };
    }

    const result = await spawnProcess({
      argv: [
        deno,
        "check",
        "--no-config",
        "--no-lock",
        "--no-remote",
        "--no-npm",
        `--import-map=${importMap}`,
        "--quiet",
        ...present.map((point) => join(copy, `${point}.ts`)),
      ],
      env: childEnv,
      cwd: scratch,
      stdin: (async function* () {})(),
      timeoutMs: CHECK_TIMEOUT_MS,
    });
    const ok = result.exitCode === 0 && !result.timedOut;
    const output = `${result.stdout}${result.stderr}`;
    // Should deno ever read a file that neither the map nor its graph
    // kept it from: a report that names one is not shown.
    if (namesFileOutside(output, scratch)) {
      return {
        checked,
        ok,
        report: ok ? "" : "deno check failed, and its report names files outside the hooks " +
          "folder, so it is not shown",
      };
    }
    return {
      checked,
      ok,
      report: output.replaceAll(`file://${copy}`, hooksDir).replaceAll(copy, hooksDir).trim(),
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The folder of the scratch, never made, where the import map sends every file outside. */
const FENCED = "outside";

/**
 * The import map that keeps deno in the scratch copy: the copy and the SDK
 * beside it map to themselves, and any other `file:` URL, being a prefix
 * match of `file:///` (import maps, "imports" keys ending in "/"), to the
 * same path under the scratch's `outside/`, which does not exist. An
 * import of `/etc/passwd` becomes one of `<scratch>/outside/etc/passwd`:
 * deno finds no such module and reads nothing, and the graph still tells
 * which file was meant.
 */
export function fencingMap(scratch: string): { imports: Record<string, string> } {
  const copy = `${pathToFileURL(join(scratch, "hooks")).href}/`;
  const sdk = pathToFileURL(join(scratch, "mod.ts")).href;
  return {
    imports: {
      [copy]: copy,
      [sdk]: sdk,
      "file:///": `${pathToFileURL(join(scratch, FENCED)).href}/`,
    },
  };
}

/** Where the check runs: the scratch folder (its `hooks/` is the copy) and the configuration. */
export interface CheckLayout {
  /** The scratch folder, by its real path; the copy of the hooks folder is its `hooks/`. */
  scratch: string;
  /** The configuration directory the copy stands for. */
  configDir: string;
}

/** What is used of `deno info --json`: specifiers only, never the `error` texts. */
const ResolvedSchema = v.optional(v.looseObject({ specifier: v.optional(v.string()) }));
const GraphSchema = v.looseObject({
  modules: v.array(v.looseObject({
    specifier: v.string(),
    dependencies: v.optional(
      v.array(v.looseObject({ code: ResolvedSchema, type: ResolvedSchema })),
    ),
    typesDependency: v.optional(v.looseObject({ dependency: ResolvedSchema })),
  })),
});

/** The module graph of one hook, and what of it lies outside the copy. */
async function graphRefusals(
  deno: string,
  point: string,
  layout: CheckLayout,
  importMap: string,
  env: Record<string, string>,
): Promise<string[]> {
  const result = await spawnProcess({
    argv: [
      deno,
      "info",
      "--json",
      "--no-config",
      "--no-lock",
      "--no-remote",
      "--no-npm",
      `--import-map=${importMap}`,
      join(layout.scratch, "hooks", `${point}.ts`),
    ],
    env,
    cwd: layout.scratch,
    stdin: (async function* () {})(),
    timeoutMs: CHECK_TIMEOUT_MS,
    maxOutputBytes: MAX_GRAPH_BYTES,
  });
  // Its standard error is not shown either: it may quote a module.
  const failed = result.timedOut
    ? "ran out of time"
    : result.stdoutOverflow !== undefined
    ? "listed too much"
    : result.exitCode !== 0
    ? `exited with status ${result.exitCode}`
    : undefined;
  let graph: unknown;
  try {
    graph = failed === undefined ? JSON.parse(result.stdout) : undefined;
  } catch {
    // Not JSON: said below.
  }
  const refusals = graph === undefined ? undefined : importRefusals(graph, point, layout);
  return refusals ?? [
    `${point}.ts: its imports could not be listed (deno info ${failed ?? "answered no graph"}); ` +
    "nothing was checked",
  ];
}

/**
 * What a hook's module graph (`deno info --json`) imports that the check
 * will not read: every module outside the copy of the hooks folder other
 * than the SDK one folder up, `node:` built-ins and `data:` modules (whose
 * text is in the hook itself); remote and npm modules, which the sandbox
 * refuses, included. One line per import, naming the importing file and
 * the module, and never anything of the module's content. `undefined` when
 * `graph` is not a module graph.
 */
export function importRefusals(
  graph: unknown,
  point: string,
  layout: CheckLayout,
): string[] | undefined {
  const parsed = v.safeParse(GraphSchema, graph);
  if (!parsed.success) return undefined;
  const copy = join(layout.scratch, "hooks");
  const sdk = join(layout.scratch, "mod.ts");
  const kindOf = (specifier: string): "inside" | "outside" | "remote" => {
    if (specifier.startsWith("node:") || specifier.startsWith("data:")) return "inside";
    if (!specifier.startsWith("file:")) return "remote";
    let path: string;
    try {
      path = fileURLToPath(specifier);
    } catch {
      return "outside";
    }
    return path === sdk || path.startsWith(copy + sep) ? "inside" : "outside";
  };
  const fenced = join(layout.scratch, FENCED);
  /**
   * A file as the operator knows it: the path the hook named (which the
   * import map moved under `outside/`), and for one in the scratch the
   * same path in the configuration.
   */
  const shown = (specifier: string): string => {
    if (!specifier.startsWith("file:")) return specifier.slice(0, 200);
    let path: string;
    try {
      path = fileURLToPath(specifier);
    } catch {
      return specifier.slice(0, 200);
    }
    if (path.startsWith(fenced + sep)) path = sep + relative(fenced, path);
    return path.startsWith(layout.scratch + sep)
      ? join(layout.configDir, relative(layout.scratch, path))
      : path;
  };
  const importer = (specifier: string): string =>
    specifier.startsWith("file:") ? relative(copy, fileURLToPath(specifier)) : `${point}.ts`;

  const lines: string[] = [];
  for (const module of parsed.output.modules) {
    if (kindOf(module.specifier) !== "inside") continue;
    const edges: Array<{ to: string | undefined; typesOnly: boolean }> = [];
    for (const dependency of module.dependencies ?? []) {
      edges.push({ to: dependency.code?.specifier, typesOnly: false });
      edges.push({ to: dependency.type?.specifier, typesOnly: true });
    }
    edges.push({ to: module.typesDependency?.dependency?.specifier, typesOnly: true });
    for (const { to, typesOnly } of edges) {
      if (to === undefined) continue;
      const kind = kindOf(to);
      const from = importer(module.specifier);
      if (kind === "remote") {
        lines.push(`${from} imports ${shown(to)}, not a local file; the sandbox refuses it`);
      } else if (kind === "outside") {
        lines.push(
          typesOnly
            ? `${from} imports types from ${shown(to)}, outside the hooks folder; ` +
              "postern check reads nothing outside it"
            : `${from} imports ${shown(to)}, outside the hooks folder; the sandbox refuses it`,
        );
      }
    }
  }
  // Every module outside is reached through one inside (deno lists only
  // what the hook reaches); should one not be, it is still refused.
  const stray = parsed.output.modules.some((m) => kindOf(m.specifier) !== "inside");
  if (stray && lines.length === 0) {
    lines.push(`${point}.ts imports modules outside the hooks folder; the sandbox refuses them`);
  }
  return lines;
}

/** True when `report` names a local file outside `scratch` (as a `file:` URL). */
function namesFileOutside(report: string, scratch: string): boolean {
  for (const [url] of report.matchAll(/file:\/\/[^\s"'`)<>]+/g)) {
    let path: string;
    try {
      path = fileURLToPath(url.replace(/(:\d+)+$/, ""));
    } catch {
      return true;
    }
    if (!path.startsWith(scratch + sep)) return true;
  }
  return false;
}
