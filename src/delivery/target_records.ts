/**
 * What the queue keeps of an alias's targets between attempts (see
 * `DeliveryResult.done`): the targets delivered, and those that failed for
 * good with their error, so that a retry neither repeats nor forgets them.
 *
 * @module
 */

import type { Destination } from "../aliases/mod.ts";
import { PARTLY_DELIVERED } from "../outbound/bounce.ts";
import type { DeliveryResult } from "../queue/mod.ts";

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

/**
 * The outcomes of one envelope recipient's targets in one attempt, with
 * those earlier attempts recorded, and the recipient's result they make.
 */
export class TargetOutcomes {
  #earlier: ReturnType<typeof earlierOutcomes>;
  #sent: string[] = [];
  #deferred: Array<Exclude<DeliveryResult, { status: "sent" }>> = [];
  /** Failed for good in an earlier attempt, then in this one. */
  #failed: FailedTarget[];
  #done: string[] = [];

  /** Starts from the recipient's `done` records. */
  constructor(done: readonly string[] | undefined) {
    this.#earlier = earlierOutcomes(done);
    this.#failed = [...this.#earlier.failed.values()];
  }

  /**
   * True for a target an earlier attempt made final, which is not to be
   * attempted again: one delivered counts as sent; one that failed for good
   * (a pre-delivery-attempt hook's dump "simulates a bounce"; a pipe that
   * exited 1 would run again) is only reported.
   */
  settled(key: string): boolean {
    if (this.#earlier.delivered.has(key)) {
      this.#sent.push(`${key}(earlier)`);
      return true;
    }
    return this.#earlier.failed.has(key);
  }

  /** Takes the result of the target named `key`. */
  record(key: string, result: DeliveryResult): void {
    if (result.status === "sent") {
      this.#sent.push(result.detail);
      this.#done.push(key);
    } else if (result.status === "deferred") {
      this.#deferred.push(result);
    } else {
      const target: FailedTarget = {
        key,
        error: result.error,
        ...(result.dsnStatus !== undefined ? { dsnStatus: result.dsnStatus } : {}),
        ...(result.remoteMta !== undefined ? { remoteMta: result.remoteMta } : {}),
      };
      this.#failed.push(target);
      this.#done.push(failedRecord(target));
    }
  }

  /**
   * The error of a recipient some of whose targets did not take the
   * message, saying so when others did.
   *
   * RFC 3464 reports per recipient what happened to it. For an alias, the
   * report could name the members that failed (Final-Recipient, with the
   * alias as Original-Recipient), but an alias's members may be private:
   * a list's subscribers, the person behind role@. So the report stays
   * about the address the sender wrote, as the queue's state does (one per
   * envelope recipient): Action failed once no target will take it (or
   * delayed while one waits), with a diagnostic that says the message
   * reached the others, so the sender knows not to send it to all again.
   * The failures are named by what failed (a pipe, a mailbox, a remote
   * server's reply), not by member.
   */
  #partly(errors: string): string {
    if (this.#sent.length === 0) return errors;
    return `${PARTLY_DELIVERED}: the message reached some of this address's destinations, ` +
      `not the others: ${errors}`;
  }

  /** The recipient's result. */
  result(): DeliveryResult {
    // Any temporary failure makes the whole recipient wait for a retry; the
    // targets that reached a final state meanwhile are recorded, so that the
    // retry does not run a pipe or send a forward again (a mailbox is named
    // per queue ID and recipient, so it would not duplicate anyway).
    //
    // The targets that failed for good are bounced once the rest of the
    // alias is final, not at once: the queue keeps one state per envelope
    // recipient, and the sender addressed the alias, so there is one bounce
    // for it that names every failure, as chasquid sends one bounce per
    // message once every recipient is final. Until then the deferral's text
    // names the failures too, so a message that expires bounces with them.
    //
    // The status and the remote host go along (RFC 3464 sections 2.3.4 and
    // 2.3.5), those of the first target that makes the result: a delay
    // warning, and a bounce on expiry, name the server that said 4xx.
    const waiting = this.#deferred[0];
    if (waiting !== undefined) {
      return {
        status: "deferred",
        error: this.#partly(
          [...this.#deferred.map((d) => d.error), ...this.#failed.map((f) => f.error)].join("; "),
        ),
        ...(this.#done.length > 0 ? { done: this.#done } : {}),
        ...statusAndHost(waiting),
      };
    }
    const first = this.#failed[0];
    if (first !== undefined) {
      return {
        status: "failed",
        error: this.#partly(this.#failed.map((f) => f.error).join("; ")),
        ...statusAndHost(first),
      };
    }
    return { status: "sent", detail: this.#sent.join(",") };
  }
}

/** The enhanced status code and remote host of a target's result, those it has. */
function statusAndHost(
  from: { dsnStatus?: string | undefined; remoteMta?: string | undefined },
): { dsnStatus?: string; remoteMta?: string } {
  return {
    ...(from.dsnStatus !== undefined ? { dsnStatus: from.dsnStatus } : {}),
    ...(from.remoteMta !== undefined ? { remoteMta: from.remoteMta } : {}),
  };
}
