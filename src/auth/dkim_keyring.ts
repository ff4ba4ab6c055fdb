/**
 * The DKIM keys in force and the state of their DNS records: looked up when
 * a policy is loaded or reloaded and then periodically. A new key signs
 * once its record is seen; until then the previous one goes on signing. A
 * signing key whose record disappears or changes is logged as a warning
 * and counted (`dkim_record_problems_total`).
 *
 * @module
 */

import type { ResolveFunction } from "../dns/mod.ts";
import type { Counters, Logger } from "../log/mod.ts";
import { chooseSigningKey, type DkimKey, lookUpRecord, type RecordState } from "./dkim_records.ts";

/** A domain's keys, as the configuration gives them. */
export interface DomainKeys {
  name: string;
  dkimKeys: readonly DkimKey[];
  /** The selector named in the configuration, which signs whatever DNS says. */
  dkimSelector: string | undefined;
}

/** One key in `status()`. */
export interface KeyStatus {
  domain: string;
  selector: string;
  algorithm: string;
  created: Date;
  record: RecordState;
  /** True for the key that signs the domain's mail. */
  signs: boolean;
  /** True when the configuration names this key. */
  pinned: boolean;
}

/** What the keyring needs. */
export interface DkimKeyringOptions {
  /** The resolver in force (it changes with the DNS settings). */
  resolve: () => ResolveFunction;
  logger: Logger;
  counters: Counters;
  /** The first wait before looking again at records never seen (default 30 s; tests). */
  retryMs?: number;
}

/** The first wait before a record never seen is looked up again. */
const RETRY_FIRST_MS = 30_000;
/** The longest wait between those tries; then the periodic check takes over. */
const RETRY_MAX_MS = 15 * 60_000;

/** See the module documentation. */
export class DkimKeyring {
  #options: DkimKeyringOptions;
  #domains = new Map<string, DomainKeys>();
  /** Record state by `domain selector publicKey`: a replaced key starts over. */
  #states = new Map<string, RecordState>();
  #signing = new Map<string, DkimKey>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #checking: Promise<void> = Promise.resolve();
  /** The next look at records that could not be looked up yet. */
  #retry: ReturnType<typeof setTimeout> | undefined;
  #retryMs: number;
  #closed = false;

  /** Creates an empty keyring; `update()` gives it keys. */
  constructor(options: DkimKeyringOptions) {
    this.#options = options;
    this.#retryMs = options.retryMs ?? RETRY_FIRST_MS;
  }

  /**
   * Takes the keys of a (re)loaded policy and looks up their records. The
   * choice made with what is already known applies at once, so a new key
   * that has not been looked up yet does not sign.
   */
  update(domains: Iterable<DomainKeys>): Promise<void> {
    this.#domains = new Map();
    for (const domain of domains) {
      if (domain.dkimKeys.length > 0) this.#domains.set(domain.name, domain);
    }
    this.#choose(false);
    // The domains of a reload are new to the retries too.
    this.#retryMs = this.#options.retryMs ?? RETRY_FIRST_MS;
    return this.check();
  }

