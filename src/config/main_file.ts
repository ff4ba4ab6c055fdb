/**
 * Reading `postern.yaml`: YAML parsed and validated against the schema,
 * every problem named by file, line and setting.
 *
 * @module
 */

import * as v from "valibot";
import { LineCounter, parseDocument } from "yaml";
import { ConfigError, readOptional } from "./config_error.ts";
import { type ConfigFile, ConfigFileSchema } from "./schema.ts";

/**
 * The parsed main file, and whether it held nothing but white space (as a
 * file truncated by a save in progress does); undefined when there is none.
 */
export function readMainFile(path: string): { settings: ConfigFile; empty: boolean } | undefined {
  const text = readOptional(path);
  if (text === undefined) return undefined;
  const empty = text.trim() === "";
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const line = lineCounter.linePos(yamlError.pos[0]).line;
    throw new ConfigError(
      path,
      `${path}:${line}: invalid YAML: ${yamlError.message.split("\n")[0]}`,
    );
  }
  let data: unknown;
  try {
    // toJS() expands aliases; the yaml package stops a document whose
    // aliases would expand past its limit (a "billion laughs" bomb) with a
    // ReferenceError, which is the file's fault like any YAML error.
    data = doc.toJS() ?? {};
  } catch (err) {
    throw new ConfigError(
      path,
      `${path}: invalid YAML: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const result = v.safeParse(ConfigFileSchema, data);
  if (result.success) return { settings: result.output, empty };
  // A set: a list given for a mapping has one issue per entry, one message.
  const messages = new Set<string>();
  for (const issue of result.issues) {
    const { keys, problem } = describeIssue(issue);
    const node = keys.length === 0 ? doc.contents : nearestNode(doc, keys);
    const where = node?.range ? `:${lineCounter.linePos(node.range[0]).line}` : "";
    messages.add(`${path}${where}: ${keys.join(".") || "the file"} ${problem}`);
  }
  throw new ConfigError(path, [...messages].join("\n"));
}

/**
 * The setting an issue is about and its problem, in words. valibot reports
 * a mapping's unknown key and a mapping of the wrong type alike (issue type
 * `strict_object`), and takes a list for a mapping whose indexes are then
 * unknown keys: these are told apart here, so that `smtp: 5` is not called
 * a misspelling.
 */
function describeIssue(
  issue: v.BaseIssue<unknown>,
): { keys: Array<string | number>; problem: string } {
  const items = issue.path ?? [];
  const keys = items.map((item) => item.key as string | number);
  // A list where a mapping belongs: the problem is the list, at its key.
  const list = items.findIndex((item) => item.type === "object" && Array.isArray(item.input));
  if (list !== -1) {
    return { keys: keys.slice(0, list), problem: "must be a mapping of settings, not a list" };
  }
  if (issue.expected === "Object") {
    return { keys, problem: `must be a mapping of settings, not ${kindOf(issue.input)}` };
  }
  if (issue.expected === "Array") {
    return { keys, problem: `must be a list, not ${kindOf(issue.input)}` };
  }
  if (issue.type === "strict_object" && issue.expected === "never") {
    return { keys, problem: "is not a known setting (check the spelling)" };
  }
  return { keys, problem: issue.message };
}

/** What a YAML value is, for a message: "the number 5", "a list". */
function kindOf(value: unknown): string {
  if (value === null || value === undefined) return "an empty value";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") {
    return `the text "${value.length > 40 ? `${value.slice(0, 20)}…` : value}"`;
  }
  if (typeof value === "number") return `the number ${value}`;
  if (typeof value === "boolean") return String(value);
  return "a mapping";
}

function nearestNode(
  doc: ReturnType<typeof parseDocument>,
  keys: Array<string | number>,
): { range?: [number, number, number] | null } | undefined {
  for (let n = keys.length; n > 0; n--) {
    const node = doc.getIn(keys.slice(0, n), true) as
      | { range?: [number, number, number] }
      | undefined;
    if (node && typeof node === "object") return node;
  }
  return undefined;
}
