/**
 * Human-friendly sizes (`50MiB`, `10M`, `512k`) and durations (`30s`, `5m`,
 * `5d`) in the configuration file.
 *
 * @module
 */

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a size: a whole number of bytes, or a number with a unit (`k`/`KiB`
 * are 1024, `KB` is 1000; likewise M and G). Returns undefined when the text
 * is not a size.
 */
export function parseSize(input: number | string): number | undefined {
  if (typeof input === "number") {
    return Number.isSafeInteger(input) && input >= 0 ? input : undefined;
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  if (!match) return undefined;
  const unit = SIZE_UNITS[match[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(match[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * The longest delay a timer can wait, in milliseconds: `setTimeout` and
 * socket timeouts hold a signed 32-bit count (about 24.8 days). A longer
 * one is cut to 1 ms with a warning, or throws where it arms a socket.
 */
export const TIMER_MAX_MS = 2 ** 31 - 1;

/** What {@linkcode checkDuration} makes of a value. */
export type DurationCheck =
  /** A duration within the maximum, in whole milliseconds. */
  | { ok: true; ms: number }
  /** Not a duration at all (`soon`, `-5s`, `5 m`). */
  | { ok: false; problem: "malformed" }
  /** A duration, but longer than the maximum (`1e308`, `30d` for a timer). */
  | { ok: false; problem: "too long" };

/**
 * Parses a duration into milliseconds: a number with a unit (`ms`, `s`, `m`,
 * `h`, `d`), several of them in a row (`1h30m`), or a bare number of seconds.
 * Returns undefined when the text is not a duration, or is one too long to
 * count in whole milliseconds (past `Number.MAX_SAFE_INTEGER`, or infinite).
 */
export function parseDuration(input: number | string): number | undefined {
  const checked = checkDuration(input, Number.MAX_SAFE_INTEGER);
  return checked.ok ? checked.ms : undefined;
}

/**
 * Parses a duration as {@linkcode parseDuration} does, and tells a value
 * that is no duration from one longer than `maxMs`, so that an error can
 * say which. The result is always finite.
 */
export function checkDuration(input: number | string, maxMs: number): DurationCheck {
  const ms = durationMs(input);
  if (ms === undefined) return { ok: false, problem: "malformed" };
  // Infinity (1e308 seconds, or 400 digits of text) lands here too.
  if (!(ms <= maxMs) || !Number.isSafeInteger(ms)) return { ok: false, problem: "too long" };
  return { ok: true, ms };
}

/**
 * A duration in the form {@linkcode parseDuration} reads, the largest unit
 * first (`24d20h31m23.647s`): the text of a maximum in an error message is
 * itself a valid setting.
 */
export function formatDuration(ms: number): string {
  let rest = Math.round(ms);
  let text = "";
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000]] as const) {
    const count = Math.floor(rest / size);
    if (count > 0) text += `${count}${unit}`;
    rest -= count * size;
  }
  if (rest > 0) text += `${rest / 1000}s`;
  return text === "" ? "0s" : text;
}

/** Milliseconds, possibly not finite; undefined when the input is not a duration. */
function durationMs(input: number | string): number | undefined {
  if (typeof input === "number") {
    return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined;
  }
  const text = input.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (const match of text.matchAll(part)) {
    total += Number(match[1]) * DURATION_UNITS[match[2]!]!;
    consumed += match[0].length;
  }
  return consumed === text.length && consumed > 0 ? Math.round(total) : undefined;
}
