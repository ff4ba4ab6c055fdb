/**
 * Recipient lookup and alias expansion for local domains.
 *
 * @module
 */

import { lookupKey, type LookupOptions, splitAddress } from "./normalize.ts";
import type { AliasTable, AliasTarget } from "./parse.ts";

/** What the resolver needs to know of a local domain. */
export interface LocalDomain {
  name: string;
  anyUser: boolean;
  users: ReadonlySet<string>;
  aliases: AliasTable;
  /** Password hashes of the users who may log in, by lower-case name. */
  passwords?: ReadonlyMap<string, string>;
}

/** A final place a message goes to after alias expansion. */
export type Destination =
  | { kind: "mailbox"; domain: string; user: string }
  | { kind: "pipe"; argv: string[]; alias: string }
  | { kind: "remote"; address: string };

/**
 * Extra alias targets for an address (the alias-resolve hook), added to
 * those of the aliases file. Called with the normalized `name@domain`;
 * resolves to undefined when no hook was asked (none is installed), which
 * does not count against {@linkcode MAX_EXTRA_LOOKUPS}. Throwing makes the
 * expansion, and so the delivery, fail.
 */
export type ExtraTargets = (address: string) => Promise<AliasTarget[] | undefined>;

/** Raised when aliases nest deeper than {@linkcode MAX_ALIAS_DEPTH}. */
export class AliasDepthError extends RangeError {
  /** Creates the error for the address whose expansion went too deep. */
  constructor(address: string) {
    super(`Cannot expand aliases of "${address}": nested more than ${MAX_ALIAS_DEPTH} levels`);
    this.name = "AliasDepthError";
  }
}

/** How deep aliases may nest before expansion fails. */
export const MAX_ALIAS_DEPTH = 10;

/**
 * How many times one expansion may call `extra` (the alias-resolve hook),
 * which is asked about each address once per expansion. A hook call is a
 * round trip to a worker or a process; a hook that answers each address
 * with new names makes as many calls as it names addresses.
 */
export const MAX_EXTRA_LOOKUPS = 1000;

/**
 * How many addresses one expansion may look up, hook or not: a list of up
 * to 99,999 members. Nested aliases that reach the same alias again (a
 * diamond) expand it once, so that this bounds only the paths that loops
 * multiply: names that list each other, 10 levels deep, are up to n^10
 * paths (each loop ends at an address already being expanded).
 */
export const MAX_ALIAS_LOOKUPS = 100_000;

/**
 * Raised when one expansion calls the alias-resolve hook more than
 * {@linkcode MAX_EXTRA_LOOKUPS} times. The same aliases and hook would do
 * so again: the delivery fails for good.
 */
export class AliasLookupLimitError extends RangeError {
  /** Creates the error for the address being expanded. */
  constructor(address: string) {
    super(
      `Cannot expand aliases of "${address}": the alias-resolve hook was asked more than ` +
        `${MAX_EXTRA_LOOKUPS} times`,
    );
    this.name = "AliasLookupLimitError";
  }
}

/**
 * Raised when one expansion looks up more than {@linkcode MAX_ALIAS_LOOKUPS}
 * addresses; as for {@linkcode AliasLookupLimitError}, the delivery fails
 * for good.
 */
export class AliasExpansionLimitError extends RangeError {
  /** Creates the error for the address being expanded. */
  constructor(address: string) {
    super(
      `Cannot expand aliases of "${address}": more than ${MAX_ALIAS_LOOKUPS} addresses looked up`,
    );
    this.name = "AliasExpansionLimitError";
  }
}

/** How many addresses {@linkcode RecipientResolver.remoteDomainsOf} remembers at most. */
const REMOTE_DOMAINS_REMEMBERED = 10_000;

/** The name every local domain accepts (RFC 5321 section 4.5.1). */
const POSTMASTER = "postmaster";

/** Looks up local recipients and expands aliases. */
export class RecipientResolver {
  #domains: ReadonlyMap<string, LocalDomain>;
  #options: LookupOptions;
  #remoteDomains = new Map<string, readonly string[]>();

