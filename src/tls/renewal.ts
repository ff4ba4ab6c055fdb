/**
 * When to renew a certificate, and how long to wait after a failure.
 * Pure functions: the manager in `acme.ts` keeps the timers.
 *
 * @module
 */

import type { RenewalWindow } from "./ari.ts";

/**
 * The time to renew: inside the CA's ARI window when there is one (RFC
 * 9773 section 4.2: a uniformly random moment of the window, so that a
 * CA's many clients spread out; at once when it has passed), otherwise
 * when two thirds of the lifetime are gone, as Let's Encrypt advises.
 */
export function renewalTime(
  cert: { notBefore: number; notAfter: number },
  window: RenewalWindow | undefined,
  now: number,
  random: () => number = Math.random,
): number {
  if (window !== undefined) {
    if (window.end <= now) return now;
    const start = Math.max(window.start, now);
    return start + random() * (window.end - start);
  }
  return cert.notBefore + (2 / 3) * (cert.notAfter - cert.notBefore);
}

/** The longest wait between retries of a failed order. */
export const MAX_BACKOFF_MS = 6 * 3_600_000;

/**
 * The wait before retry `failures` (1 after the first failure): `initialMs`,
 * doubling each time, at most {@linkcode MAX_BACKOFF_MS}.
 */
export function backoffMs(failures: number, initialMs: number): number {
  return Math.min(initialMs * 2 ** Math.max(0, failures - 1), MAX_BACKOFF_MS);
}

/** setTimeout's longest delay is 2^31-1 ms (24.8 days); waits are cut at a day and re-planned. */
export const MAX_TIMER_MS = 86_400_000;
