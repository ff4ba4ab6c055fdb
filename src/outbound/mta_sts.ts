/**
 * MTA-STS (RFC 8461) for outbound delivery: which MX hosts a recipient
 * domain allows, and whether TLS with a valid certificate is required when
 * talking to them. Discovery (the `_mta-sts` TXT record), the HTTPS policy
 * fetch and the MX pattern match are mailauth's; this module decides how
 * often to ask, what to apply when asking fails, and keeps the policies
 * across restarts.
 *
 * @example Choosing MX hosts for a domain (`dns` is a `DnsResolver`)
 * ```ts ignore
 * const sts = new MtaStsPolicies({ resolver: dns.resolve, cacheFile: "data/mta-sts.json" });
 * await sts.load();
 * const requirement = await sts.requirementFor("example.org");
 * const hosts = (await dns.mx("example.org")).filter((mx) => requirement.allows(mx.exchange));
 * ```
 *
 * @module
 */

import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { getMtaStsPolicy, loadMailauth, type Mailauth, mailauthResolver } from "../auth/mod.ts";
import * as v from "valibot";
import type { ResolveFunction } from "../dns/mod.ts";

/**
 * How long an answer is used before mailauth is asked again. RFC 8461
 * section 3.3 suggests waiting at least five minutes after a failed fetch.
 * For a known policy the new question costs one TXT lookup (answered from
 * the resolver's cache within its TTL): mailauth fetches the policy again
 * only when the TXT id has changed or the policy has expired.
 */
const RECHECK_MS = 5 * 60_000;

/** Options of {@linkcode MtaStsPolicies}. */
export interface MtaStsOptions {
  /** Looks up DNS records, e.g. `DnsResolver.resolve`; rejects with `DnsError`s. */
  resolver: ResolveFunction;
  /**
   * Where policies are cached across restarts (RFC 8461 section 5.1 says
   * cache them); a JSON file path, or undefined for memory only.
   */
  cacheFile?: string | undefined;
  /** The clock, in milliseconds. Default: `Date.now`. */
  now?: () => number;
  /** Injected for tests; default wraps mailauth's getPolicy with the resolver. */
  fetchPolicy?: (
    domain: string,
    known: KnownPolicy | undefined,
  ) => Promise<{ policy: KnownPolicy; status: string }>;
}

/**
 * A policy as mailauth's `getPolicy` returns it and takes it back: `id` is
 * the TXT record's (false: no policy), `mx` the host patterns, `maxAge` the
 * policy's `max_age` in seconds, `expires` an ISO 8601 date, and `error`
 * why the last lookup failed, when it did.
 */
export interface KnownPolicy {
  id: string | false;
  mode: "enforce" | "testing" | "none";
  mx?: string[];
  maxAge?: number;
  expires?: string;
  error?: unknown;
}

/** What delivery must do for a domain. */
export interface TlsRequirement {
  /**
   * "enforce": only MX hosts that match the policy, with STARTTLS and a
   * valid certificate for the MX host name (PKIX). "testing"/"none":
   * opportunistic.
   */
  mode: "enforce" | "testing" | "none";
  /** The policy's mx patterns (for logs). */
  mx: string[];
  /**
   * True when the MX host name matches the policy's patterns (RFC 8461
   * section 4.1: "*.example.com" matches one left-most label). Always true
   * in mode "none", where there are no patterns to match.
   */
  allows(mxHost: string): boolean;
}

interface Entry {
  /** mailauth's last answer, handed back to it on the next lookup. */
  known: KnownPolicy | undefined;
  requirement: TlsRequirement;
  /** When to ask mailauth again (never later than the policy's expiry). */
  checkAfter: number;
}

const NONE: TlsRequirement = Object.freeze({ mode: "none", mx: [], allows: () => true });

const CachedPolicySchema = v.object({
  id: v.pipe(v.string(), v.minLength(1)),
  mode: v.picklist(["enforce", "testing"]),
  mx: v.array(v.string()),
  maxAge: v.exactOptional(v.number()),
  expires: v.pipe(v.string(), v.isoTimestamp()),
});
const CacheFileSchema = v.object({
  version: v.literal(1),
  policies: v.record(v.string(), CachedPolicySchema),
});

/** A policy that is applied and kept: real (has an id), enforce or testing, not expired. */
type LivePolicy = KnownPolicy & { id: string; mode: "enforce" | "testing"; expires: string };

/** MTA-STS policies of recipient domains, looked up on demand and cached. */
export class MtaStsPolicies {
  #file: string | undefined;
  #now: () => number;
  #fetch: NonNullable<MtaStsOptions["fetchPolicy"]>;
  #entries = new Map<string, Entry>();
  #inflight = new Map<string, Promise<TlsRequirement>>();
  #saving: Promise<void> = Promise.resolve();
  #saved = "";

  /** Creates an empty cache; call {@linkcode MtaStsPolicies.load} to read the cache file. */
  constructor(options: MtaStsOptions) {
    this.#file = options.cacheFile;
    this.#now = options.now ?? Date.now;
    // mailauth's types leave `id` optional (getPolicy always sets it, false
    // when there is none).
    const resolver = mailauthResolver(options.resolver);
    this.#fetch = options.fetchPolicy ??
      ((domain, known) =>
        getMtaStsPolicy(domain, known as KnownPolicy & { error?: Error }, { resolver }) as Promise<
          { policy: KnownPolicy; status: string }
        >);
  }

