/**
 * The queue's limit on attempts in flight per remote destination, and the
 * items set aside while their destination is at that limit.
 *
 * Why: attempts beyond a destination's connection limit would only wait
 * for a connection while holding delivery slots that mail for other
 * destinations could use; one slow or tarpitting destination would then
 * hold up everything (Postfix's qmgr keeps a concurrency per destination
 * for the same reason). Items set aside wait in the order they fell due
 * and go back to the queue's heap as attempts for their destination end.
 *
 * @module
 */

/** What the limits keep of an item: where it waits, if anywhere. */
export interface Waiter {
  /**
   * The destination whose list this item is on. A reference to the item
   * left in any other list is stale and skipped.
   */
  waitingOn?: string | undefined;
}

/** What to do with a set-aside item that reaches the front of its list. */
export type Verdict =
  /** It can start: back to the heap. */
  | "start"
  /** It finished, was held or started meanwhile: forget it. */
  | "drop";

/** Attempts in flight per destination, and the items waiting for room. */
export class DestinationLimits<T extends Waiter> {
  #limit: () => number | undefined;
  #active = new Map<string, number>();
  #waiting = new Map<string, T[]>();

  /** `limit` gives the limit in force; undefined means none. */
  constructor(limit: () => number | undefined) {
    this.#limit = limit;
  }

  /** The first of `destinations` at its limit, other than `except`. */
  firstFull(destinations: readonly string[], except?: string): string | undefined {
    const limit = this.#limit() ?? Infinity;
    return destinations.find((d) => d !== except && (this.#active.get(d) ?? 0) >= limit);
  }

  /** Sets `item` aside until `destination` has room; an item already waiting stays where it is. */
  setAside(item: T, destination: string): void {
    if (item.waitingOn !== undefined) return;
    item.waitingOn = destination;
    const list = this.#waiting.get(destination);
    if (list) list.push(item);
    else this.#waiting.set(destination, [item]);
  }

  /** Takes `item` off its list (it was held, finished, or is being ended). */
  forget(item: T): void {
    item.waitingOn = undefined;
  }

  /** Counts an attempt for `destinations` as started. */
  started(destinations: readonly string[]): void {
    for (const d of destinations) this.#active.set(d, (this.#active.get(d) ?? 0) + 1);
  }

  /**
   * Counts an attempt for `destinations` as ended, and returns the items
   * that now have room, oldest first (see {@linkcode release}).
   */
  ended(
    destinations: readonly string[],
    judge: (item: T) => Verdict,
    destinationsOf: (item: T) => readonly string[],
  ): T[] {
    const ready: T[] = [];
    for (const d of destinations) {
      const left = (this.#active.get(d) ?? 1) - 1;
      if (left > 0) this.#active.set(d, left);
      else this.#active.delete(d);
      ready.push(...this.release(d, judge, destinationsOf));
    }
    return ready;
  }

  /** Releases what every destination has room for (after the limit was raised). */
  releaseAll(
    judge: (item: T) => Verdict,
    destinationsOf: (item: T) => readonly string[],
  ): T[] {
    return [...this.#waiting.keys()].flatMap((d) => this.release(d, judge, destinationsOf));
  }

  /**
   * Takes from `destination`'s list as many items as it has room for, and
   * returns them. Only items that can start count against the room: one
   * that also waits for another destination at its limit moves to that
   * one's list, and stale references and dropped items are skipped, so
   * none of them leaves this destination idle while others wait. (The
   * caller's next pump starts the items unless something due earlier takes
   * the room first; those then wait again.)
   */
  release(
    destination: string,
    judge: (item: T) => Verdict,
    destinationsOf: (item: T) => readonly string[],
  ): T[] {
    const list = this.#waiting.get(destination);
    if (!list) return [];
    const ready: T[] = [];
    let room = (this.#limit() ?? Infinity) - (this.#active.get(destination) ?? 0);
    let taken = 0;
    while (room > 0 && taken < list.length) {
      const item = list[taken++]!;
      if (item.waitingOn !== destination) continue;
      item.waitingOn = undefined;
      if (judge(item) === "drop") continue;
      const full = this.firstFull(destinationsOf(item), destination);
      if (full !== undefined) {
        this.setAside(item, full);
        continue;
      }
      ready.push(item);
      room--;
    }
    // One splice per release rather than a shift per item: lists of a busy
    // destination hold thousands.
    list.splice(0, taken);
    if (list.length === 0) this.#waiting.delete(destination);
    return ready;
  }
}