  /** Creates a resolver over the local domains. */
  constructor(domains: ReadonlyMap<string, LocalDomain>, options: LookupOptions) {
    this.#options = options;
    // Names in the users and aliases files are looked up by the same key as
    // addresses, so "first.last" in a file matches first.last@ and firstlast@.
    const key = (name: string) => name === "*" ? name : lookupKey(name, options);
    this.#domains = new Map(
      [...domains].map(([name, info]) => [name, {
        ...info,
        users: new Set([...info.users].map(key)),
        aliases: new Map([...info.aliases].map(([alias, targets]) => [key(alias), targets])),
      }]),
    );
  }

  /**
   * The lookup form of a local address (`name@domain`: lower case, suffix
   * and dropped characters removed), as the alias hooks receive it.
   */
  normalize(address: string): string {
    const { local, domain } = splitAddress(withPostmasterDomain(address, this.#domains));
    return `${lookupKey(local, this.#options)}@${domain}`;
  }

  /**
   * The password hash of a login name (`user@domain`), or undefined. The
   * name must be the user's exactly (any case): no suffix or dropped
   * characters, which are for mail, not for logins.
   */
  passwordOf(login: string): string | undefined {
    const at = login.lastIndexOf("@");
    if (at <= 0) return undefined;
    let domain: string;
    try {
      domain = splitAddress(`x@${login.slice(at + 1)}`).domain;
    } catch {
      return undefined;
    }
    return this.#domains.get(domain)?.passwords?.get(login.slice(0, at).toLowerCase());
  }

  /** True when `domain` (any case, A- or U-labels) is one of ours. */
  isLocalDomain(domain: string): boolean {
    return this.#domains.has(splitAddress(`x@${domain}`).domain);
  }

  /**
   * True when `address` is a local recipient that accepts mail: a user, an
   * alias, any name under a catch-all or an any-user domain, or postmaster.
   */
  exists(address: string): boolean {
    const { local, domain } = splitAddress(withPostmasterDomain(address, this.#domains));
    const info = this.#domains.get(domain);
    if (!info) return false;
    const key = lookupKey(local, this.#options);
    return info.anyUser || key === POSTMASTER || info.users.has(key) ||
      info.aliases.has(key) || info.aliases.has("*");
  }

  /**
   * The domains (normalized) of the remote targets that `address` expands
   * to through the aliases files, for the queue's limit per destination: a
   * quick look, without the alias-resolve hook (whose calls cost a round
   * trip and may have effects), and without failing: a name is looked at
   * once, at most {@linkcode MAX_ALIAS_DEPTH} levels down, and no more than
   * {@linkcode MAX_ALIAS_LOOKUPS} of them. Remembered per address until the
   * resolver is replaced (a new policy).
   */
  remoteDomainsOf(address: string): readonly string[] {
    let domains = this.#remoteDomains.get(address);
    if (domains === undefined) {
      // A bound on what is remembered: the addresses of queued mail.
      if (this.#remoteDomains.size >= REMOTE_DOMAINS_REMEMBERED) this.#remoteDomains.clear();
      domains = this.#lookRemote(address);
      this.#remoteDomains.set(address, domains);
    }
    return domains;
  }

  #lookRemote(address: string): string[] {
    const domains = new Set<string>();
    const seen = new Set<string>();
    let level: string[] = [address];
    let lookups = 0;
    for (let depth = 0; depth <= MAX_ALIAS_DEPTH && level.length > 0; depth++) {
      const next: string[] = [];
      for (const each of level) {
        if (++lookups > MAX_ALIAS_LOOKUPS) return [...domains];
        const { local, domain } = splitAddress(withPostmasterDomain(each, this.#domains));
        const info = this.#domains.get(domain);
        if (!info) {
          if (domain !== "") domains.add(domain);
          continue;
        }
        const key = lookupKey(local, this.#options);
        if (seen.has(`${key}@${domain}`)) continue;
        seen.add(`${key}@${domain}`);
        const targets = info.aliases.get(key) ??
          (info.users.has(key) || key === POSTMASTER ? undefined : info.aliases.get("*"));
        for (const target of targets ?? []) {
          if (target.kind === "address") next.push(target.address);
        }
      }
      level = next;
    }
    return [...domains];
  }

  /**
   * Expands `address` into its final destinations, recursively, without
   * duplicates. An alias that leads back to an address already being
   * expanded delivers to that address's own mailbox (so `root: root, x@y`
   * keeps a copy), which also ends every loop.
   *
   * `extra` adds targets for each local address looked up (chasquid's
   * alias-resolve hook: its output is appended to the file's results); it
   * is asked about each address once per expansion.
   *
   * @throws {AliasDepthError} when aliases nest too deep,
   * {@linkcode AliasLookupLimitError} or {@linkcode AliasExpansionLimitError}
   * past a limit, or what `extra` throws.
   */
  async resolve(address: string, extra?: ExtraTargets): Promise<Destination[]> {
    const expansion: Expansion = {
      root: address,
      found: new Map(),
      expanded: new Map(),
      answers: new Map(),
      lookups: 0,
      hookCalls: 0,
      extra,
    };
    await this.#expand(address, [], expansion);
    return [...expansion.found.values()];
  }

  /**
   * Expands one address reached by `path`; returns how many levels below
   * it the expansion went, and whether it met a loop on the way (an
   * address already on its path).
   */
  async #expand(address: string, path: string[], x: Expansion): Promise<Subtree> {
    if (path.length > MAX_ALIAS_DEPTH) throw new AliasDepthError(path[0] ?? address);
    if (++x.lookups > MAX_ALIAS_LOOKUPS) throw new AliasExpansionLimitError(x.root);
    const { local, domain } = splitAddress(withPostmasterDomain(address, this.#domains));
    const info = this.#domains.get(domain);
    if (!info) {
      add(x.found, { kind: "remote", address: `${local}@${domain}` });
      return { height: 0, loopFree: true };
    }
    const key = lookupKey(local, this.#options);
    const id = `${key}@${domain}`;
    const mailbox: Destination = { kind: "mailbox", domain, user: key };
    if (path.includes(id)) {
      add(x.found, mailbox);
      return { height: 0, loopFree: false };
    }
    // Expanded before under another path, without meeting a loop: nothing
    // below it can be on this path either (that would be a loop through
    // it), so the same destinations, already found, would come out. Only
    // the depth differs.
    const before = x.expanded.get(id);
    if (before !== undefined) {
      if (path.length + before > MAX_ALIAS_DEPTH) throw new AliasDepthError(path[0] ?? address);
      return { height: before, loopFree: true };
    }
    const fromFile = info.aliases.get(key) ??
      (info.users.has(key) || key === POSTMASTER ? undefined : info.aliases.get("*"));
    const targets = [...fromFile ?? [], ...await this.#extraTargets(id, x)];
    if (targets.length === 0) {
      add(x.found, mailbox);
      return { height: 0, loopFree: true };
    }
    let height = 0;
    let loopFree = true;
    for (const target of targets) {
      if (target.kind === "pipe") {
        add(x.found, { kind: "pipe", argv: target.argv, alias: id });
        continue;
      }
      const below = await this.#expand(target.address, [...path, id], x);
      height = Math.max(height, below.height + 1);
      loopFree &&= below.loopFree;
    }
    if (loopFree) x.expanded.set(id, height);
    return { height, loopFree };
  }

  /** The hook's targets for `id`, asked once per expansion. */
  async #extraTargets(id: string, x: Expansion): Promise<AliasTarget[]> {
    if (x.extra === undefined) return [];
    const known = x.answers.get(id);
    if (known !== undefined) return known;
    const answer = await x.extra(id);
    // Undefined: no hook was asked, so none is counted.
    if (answer !== undefined && ++x.hookCalls > MAX_EXTRA_LOOKUPS) {
      throw new AliasLookupLimitError(x.root);
    }
    const targets = answer ?? [];
    x.answers.set(id, targets);
    return targets;
  }
}

/** The state of one {@linkcode RecipientResolver.resolve}. */
interface Expansion {
  /** The address being expanded, for errors. */
  root: string;
  found: Map<string, Destination>;
  /** Addresses expanded without meeting a loop, and how deep below them it went. */
  expanded: Map<string, number>;
  /** The hook's answers so far. */
  answers: Map<string, AliasTarget[]>;
  lookups: number;
  hookCalls: number;
  extra: ExtraTargets | undefined;
}

/** What {@linkcode RecipientResolver} learns of an address's expansion. */
interface Subtree {
  /** Levels below the address (0: it is a destination itself). */
  height: number;
  /** No address below it was on its path. */
  loopFree: boolean;
}

function add(found: Map<string, Destination>, destination: Destination): void {
  const key = destination.kind === "mailbox"
    ? `m:${destination.user}@${destination.domain}`
    : destination.kind === "pipe"
    ? `p:${destination.argv.join("\0")}`
    : `r:${destination.address.toLowerCase()}`;
  if (!found.has(key)) found.set(key, destination);
}

/**
 * RFC 5321 section 4.1.1.3: "RCPT TO:<Postmaster>" without a domain must be
 * accepted; it goes to the postmaster of the first local domain.
 */
function withPostmasterDomain(address: string, domains: ReadonlyMap<string, LocalDomain>): string {
  if (address.includes("@") || address.toLowerCase() !== POSTMASTER) return address;
  const first = domains.keys().next();
  return first.done ? address : `${address}@${first.value}`;
}
