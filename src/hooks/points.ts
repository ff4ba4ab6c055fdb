/**
 * What each hook point's outcome means, for both forms of hook, as in
 * chasquid's hook reference:
 *
 * - post-data: success adds headers; a permanent rejection (exit status 20,
 *   or `action: "reject"`) is a 5xx, anything else that is not success a
 *   4xx, with the hook's text (last line of output) in the reply.
 * - alias-resolve: output is the right-hand side of an aliases line; any
 *   failure makes delivery fail (temporarily: the queue retries).
 * - alias-exists: success means the alias exists; any failure, timeout
 *   included, means it does not.
 *
 * @module
 */

import * as v from "valibot";
import {
  AliasExistsResultSchema,
  AliasResolveResultSchema,
  PostDataResultSchema,
} from "../../hooks/mod.ts";
import type { SpawnResult } from "../runtime/mod.ts";
import {
  checkHeaderEntries,
  checkHeaderLines,
  lastLine,
  recordToLines,
  replyText,
} from "./headers.ts";
import type { CallOutcome } from "./worker.ts";

/** chasquid's exit status for a permanent post-data rejection. */
export const EXIT_PERMANENT = 20;

/** How a post-data hook call ended. */
export type PostDataVerdict =
  | { kind: "accept"; headers: string; kept: number; dropped: string[] }
  | { kind: "refuse"; permanent: boolean; text: string; cause: string };

/**
 * The outcome of a post-data call, as counted and logged: accept, reject,
 * defer or failure; `bad_output` is an accept that dropped invalid header
 * lines, which chasquid counts apart (`post-data:badoutput`).
 */
export function postDataOutcome(verdict: PostDataVerdict): string {
  if (verdict.kind === "accept") return verdict.dropped.length > 0 ? "bad_output" : "accept";
  return verdict.cause === "rejected"
    ? "reject"
    : verdict.cause === "deferred"
    ? "defer"
    : "failure";
}

/** Reply text when a hook failed without saying why. */
const FAILED_TEXT = "Message could not be checked, try again later";

/** Interprets a module post-data hook's outcome. */
export function postDataFromModule(outcome: CallOutcome): PostDataVerdict {
  if (!outcome.ok) return failure(outcome.failure, outcome.error);
  const parsed = v.safeParse(PostDataResultSchema, outcome.value);
  if (!parsed.success) {
    return failure("bad_result", `result ${parsed.issues[0].message}`);
  }
  const result = parsed.output;
  if (result === undefined || result === null) {
    return { kind: "accept", headers: "", kept: 0, dropped: [] };
  }
  switch (result.action) {
    case "accept": {
      const lines = result.headers === undefined
        ? []
        : Array.isArray(result.headers)
        ? result.headers
        : recordToLines(result.headers);
      // Each entry adds one field at most (RFC 5322 section 2.2.3: a line break only folds).
      const checked = checkHeaderEntries(lines);
      return {
        kind: "accept",
        headers: checked.text,
        kept: checked.kept,
        dropped: checked.dropped,
      };
    }
    case "reject":
      return {
        kind: "refuse",
        permanent: true,
        text: replyText(result.message, "Message rejected"),
        cause: "rejected",
      };
    case "defer":
      return {
        kind: "refuse",
        permanent: false,
        text: replyText(result.message, FAILED_TEXT),
        cause: "deferred",
      };
  }
}

