/**
 * The post-data hook at intake: its request built from the envelope, the
 * spooled message streamed to it, and its verdict turned into header
 * fields to add or a refusal. `accept_message.ts` calls it between the
 * authentication checks and the commit.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import { postDataOutcome } from "../hooks/mod.ts";
import type { SpoolWriter } from "../queue/mod.ts";
import type { DataContext, SpooledMessage } from "./intake_deps.ts";
import { reply, type SmtpReply } from "./reply.ts";
import { authenticatedUser } from "./session_client.ts";

/**
 * The post-data hook, run on the spooled message before it is queued
 * (chasquid runs it after DATA, before queue.Put). Returns the headers
 * to add, or the reply that refuses the message.
 */
export async function runPostData(
  ctx: DataContext,
  message: SpooledMessage,
): Promise<{ head: Uint8Array | undefined } | SmtpReply> {
  const { policy, session, writer, envelope, spf } = message;
  const hooks = ctx.deps.hooks;
  if (!hooks?.has("post-data")) return { head: undefined };
  const at = envelope.from.lastIndexOf("@");
  const verdict = await hooks.postData({
    queueId: envelope.id,
    remoteAddr: envelope.client.ip,
    ehloDomain: envelope.client.helo.replace(/[^A-Za-z0-9.\-_:\[\]]/g, ""),
    mailFrom: envelope.from,
    rcptTo: envelope.to,
    // chasquid's AUTH_AS: the user of a completed AUTH (submission), else "".
    authAs: authenticatedUser(session) ?? "",
    onTls: envelope.client.tls,
    fromLocalDomain: at > 0 && policy.resolver.isLocalDomain(envelope.from.slice(at + 1)),
    spfPass: spf?.result === "pass",
  }, () => hookMessage(writer));
  if (!verdict) return { head: undefined };
  ctx.deps.mailLog.hook(envelope.id, "post-data", postDataOutcome(verdict));
  if (verdict.kind === "refuse") {
    // chasquid: exit status 20 is permanent (554), anything else 451.
    const r = verdict.permanent
      ? reply(554, "5.7.1", verdict.text)
      : reply(451, "4.3.0", verdict.text);
    const reason = verdict.cause === "rejected"
      ? "post_data_reject"
      : verdict.cause === "deferred"
      ? "post_data_defer"
      : "post_data_failure";
    if (reason === "post_data_failure") {
      ctx.deps.logger.warn("post-data hook failed; the message is refused for now", {
        qid: envelope.id,
        cause: verdict.cause,
      });
    }
    ctx.reject(session, "data", reason, r, undefined, envelope.id, envelope.from);
    return r;
  }
  if (verdict.dropped.length > 0) {
    ctx.deps.logger.warn("post-data hook returned invalid header lines; they were dropped", {
      qid: envelope.id,
      dropped: verdict.dropped.join(" | "),
    });
  }
  return { head: verdict.headers ? new TextEncoder().encode(verdict.headers) : undefined };
}

/**
 * The spooled message as the post-data hook reads it. The file is flushed
 * and opened only when the hook starts reading: a small message that no
 * hook reads stays in memory until its commit writes it once.
 */
async function* hookMessage(writer: SpoolWriter): AsyncGenerator<Uint8Array> {
  const { path, offset } = await writer.readable();
  const stream = createReadStream(path, { start: offset, highWaterMark: 64 * 1024 });
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } finally {
    stream.destroy();
  }
}
