/**
 * Reading `postern.yaml`: YAML parsed and validated against the schema,
 * every problem named by file, line and setting.
 *
 * @module
 */

import * as v from "valibot";
import { LineCounter, parseDocument } from "yaml";
import { ConfigError, readOptional } from "./load.ts";
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
  const data = doc.toJS() ?? {};
  const result = v.safeParse(ConfigFileSchema, data);
  if (result.success) return { settings: result.output, empty };
  const messages = result.issues.map((issue) => {
    const keys = (issue.path ?? []).map((item) => item.key as string | number);
    const field = keys.join(".") || "(top level)";
    const node = nearestNode(doc, keys);
    const where = node?.range ? `:${lineCounter.linePos(node.range[0]).line}` : "";
    const problem = issue.type === "strict_object"
      ? "is not a known setting (check the spelling)"
      : issue.message;
    return `${path}${where}: ${field} ${problem}`;
  });
  throw new ConfigError(path, messages.join("\n"));
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
