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
 * those of the aliases file. Called with the normalized `name@domain`.
 * Throwing makes the expansion, and so the delivery, fail.
 */
export type ExtraTargets = (address: string) => Promise<AliasTarget[]>;

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
 * How many times one expansion may ask `extra` (the alias-resolve hook).
 * Depth alone does not bound the work: a hook that answers every address
 * with the same 50 local names is asked about each again under each of its
 * siblings, 50 to the 10th power times. 1,000 leaves room for a list of a
 * thousand local members.
 */
export const MAX_EXTRA_LOOKUPS = 1000;

/**
 * Raised when one expansion asks for extra targets more than
 * {@linkcode MAX_EXTRA_LOOKUPS} times; the delivery is deferred, as for a
 * failed hook.
 */
export class AliasLookupLimitError extends Error {
  /** Creates the error for the address being expanded. */
  constructor(address: string) {
    super(
      `Cannot expand aliases of "${address}": the alias-resolve hook was asked more than ` +
        `${MAX_EXTRA_LOOKUPS} times`,
    );
    this.name = "AliasLookupLimitError";
  }
}

/** The name every local domain accepts (RFC 5321 section 4.5.1). */
const POSTMASTER = "postmaster";

/** Looks up local recipients and expands aliases. */
export class RecipientResolver {
  #domains: ReadonlyMap<string, LocalDomain>;
  #options: LookupOptions;

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
   * Expands `address` into its final destinations, recursively, without
   * duplicates. An alias that leads back to an address already being
   * expanded delivers to that address's own mailbox (so `root: root, x@y`
   * keeps a copy), which also ends every loop.
   *
   * `extra` adds targets for each local address looked up (chasquid's
   * alias-resolve hook: its output is appended to the file's results).
   *
   * @throws {AliasDepthError} when aliases nest too deep, or what `extra` throws.
   */
  async resolve(address: string, extra?: ExtraTargets): Promise<Destination[]> {
    const found = new Map<string, Destination>();
    await this.#expand(address, [], found, extra && limited(extra, address));
    return [...found.values()];
  }

  async #expand(
    address: string,
    path: string[],
    found: Map<string, Destination>,
    extra: ExtraTargets | undefined,
  ): Promise<void> {
    if (path.length > MAX_ALIAS_DEPTH) throw new AliasDepthError(path[0] ?? address);
    const { local, domain } = splitAddress(withPostmasterDomain(address, this.#domains));
    const info = this.#domains.get(domain);
    if (!info) {
      add(found, { kind: "remote", address: `${local}@${domain}` });
      return;
    }
    const key = lookupKey(local, this.#options);
    const id = `${key}@${domain}`;
    const mailbox: Destination = { kind: "mailbox", domain, user: key };
    if (path.includes(id)) {
      add(found, mailbox);
      return;
    }
    const fromFile = info.aliases.get(key) ??
      (info.users.has(key) || key === POSTMASTER ? undefined : info.aliases.get("*"));
    const targets = [...fromFile ?? [], ...extra ? await extra(id) : []];
    if (targets.length === 0) {
      add(found, mailbox);
      return;
    }
    for (const target of targets) {
      if (target.kind === "pipe") {
        add(found, { kind: "pipe", argv: target.argv, alias: id });
      } else {
        await this.#expand(target.address, [...path, id], found, extra);
      }
    }
  }
}

/** `extra`, throwing once it has been asked {@linkcode MAX_EXTRA_LOOKUPS} times. */
function limited(extra: ExtraTargets, address: string): ExtraTargets {
  let lookups = 0;
  return (id) => {
    if (++lookups > MAX_EXTRA_LOOKUPS) throw new AliasLookupLimitError(address);
    return extra(id);
  };
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
