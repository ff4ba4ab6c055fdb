/**
 * A second look before recipients disappear. A file written in place is
 * truncated first and filled a moment later; under load that moment can
 * outlast every check of the tree (the writer is simply not scheduled), and
 * a policy read in between would refuse real users with a permanent 550.
 *
 * So a reload applies additions at once, but keeps the recipients it would
 * remove (domains, users, aliases, catch-alls) until a second reload, after
 * a grace period, still finds them gone. Removals still land well within a
 * second, and no transient state can cost a real user a bounce.
 *
 * The main file is another matter: empty, it would put every setting back
 * to its default (the message size limit, the timeouts, the domains it
 * lists), not only recipients. A reload that finds it empty or gone where
 * the policy in force was read from one with settings keeps that policy
 * (see {@linkcode refuseUnfinishedSaves}); the next save with content
 * applies as usual.
 *
 * @module
 */

import type { Config, DomainConfig } from "../config/mod.ts";

/** Every recipient of `current` that `next` drops, in a few words each (sorted). */
export function lostRecipients(current: Config, next: Config): string[] {
  const lost: string[] = [];
  for (const [name, domain] of current.domains) {
    const after = next.domains.get(name);
    if (!after) {
      lost.push(`domain ${name}`);
      continue;
    }
    if (domain.anyUser && !after.anyUser) lost.push(`any_user of ${name}`);
    for (const user of domain.users) {
      if (!after.users.has(user)) lost.push(`user ${user}@${name}`);
    }
    for (const alias of domain.aliases.keys()) {
      if (!after.aliases.has(alias)) lost.push(`alias ${alias}@${name}`);
    }
  }
  return lost.sort();
}

/** `next`, with the recipients of `current` it drops put back. */
export function keepRecipients(current: Config, next: Config): Config {
  const domains = new Map<string, DomainConfig>(next.domains);
  for (const [name, domain] of current.domains) {
    const after = next.domains.get(name);
    if (!after) {
      domains.set(name, domain);
      continue;
    }
    const aliases = new Map(domain.aliases);
    for (const [alias, targets] of after.aliases) aliases.set(alias, targets);
    const passwords = new Map(domain.passwords);
    for (const [user, hash] of after.passwords) passwords.set(user, hash);
    domains.set(name, {
      ...after,
      anyUser: domain.anyUser || after.anyUser,
      users: new Set([...domain.users, ...after.users]),
      aliases,
      passwords,
    });
  }
  return { ...next, domains };
}

/** What {@linkcode confirmRemovals} needs. */
export interface ConfirmRemovalsOptions {
  /** The policy in force. */
  current: () => Config;
  /** Asks for a reload (after the grace period). */
  reloadLater: () => void;
  /**
   * The grace period (ms) under a policy. Default: its
   * `reload.removal_delay`; the policy in force decides, so a reload that
   * changes it applies it from then on.
   */
  graceMs?: (policy: Config) => number;
  now?: () => number;
}

/**
 * Wraps `load`: a result that drops recipients of the policy in force is
 * applied with them kept, and a reload is asked for after the grace period;
 * once the same recipients have been gone for that long, they go.
 */
export function confirmRemovals(
  load: () => Promise<Config>,
  options: ConfirmRemovalsOptions,
): () => Promise<Config> {
  const graceOf = options.graceMs ?? ((policy: Config) => policy.reload.removalDelayMs);
  const graceNow = () => graceOf(options.current());
  const now = options.now ?? Date.now;
  let pending: { lost: string; since: number } | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires (on the `now` clock). */
  let due = 0;
  // One timer at a time: while edits keep coming the dropped set changes
  // and its clock restarts, so the removals wait for the edits to settle
  // rather than each edit adding a reload of its own. Only a shorter wait
  // (a reload that shortens the delay) moves it earlier.
  const arm = (graceMs: number) => {
    if (pending === undefined) return;
    const at = pending.since + graceMs;
    if (timer !== undefined) {
      if (due <= at) return;
      clearTimeout(timer);
    }
    due = at;
    timer = setTimeout(() => {
      timer = undefined;
      if (pending === undefined) return;
      if (now() - pending.since >= graceNow()) options.reloadLater();
      else arm(graceNow());
    }, Math.max(0, at - now()));
    (timer as { unref?: () => void }).unref?.();
  };
  return async () => {
    const next = await load();
    const lost = lostRecipients(options.current(), next).join("\n");
    if (lost === "") {
      pending = undefined;
      return next;
    }
    if (pending?.lost === lost && now() - pending.since >= graceNow()) {
      pending = undefined;
      return next;
    }
    if (pending?.lost !== lost) pending = { lost, since: now() };
    // The result is about to be in force: a delay it shortens counts now
    // (the timer looks again under the policy then in force).
    arm(Math.min(graceNow(), graceOf(next)));
    return keepRecipients(options.current(), next);
  };
}

/**
 * Why `next` must not replace `current`, although it validates, or
 * undefined when it may: the main file that `current` was read from has
 * gone, or is empty, where it had settings. Either is far more often a save
 * in progress (an editor truncates the file and writes it a moment later)
 * or a mistake than a wish to run on the defaults; a restart does that.
 */
export function unfinishedSave(current: Config, next: Config): string | undefined {
  const main = current.mainFile;
  if (main === undefined || current.mainFileEmpty) return undefined;
  if (next.mainFile === undefined) {
    return `${main}: the file is gone; the last good policy stays in force (restart to run ` +
      `without it)`;
  }
  if (next.mainFileEmpty) {
    return `${main}: the file is empty, most likely a save in progress; the last good policy ` +
      `stays in force until it has settings again (restart to run on the defaults)`;
  }
  return undefined;
}

/**
 * Wraps `load` (a reload; start-up takes the file as it is): a result read
 * from an unfinished save of the main file (see {@linkcode unfinishedSave})
 * is refused with the reason, so that the policy store keeps the last good
 * policy and logs why.
 */
export function refuseUnfinishedSaves(
  load: () => Promise<Config>,
  current: () => Config,
): () => Promise<Config> {
  return async () => {
    const next = await load();
    const unfinished = unfinishedSave(current(), next);
    if (unfinished !== undefined) throw new Error(unfinished);
    return next;
  };
}
