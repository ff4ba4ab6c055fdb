/**
 * Example post-data hook: asks an rspamd instance for a verdict over its
 * HTTP API, adds the score as headers, and refuses what rspamd says to
 * reject. rspamd's address must be granted in `postern.yaml`:
 *
 * ```yaml
 * hooks:
 *   post_data:
 *     allow:
 *       net: ["127.0.0.1:11333"]
 * ```
 *
 * Copy to `<config dir>/hooks/post-data.ts`.
 *
 * @module
 */

import type { PostDataCall, PostDataResult } from "../mod.ts";

/** Where rspamd's normal worker listens. */
const RSPAMD = "http://127.0.0.1:11333/checkv2";

/** The part of rspamd's answer this hook reads. */
interface RspamdReply {
  action?: string;
  score?: number;
  required_score?: number;
}

/** Checks one message. */
export default async function spamCheck(input: PostDataCall): Promise<PostDataResult> {
  let reply: RspamdReply;
  try {
    const response = await fetch(RSPAMD, {
      method: "POST",
      // The message is streamed to rspamd as Postern streams it here.
      body: input.message,
      headers: {
        "IP": input.remoteAddr,
        "From": input.mailFrom,
        "Rcpt": input.rcptTo.join(","),
        "Queue-Id": input.queueId,
      },
      signal: AbortSignal.timeout(20_000),
    });
    if (!response.ok) throw new Error(`rspamd answered HTTP ${response.status}`);
    reply = await response.json();
  } catch (err) {
    // rspamd is down: let the client retry rather than let spam through.
    console.error("spam check failed:", err);
    return { action: "defer", message: "Spam check unavailable, try again later" };
  }
  const score = reply.score ?? 0;
  if (reply.action === "reject") {
    return { action: "reject", message: `Message looks like spam (score ${score.toFixed(1)})` };
  }
  const isSpam = reply.action === "add header" || reply.action === "rewrite subject";
  return {
    action: "accept",
    headers: {
      "X-Spam-Score": score.toFixed(2),
      "X-Spam-Flag": isSpam ? "YES" : "NO",
    },
  };
}
