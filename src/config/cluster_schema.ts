/**
 * The `cluster` section of `postern.yaml`: the Redis or Valkey server a
 * fleet of nodes shares rate limits and hook state through, and this
 * node's place in it. `defaults.ts` holds the value a missing field takes.
 *
 * @module
 */

import * as v from "valibot";
import { parseClusterUrl } from "../cluster/settings.ts";
import { Duration, Text, TIMER } from "./fields.ts";

/** Schema of the `cluster` section. */
export const ClusterSchema = v.strictObject({
  /** The server: redis://host:port, rediss://host:port (TLS) or unix:/path/to/socket. */
  url: v.pipe(
    v.string('must be a URL such as "redis://127.0.0.1:6379"'),
    v.check((text) => {
      try {
        parseClusterUrl(text);
        return true;
      } catch {
        return false;
      }
    }, (issue) => {
      try {
        parseClusterUrl(String(issue.input));
      } catch (err) {
        return (err as Error).message;
      }
      return "must be a redis://, rediss:// or unix: URL";
    }),
  ),
  /** File whose first line is the server's password. Default: none. */
  password_file: v.optional(Text("a file path")),
  /** PEM file of the CAs a rediss:// server's certificate must chain to. Default: the system's. */
  tls_ca_file: v.optional(Text("a file path")),
  /** This node's name in the fleet. Default: hostname. */
  node_name: v.optional(
    v.pipe(
      Text("a node name"),
      v.regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1 to 64 letters, digits, dots, - or _"),
    ),
  ),
  /** Longest wait for one call before falling back to local counts. Default: 50ms. */
  timeout: v.optional(Duration(TIMER)),
  /** How often the node announces itself; it is gone after 3 missed. Default: 5s. */
  heartbeat: v.optional(Duration(TIMER)),
  /** Prefix of every key Postern uses (several fleets can share a server). Default: "postern:". */
  key_prefix: v.optional(
    v.pipe(
      v.string("must be text"),
      v.regex(/^[A-Za-z0-9:._-]{0,64}$/, "must be at most 64 letters, digits, :, ., - or _"),
    ),
  ),
});
