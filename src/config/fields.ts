/**
 * Schemas of the kinds of value `postern.yaml` holds (sizes, durations,
 * counts, addresses, texts), each with the error message it gives.
 *
 * @module
 */

import * as v from "valibot";
import { parseEndpoint } from "../users/endpoint.ts";
import { parseDuration, parseSize } from "./units.ts";

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

/** A duration in milliseconds: seconds as a number, or text such as `5m`. */
export const Duration = v.pipe(
  v.union([v.number(), v.string()], 'must be a duration such as "30s" or "5m"'),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const ms = parseDuration(dataset.value);
    if (ms === undefined) {
      addIssue({ message: `"${dataset.value}" is not a duration such as "30s" or "5m"` });
      return NEVER;
    }
    return ms;
  }),
);

/** A whole number, at least `min`. */
export const Count = (min: number) =>
  v.pipe(
    v.number("must be a whole number"),
    v.integer("must be a whole number"),
    v.minValue(min, `must be at least ${min}`),
  );

/** `host:port`, with IPv6 hosts in brackets (`[::1]:25`). */
export const ListenAddress = v.pipe(
  v.string('must be an address such as "127.0.0.1:2525"'),
  v.regex(
    /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):\d{1,5}$/,
    'must be an address such as "127.0.0.1:2525" or "[::1]:25"',
  ),
);

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
