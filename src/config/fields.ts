/**
 * Schemas of the kinds of value `postern.yaml` holds (sizes, durations,
 * counts, addresses, texts), each with the error message it gives.
 *
 * @module
 */

import * as v from "valibot";
import { parseServer } from "../dns/servers.ts";
import { parseEndpoint } from "../users/endpoint.ts";
import { checkDuration, formatDuration, parseSize, TIMER_MAX_MS } from "./units.ts";

/** A size in bytes: a number, or text such as `50MiB`. */
export const Size = v.pipe(
  v.union([v.number(), v.string()], 'must be a size such as 10485760 or "10MiB"'),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const bytes = parseSize(dataset.value);
    if (bytes === undefined) {
      addIssue({ message: `"${dataset.value}" is not a size such as 10485760 or "10MiB"` });
      return NEVER;
    }
    return bytes;
  }),
);

/** The longest a duration may be, and why, for the error message. */
export interface DurationLimit {
  maxMs: number;
  why: string;
}

/**
 * Durations that arm a timer (a socket timeout, `setTimeout`,
 * `setInterval`), which waits at most 2^31-1 ms: a longer one fires at
 * once, or crashes the first SMTP connection (its socket timeout throws).
 */
export const TIMER: DurationLimit = {
  maxMs: TIMER_MAX_MS,
  why: `${TIMER_MAX_MS} ms, the longest a timer can wait`,
};

/**
 * Durations the queue compares with a message's age or adds to the clock
 * (its own timer is capped): a year is past any use, and keeps every date
 * computed from them valid.
 */
export const QUEUE_SPAN: DurationLimit = { maxMs: 365 * 86_400_000, why: "a year" };

/**
 * The second look at a reload that drops recipients: those stay accepted
 * meanwhile, so a removal must still land within the minute.
 */
export const REMOVAL_DELAY: DurationLimit = { maxMs: 60_000, why: "a minute" };

/** RFC 8461 section 3.2: an MTA-STS policy's max_age is at most 31557600 seconds. */
export const MTA_STS_MAX_AGE: DurationLimit = {
  maxMs: 31_557_600_000,
  why: "31557600 s, the limit of RFC 8461 section 3.2",
};

/** A value as an error message shows it: a long text is cut. */
function shown(value: unknown): string {
  if (typeof value !== "string") return String(value);
  return value.length > 40 ? `"${value.slice(0, 20)}…" (${value.length} characters)` : `"${value}"`;
}

/**
 * A duration in milliseconds, at most `limit.maxMs`: seconds as a number,
 * or text such as `5m`.
 */
export const Duration = (limit: DurationLimit) =>
  v.pipe(
    v.union([v.number(), v.string()], 'must be a duration such as "30s" or "5m"'),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const checked = checkDuration(dataset.value, limit.maxMs);
      if (checked.ok) return checked.ms;
      addIssue({
        message: checked.problem === "malformed"
          ? `${shown(dataset.value)} is not a duration such as "30s" or "5m"`
          : `must be at most ${formatDuration(limit.maxMs)} (${limit.why}), not ${
            shown(dataset.value)
          }`,
      });
      return NEVER;
    }),
  );

/**
 * A whole number from `min` to `max`; by default at most the largest whole
 * number a double holds exactly (YAML's `1e300` is whole too, and a loop
 * that counts to it never ends).
 */
export const Count = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  v.pipe(
    v.number("must be a whole number"),
    v.integer("must be a whole number"),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );

/** The shape of `host:port`, with IPv6 hosts in brackets (`[::1]:25`). */
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$/;

/** The port of a text of {@linkcode HOST_PORT}'s shape. */
const portOf = (text: unknown) => Number(HOST_PORT.exec(String(text))?.[2]);

/**
 * `host:port` to listen on, with IPv6 hosts in brackets (`[::1]:25`); port
 * 0 takes any free port. A port past 65535 is refused here, by name,
 * rather than by the runtime when the server starts.
 */
export const ListenAddress = v.pipe(
  v.string('must be an address such as "127.0.0.1:2525"'),
  v.regex(HOST_PORT, 'must be an address such as "127.0.0.1:2525" or "[::1]:25"'),
  v.check(
    (text) => portOf(text) <= 65535,
    (issue) => `must have a port from 0 to 65535, not ${portOf(issue.input)}`,
  ),
);

/**
 * Why `text` is not a listen address (see {@linkcode ListenAddress}), or
 * undefined when it is one: for addresses given on the command line.
 */
export function listenAddressProblem(text: string): string | undefined {
  const result = v.safeParse(ListenAddress, text);
  return result.success ? undefined : result.issues[0].message;
}

/**
 * A DNS server: an IP address (`192.0.2.1`, `2001:db8::1`), with a port
 * from 1 to 65535 if not 53 (`192.0.2.1:5353`, `[2001:db8::1]:5353`).
 */
export const DnsServer = v.pipe(
  v.string("each server must be text"),
  v.regex(
    /^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[0-9a-fA-F:]+)(:\d{1,5})?$/,
    'must be an address such as "127.0.0.1:53" or "[::1]:53"',
  ),
  v.check((text) => dnsServerProblem(text) === undefined, (issue) => {
    return `must be an address such as "127.0.0.1:53" or "[::1]:53": ${
      dnsServerProblem(String(issue.input))
    }`;
  }),
);

function dnsServerProblem(text: string): string | undefined {
  try {
    parseServer(text);
    return undefined;
  } catch (err) {
    // "Cannot use DNS server "…": the port is not in 1-65535": the reason only.
    return (err as Error).message.replace(/^[^:]*"[^"]*": /, "");
  }
}

/** A local service: `unix:/run/dovecot/lmtp` or `127.0.0.1:24`. */
export const Endpoint = v.pipe(
  v.string('must be "unix:/path/to/socket" or an address such as "127.0.0.1:24"'),
  v.check(
    (text) => parseEndpoint(text) !== undefined,
    'must be "unix:/path/to/socket" or an address such as "127.0.0.1:24"',
  ),
);

/** Text of at least one character; `what` names it in the message. */
export const Text = (what: string) =>
  v.pipe(v.string(`must be ${what}`), v.minLength(1, `must not be empty`));

/** A list of non-empty texts; `what` names an entry in the message. */
export const Names = (what: string) =>
  v.array(v.pipe(v.string(`each entry must be ${what}`), v.minLength(1, "must not be empty")));