/** Interprets an executable post-data hook's exit. */
export function postDataFromExec(result: SpawnResult, timeoutMs: number): PostDataVerdict {
  if (result.timedOut) return failure("timeout", `no exit within ${timeoutMs} ms`);
  if (result.stdoutOverflow !== undefined) return failure("output", lastLine(result.stderr));
  if (result.exitCode === 0) {
    const checked = checkHeaderLines(result.stdout.split("\n"));
    return { kind: "accept", headers: checked.text, kept: checked.kept, dropped: checked.dropped };
  }
  const permanent = result.exitCode === EXIT_PERMANENT;
  // Exit 20 is the hook's rejection and any other status its deferral
  // (chasquid's protocol); a kill or a program that cannot run (126, 127)
  // is a failure of the hook itself.
  const failed = result.exitCode === null || result.exitCode === 126 || result.exitCode === 127;
  return {
    kind: "refuse",
    permanent,
    text: replyText(lastLine(result.stdout), permanent ? "Message rejected" : FAILED_TEXT),
    cause: permanent
      ? "rejected"
      : !failed
      ? "deferred"
      : result.exitCode === null
      ? "failure: killed"
      : `failure: cannot run (exit status ${result.exitCode}): ${lastLine(result.stderr)}`,
  };
}

function failure(kind: string, detail: string): PostDataVerdict {
  return {
    kind: "refuse",
    permanent: false,
    text: FAILED_TEXT,
    cause: `${kind}: ${detail.split("\n")[0]}`,
  };
}

/**
 * How an alias-resolve call ended: targets text, or why it failed.
 * `sandboxed` says the answer came from a module hook, whose pipe targets
 * must be programs its own grants let it run (see `pipe_grants.ts`); an
 * executable hook already runs outside any sandbox, so its answer is
 * trusted as chasquid trusts it.
 */
export type AliasResolveVerdict =
  | { ok: true; rhs: string[]; sandboxed: boolean }
  | { ok: false; cause: string };

/** Interprets a module alias-resolve hook's outcome. */
export function aliasResolveFromModule(outcome: CallOutcome): AliasResolveVerdict {
  if (!outcome.ok) return { ok: false, cause: `${outcome.failure}: ${firstLine(outcome.error)}` };
  const parsed = v.safeParse(AliasResolveResultSchema, outcome.value);
  if (!parsed.success) return { ok: false, cause: `bad_result: ${parsed.issues[0].message}` };
  const value = parsed.output;
  if (value === undefined || value === null) return { ok: true, rhs: [], sandboxed: true };
  return {
    ok: true,
    rhs: (Array.isArray(value) ? value : [value]).filter((s) => s.trim() !== ""),
    sandboxed: true,
  };
}

/** Interprets an executable alias-resolve hook's exit. */
export function aliasResolveFromExec(result: SpawnResult, timeoutMs: number): AliasResolveVerdict {
  if (result.timedOut) return { ok: false, cause: `timeout: no exit within ${timeoutMs} ms` };
  if (result.exitCode !== 0) {
    return { ok: false, cause: `exit status ${result.exitCode}: ${lastLine(result.stderr)}` };
  }
  const rhs = result.stdout.trim();
  return { ok: true, rhs: rhs === "" ? [] : [rhs], sandboxed: false };
}

/** How an alias-exists call ended. */
export interface AliasExistsVerdict {
  exists: boolean;
  /** Why the answer is "no" by failure rather than by the hook's choice. */
  cause?: string;
}

/** Interprets a module alias-exists hook's outcome. */
export function aliasExistsFromModule(outcome: CallOutcome): AliasExistsVerdict {
  if (!outcome.ok) {
    return { exists: false, cause: `${outcome.failure}: ${firstLine(outcome.error)}` };
  }
  const parsed = v.safeParse(AliasExistsResultSchema, outcome.value);
  if (!parsed.success) return { exists: false, cause: `bad_result: ${parsed.issues[0].message}` };
  return { exists: parsed.output };
}

/** Interprets an executable alias-exists hook's exit. */
export function aliasExistsFromExec(result: SpawnResult, timeoutMs: number): AliasExistsVerdict {
  if (result.timedOut) return { exists: false, cause: `timeout: no exit within ${timeoutMs} ms` };
  if (result.stdoutOverflow !== undefined) {
    return { exists: false, cause: `output: ${lastLine(result.stderr)}` };
  }
  return { exists: result.exitCode === 0 };
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? "";
}