  /**
   * The requirement for mail to `domain`; looks up at most once per domain
   * at a time (concurrent callers share one lookup), refreshes when the
   * cached policy expires or the TXT id changes (mailauth handles the id
   * check given the known policy); a lookup error with a still-valid cached
   * policy keeps the cached one (RFC 8461 section 5.1). Never throws:
   * errors mean mode "none" unless a valid cached policy exists.
   */
  requirementFor(domain: string): Promise<TlsRequirement> {
    const key = domain.trim().toLowerCase().replace(/\.$/, "");
    if (key === "") return Promise.resolve(NONE);
    const entry = this.#entries.get(key);
    if (entry && this.#now() < entry.checkAfter) return Promise.resolve(entry.requirement);
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#refresh(key, entry)
        .catch(() => entry && isLive(entry.known, this.#now()) ? entry.requirement : NONE)
        .finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  /** Loads the cache file if any (ignores a corrupt one, returning its error text). */
  async load(): Promise<string | undefined> {
    if (this.#file === undefined) return undefined;
    let text: string;
    try {
      text = await readFile(this.#file, "utf8");
    } catch (err) {
      if ((err as { code?: unknown }).code === "ENOENT") return undefined;
      return `Cannot read MTA-STS cache file "${this.#file}": ${messageOf(err)}`;
    }
    let parsed;
    try {
      parsed = v.safeParse(CacheFileSchema, JSON.parse(text));
    } catch (err) {
      return `Ignoring MTA-STS cache file "${this.#file}": invalid JSON: ${messageOf(err)}`;
    }
    if (!parsed.success) {
      const issue = parsed.issues[0];
      const path = issue.path?.map((p) => String(p.key)).join(".") || "(top level)";
      return `Ignoring MTA-STS cache file "${this.#file}": ${path}: ${issue.message}`;
    }
    const now = this.#now();
    const live = Object.entries(parsed.output.policies).filter(([domain, p]) =>
      !this.#entries.has(domain) && isLive(p, now)
    );
    // mailauth is loaded on first use (issue 17): only when there is a policy to apply.
    if (live.length === 0) return undefined;
    const { validateMx } = await loadMailauth();
    for (const [domain, p] of live) {
      if (this.#entries.has(domain)) continue;
      // Applied at once, but the TXT id is checked on first use: it may
      // have changed while we were down.
      this.#entries.set(domain, {
        known: p,
        requirement: requirementOf(p, validateMx),
        checkAfter: 0,
      });
    }
    return undefined;
  }

  async #refresh(domain: string, previous: Entry | undefined): Promise<TlsRequirement> {
    let result: { policy: KnownPolicy; status: string };
    try {
      result = await this.#fetch(domain, previous?.known);
    } catch (err) {
      result = { policy: { id: false, mode: "none", error: err }, status: "errored" };
    }
    const now = this.#now();
    const failed = result.status === "errored" || result.policy.error !== undefined;
    // RFC 8461 section 3.3: when no live policy can be had, a valid cached
    // one MUST be applied; an expired one must not (mailauth's lax mode
    // would keep applying it), so that case falls through to "none".
    const cached = previous && isLive(previous.known, now) ? previous.known : undefined;
    const known = failed && cached ? cached : result.policy;
    const live = isLive(known, now);
    const entry: Entry = {
      known,
      requirement: live ? requirementOf(known, (await loadMailauth()).validateMx) : NONE,
      checkAfter: Math.min(now + RECHECK_MS, live ? Date.parse(known.expires) : Infinity),
    };
    this.#entries.set(domain, entry);
    await this.#save();
    return entry.requirement;
  }

  /** Writes the live policies if they changed; one write at a time, newest state wins. */
  #save(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return Promise.resolve();
    this.#saving = this.#saving.then(async () => {
      const now = this.#now();
      const policies: Record<string, v.InferOutput<typeof CachedPolicySchema>> = {};
      for (const [domain, { known }] of this.#entries) {
        if (!isLive(known, now)) continue;
        const { id, mode, mx = [], maxAge, expires } = known;
        policies[domain] = { id, mode, mx, ...(maxAge === undefined ? {} : { maxAge }), expires };
      }
      const text = `${JSON.stringify({ version: 1, policies }, null, 2)}\n`;
      if (text === this.#saved) return;
      try {
        // Written aside, then renamed: a crash leaves the old file or the new one.
        await mkdir(dirname(file), { recursive: true });
        const temp = `${file}.tmp-${crypto.randomUUID()}`;
        await writeFile(temp, text);
        await rename(temp, file);
        this.#saved = text;
      } catch {
        // Losing the file costs a fresh lookup per domain after a restart,
        // nothing more; delivery must not fail for it.
      }
    });
    return this.#saving;
  }
}

function isLive(policy: KnownPolicy | undefined, now: number): policy is LivePolicy {
  return !!policy && typeof policy.id === "string" && policy.id !== "" &&
    (policy.mode === "enforce" || policy.mode === "testing") &&
    policy.expires !== undefined && Date.parse(policy.expires) > now;
}

function requirementOf(policy: KnownPolicy, validateMx: Mailauth["validateMx"]): TlsRequirement {
  const checked = { mode: policy.mode, mx: [...(policy.mx ?? [])] };
  return {
    mode: policy.mode,
    mx: [...checked.mx],
    allows: (mxHost) => validateMx(mxHost, checked).valid,
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
