/**
 * A second look before recipients disappear. A file written in place is
 * truncated first and filled a moment later; under load that moment can
 * outlast every check of the tree (the writer is simply not scheduled), and
 * a policy read in between would refuse real users with a permanent 550.
 * Additions are applied at once; a reload that would remove a domain, a
 * user or an alias is read again after a short grace period, and only
 * what is still gone then is removed. Removals still land well within a
 * second, and no transient state can cost a real user a bounce.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";

/** How long a removal waits for the rest of a write. */
export const REMOVAL_GRACE_MS = 300;

/** What `next` drops of `current`'s recipients, in a few words; undefined when nothing. */
export function lostRecipients(current: Config, next: Config): string | undefined {
  for (const [name, domain] of current.domains) {
    const after = next.domains.get(name);
    if (!after) return `domain ${name}`;
    if (domain.anyUser && !after.anyUser) return `any_user of ${name}`;
    for (const user of domain.users) {
      if (!after.users.has(user)) return `user ${user}@${name}`;
    }
    for (const alias of domain.aliases.keys()) {
      if (!after.aliases.has(alias)) return `alias ${alias}@${name}`;
    }
  }
  return undefined;
}

/**
 * Wraps `load` so that a result that removes recipients from `current()` is
 * confirmed by a second load after `graceMs`; the second result is used.
 */
export function confirmRemovals(
  load: () => Promise<Config>,
  current: () => Config,
  graceMs: number = REMOVAL_GRACE_MS,
): () => Promise<Config> {
  return async () => {
    const next = await load();
    if (lostRecipients(current(), next) === undefined) return next;
    await new Promise((resolve) => setTimeout(resolve, graceMs));
    return await load();
  };
}
