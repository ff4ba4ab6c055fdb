/**
 * The alias-resolve hook as a source of extra alias targets for the
 * recipient resolver.
 *
 * @module
 */

import { type AliasTarget, type ExtraTargets, parseTargets } from "../aliases/mod.ts";
import type { Counters, Logger } from "../log/mod.ts";
import { grantedProgram, grantedPrograms, type RunGrants } from "./pipe_grants.ts";
import type { AliasResolveVerdict } from "./points.ts";

/** The alias-resolve hook failed, so the delivery must wait and retry. */
export class AliasHookError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "AliasHookError";
  }
}

/** What {@linkcode aliasHookTargets} needs besides the hook. */
export interface AliasHookOptions {
  /** Calls the alias-resolve hook (`HookRunner.aliasResolve`). */
  resolve: (address: string) => Promise<AliasResolveVerdict | undefined>;
  /** The alias-resolve hook's `allow.run` in force, and where its workers look programs up. */
  runGrants: () => RunGrants;
  logger: Logger;
  counters: Counters;
}

/**
 * Extra targets from the alias-resolve hook: its output is parsed as the
 * right-hand side of an aliases line of the address's domain. A failed
 * call, output that does not parse, or a pipe target whose program a
 * module hook may not run throws {@linkcode AliasHookError}.
 */
export function aliasHookTargets(options: AliasHookOptions): ExtraTargets {
  return async (address) => {
    const verdict = await options.resolve(address);
    // No hook installed: nothing was asked (and nothing counts against the
    // hook's limit on calls in an expansion).
    if (verdict === undefined) return undefined;
    if (!verdict.ok) throw new AliasHookError(`alias-resolve hook failed: ${verdict.cause}`);
    const domain = address.slice(address.lastIndexOf("@") + 1);
    let targets: AliasTarget[];
    try {
      targets = verdict.rhs.flatMap((rhs) => parseTargets(rhs, domain));
    } catch (err) {
      throw new AliasHookError(
        `alias-resolve hook output cannot be parsed: ${err instanceof Error ? err.message : err}`,
      );
    }
    return verdict.sandboxed ? granted(targets, address, options) : targets;
  };
}

/**
 * The targets of a module hook's answer, each pipe running the checked
 * absolute path of its program; throws when a program is not one the
 * hook's own `allow.run` grants (STYLE 1.7: an answer that names a program
 * is a grant in disguise). Addresses, local or remote, need no grant.
 */
function granted(
  targets: AliasTarget[],
  address: string,
  options: AliasHookOptions,
): AliasTarget[] {
  if (!targets.some((t) => t.kind === "pipe")) return targets;
  const grants = options.runGrants();
  const programs = grantedPrograms(grants);
  return targets.map((target) => {
    if (target.kind !== "pipe") return target;
    const [program = "", ...args] = target.argv;
    const path = grantedProgram(program, programs, grants.path);
    if (path !== undefined) return { kind: "pipe", argv: [path, ...args] };
    options.logger.warn(
      "alias-resolve hook answered a pipe to a program it may not run; the delivery is deferred",
      { hook: "alias-resolve", address, program, allow_run: grants.run.join(",") || "none" },
    );
    options.counters.inc("hook_answers_refused", { hook: "alias-resolve", kind: "pipe" });
    throw new AliasHookError(
      `alias-resolve hook may not run "${program}": it is not in hooks.alias_resolve.allow.run`,
    );
  });
}
