/**
 * What the queue keeps of an alias's targets between attempts (see
 * `DeliveryResult.done`): the targets delivered, and those that failed for
 * good with their error, so that a retry neither repeats nor forgets them.
 *
 * @module
 */

import type { Destination } from "../aliases/mod.ts";

/** A target that failed for good, as recorded for the rest of its alias's delivery. */
export interface FailedTarget {
  key: string;
  error: string;
  dsnStatus?: string;
  remoteMta?: string;
}

/**
 * How a failed target is written among a recipient's `done` records: a
 * prefix no delivered target's key has, then its details as JSON (the
 * bounce names the error once the rest of the alias is final).
 */
const FAILED_PREFIX = "failed ";

/** The `done` record of a target that failed for good. */
export function failedRecord(target: FailedTarget): string {
  return FAILED_PREFIX + JSON.stringify(target);
}

/** What earlier attempts recorded for a recipient's targets. */
export function earlierOutcomes(done: readonly string[] | undefined): {
  delivered: Set<string>;
  failed: Map<string, FailedTarget>;
  /** True for a target that is final: not to be attempted again. */
  settled(key: string): boolean;
} {
  const delivered = new Set<string>();
  const failed = new Map<string, FailedTarget>();
  for (const record of done ?? []) {
    if (!record.startsWith(FAILED_PREFIX)) {
      delivered.add(record);
      continue;
    }
    const target = parseFailed(record.slice(FAILED_PREFIX.length));
    // A record that cannot be read leaves its target to be attempted again.
    if (target !== undefined) failed.set(target.key, target);
  }
  return { delivered, failed, settled: (key) => delivered.has(key) || failed.has(key) };
}

function parseFailed(json: string): FailedTarget | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { key, error, dsnStatus, remoteMta } = value as Record<string, unknown>;
  if (typeof key !== "string" || typeof error !== "string") return undefined;
  return {
    key,
    error,
    ...(typeof dsnStatus === "string" ? { dsnStatus } : {}),
    ...(typeof remoteMta === "string" ? { remoteMta } : {}),
  };
}

/** Names one target of a recipient, for the record of those already delivered or failed. */
export function destinationKey(destination: Destination): string {
  switch (destination.kind) {
    case "mailbox":
      return `mailbox:${destination.user}@${destination.domain}`;
    case "pipe":
      return `pipe:${destination.alias}:${JSON.stringify(destination.argv)}`;
    case "remote":
      return `forward:${destination.address}`;
  }
}
