/**
 * Queue IDs: 16 characters, time-ordered, unique without coordination.
 *
 * @module
 */

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/**
 * Makes a queue ID: 10 characters of the millisecond clock (so IDs sort by
 * arrival) followed by 6 random characters (30 bits).
 */
export function newQueueId(now: number = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32]! + time;
    t = Math.floor(t / 32);
  }
  const random = crypto.getRandomValues(new Uint8Array(6));
  let tail = "";
  for (const byte of random) tail += ALPHABET[byte % 32]!;
  return time + tail;
}

/** True when `id` has the form of a queue ID (and is safe as a file name). */
export function isQueueId(id: string): boolean {
  return /^[0-9a-z]{16}$/.test(id);
}
