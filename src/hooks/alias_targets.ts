/**
 * The alias-resolve hook as a source of extra alias targets for the
 * recipient resolver.
 *
 * @module
 */

import { type ExtraTargets, parseTargets } from "../aliases/mod.ts";
import type { HookRunner } from "./runner.ts";

/** The alias-resolve hook failed, so the delivery must wait and retry. */
export class AliasHookError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "AliasHookError";
  }
}

/**
 * Extra targets from the alias-resolve hook: its output is parsed as the
 * right-hand side of an aliases line of the address's domain. A failed
 * call, or output that does not parse, throws {@linkcode AliasHookError}.
 */
export function aliasHookTargets(runner: HookRunner): ExtraTargets {
  return async (address) => {
    const verdict = await runner.aliasResolve(address);
    if (verdict === undefined) return [];
    if (!verdict.ok) throw new AliasHookError(`alias-resolve hook failed: ${verdict.cause}`);
    const domain = address.slice(address.lastIndexOf("@") + 1);
    try {
      return verdict.rhs.flatMap((rhs) => parseTargets(rhs, domain));
    } catch (err) {
      throw new AliasHookError(
        `alias-resolve hook output cannot be parsed: ${err instanceof Error ? err.message : err}`,
      );
    }
  };
}