  /** Looks up every key's record again, one check at a time. */
  check(): Promise<void> {
    // Never rejects: a reload or the timer starts checks without waiting.
    this.#checking = this.#checking.then(() => this.#lookUpAll()).catch((err) => {
      this.#options.logger.error("DKIM record check failed", {
        error: err instanceof Error ? err.message : String(err),
      });
    });
    return this.#checking;
  }

  /** Checks every `intervalMs` until `close()`. */
  startPeriodic(intervalMs: number): void {
    clearInterval(this.#timer);
    if (intervalMs <= 0) return;
    this.#timer = setInterval(() => void this.check(), intervalMs);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Stops the periodic checks. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retry);
    this.#timer = undefined;
  }

  /** The key that signs `domain`'s mail now, if any. */
  signingKey(domain: string): { selector: string; privateKey: string } | undefined {
    const key = this.#signing.get(domain);
    return key && { selector: key.selector, privateKey: key.privateKey };
  }

  /** Every key of every domain, by domain, newest first. */
  status(): KeyStatus[] {
    const rows: KeyStatus[] = [];
    for (const [name, domain] of [...this.#domains].sort(([a], [b]) => a.localeCompare(b))) {
      const signing = this.#signing.get(name);
      const keys = [...domain.dkimKeys].sort((a, b) => b.created.getTime() - a.created.getTime());
      for (const key of keys) {
        rows.push({
          domain: name,
          selector: key.selector,
          algorithm: key.algorithm,
          created: key.created,
          record: this.#state(name, key),
          signs: key === signing,
          pinned: domain.dkimSelector === key.selector,
        });
      }
    }
    return rows;
  }

  async #lookUpAll(): Promise<void> {
    const resolve = this.#options.resolve();
    const jobs: Array<Promise<void>> = [];
    let neverSeen = 0;
    for (const [name, domain] of this.#domains) {
      for (const key of domain.dkimKeys) {
        jobs.push((async () => {
          try {
            this.#states.set(stateKey(name, key), await lookUpRecord(resolve, name, key));
          } catch (err) {
            // A temporary failure changes nothing: what was known stays.
            const unknown = this.#state(name, key) === "unknown";
            if (unknown) neverSeen++;
            // Said out loud while nothing is known of the record: until it
            // is, the key cannot sign (a failure at start-up, say).
            this.#options.logger[unknown ? "warn" : "debug"]("DKIM record lookup failed", {
              domain: name,
              selector: key.selector,
              error: err instanceof Error ? err.message : String(err),
            });
          }
        })());
      }
    }
    await Promise.all(jobs);
    this.#choose(true);
    this.#retryIfUnknown(neverSeen > 0);
  }

  /**
   * A record never seen is looked up again soon, then less and less often:
   * left to the periodic check (an hour by default), a DNS failure at
   * start-up had submitted mail go out unsigned for that long.
   */
  #retryIfUnknown(unknown: boolean): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    if (!unknown) {
      this.#retryMs = this.#options.retryMs ?? RETRY_FIRST_MS;
      return;
    }
    // Past the longest wait the periodic check takes over.
    if (this.#closed || this.#retryMs > RETRY_MAX_MS) return;
    this.#retry = setTimeout(() => void this.check(), this.#retryMs);
    (this.#retry as { unref?: () => void }).unref?.();
    this.#retryMs *= 2;
  }

  #state(domain: string, key: DkimKey): RecordState {
    return this.#states.get(stateKey(domain, key)) ?? "unknown";
  }

  /** Picks each domain's signing key; `looked` after a lookup, to report what changed. */
  #choose(looked: boolean): void {
    const next = new Map<string, DkimKey>();
    for (const [name, domain] of this.#domains) {
      const previous = this.#signing.get(name);
      if (looked && previous) this.#warnIfLost(name, previous);
      const key = chooseSigningKey(
        domain.dkimKeys,
        (k) => this.#state(name, k),
        domain.dkimSelector,
      );
      if (key) next.set(name, key);
      if (key?.selector !== previous?.selector) {
        this.#options.logger.info("DKIM signing key", {
          domain: name,
          selector: key?.selector ?? "(none: no key's record is published yet)",
          previous: previous?.selector ?? "(none)",
        });
      }
    }
    this.#signing = next;
  }

  /** A key that was signing and whose record is now gone or different. */
  #warnIfLost(domain: string, key: DkimKey): void {
    const state = this.#state(domain, key);
    if (state !== "missing" && state !== "mismatched") return;
    const problem = state === "missing" ? "disappeared" : "changed";
    this.#options.counters.inc("dkim_record_problems_total", { domain, problem });
    this.#options.logger.warn(`DKIM record of the signing key ${problem}`, {
      domain,
      selector: key.selector,
      record: `${key.selector}._domainkey.${domain}`,
    });
  }
}

function stateKey(domain: string, key: DkimKey): string {
  return `${domain} ${key.selector} ${key.publicKey}`;
}

/**
 * `postern dkim status`: one line per key, newest first within a domain,
 * with the key that signs marked.
 *
 * @example
 * ```text
 * DOMAIN       SELECTOR  ALGORITHM  CREATED           RECORD     SIGNS
 * example.com  20261203  rsa        2026-12-03 13:02  missing    no (signs once published)
 * example.com  20260101  rsa        2026-01-01 09:00  published  yes
 * ```
 */
export function formatKeyStatus(rows: readonly KeyStatus[]): string {
  const table = [["DOMAIN", "SELECTOR", "ALGORITHM", "CREATED", "RECORD", "SIGNS"]];
  for (const row of rows) {
    const signs = row.signs
      ? row.pinned ? "yes (domains.*.dkim.selector)" : "yes"
      : row.record === "published"
      ? "no (a newer published key signs)"
      : row.record === "mismatched"
      ? "no (the record holds another key)"
      : "no (signs once published)";
    table.push([
      row.domain,
      row.selector,
      row.algorithm,
      row.created.toISOString().slice(0, 16).replace("T", " "),
      row.record,
      signs,
    ]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  return table.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") +
    "\n";
}
