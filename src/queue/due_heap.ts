/**
 * A binary min-heap of queue entries by due time, so that the queue finds
 * the next due item in O(log n) instead of scanning every item whenever a
 * message arrives or an attempt ends.
 *
 * Entries are not removed when they change: each push records the due time
 * it was pushed with, and a popped record whose time no longer matches its
 * entry's is stale and skipped (lazy deletion).
 *
 * @module
 */

/** What the heap orders. */
export interface Due {
  dueAt: number;
}

interface Slot<T> {
  at: number;
  /** Ties keep arrival order. */
  seq: number;
  entry: T;
}

/** A min-heap of `T` by the due time each was pushed with. */
export class DueHeap<T extends Due> {
  #slots: Slot<T>[] = [];
  #seq = 0;

  /** Records `entry` as due at its current `dueAt`. */
  push(entry: T): void {
    this.#slots.push({ at: entry.dueAt, seq: this.#seq++, entry });
    this.#up(this.#slots.length - 1);
  }

  /** The earliest record, without removing it; undefined when empty. */
  peek(): { at: number; entry: T } | undefined {
    return this.#slots[0];
  }

  /** Removes and returns the earliest record. */
  pop(): { at: number; entry: T } | undefined {
    const slots = this.#slots;
    const top = slots[0];
    const last = slots.pop();
    if (top !== undefined && last !== undefined && slots.length > 0) {
      slots[0] = last;
      this.#down(0);
    }
    return top;
  }

  /** Records held, stale ones included. */
  get size(): number {
    return this.#slots.length;
  }

  #less(a: Slot<T>, b: Slot<T>): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #up(index: number): void {
    const slots = this.#slots;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!this.#less(slots[index]!, slots[parent]!)) return;
      [slots[index], slots[parent]] = [slots[parent]!, slots[index]!];
      index = parent;
    }
  }

  #down(index: number): void {
    const slots = this.#slots;
    for (;;) {
      const left = 2 * index + 1;
      const right = left + 1;
      let least = index;
      if (left < slots.length && this.#less(slots[left]!, slots[least]!)) least = left;
      if (right < slots.length && this.#less(slots[right]!, slots[least]!)) least = right;
      if (least === index) return;
      [slots[index], slots[least]] = [slots[least]!, slots[index]!];
      index = least;
    }
  }
}
