/**
 * The DATA path of intake: the message streamed into the spool under its
 * Received header (with forged or submitted header fields filtered out),
 * then DKIM, ARC and DMARC, the post-data hook, and the durable commit
 * that the 250 reply promises.
 *
 * @module
 */

import type { SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import { inNetworks } from "../auth/mod.ts";
import type { Envelope, SpoolItem } from "../queue/mod.ts";
import { authenticateAfterData } from "./authentication.ts";
import { ourAuthenticationResults } from "./authres_claim.ts";
import { receiveMessage } from "./data.ts";
import { HeaderFilter } from "./header_filter.ts";
import { hasDeliveredTo, headerRefusal } from "./header_guard.ts";
import type { DataContext, OpenTransaction, SpooledMessage } from "./intake_deps.ts";
import {
  idHeaderFilter,
  missingHeaders,
  signatureHead,
  type SubmittedHeaders,
} from "./outbound_headers.ts";
import { runPostData } from "./post_data.ts";
import { receivedHeader } from "./received.ts";
import { Replies, reply, type SmtpReply } from "./reply.ts";
import { authenticatedUser, client } from "./session_client.ts";

/**
 * DATA: stream into the spool, commit durably, then reply 250. `open` is
 * the transaction that DATA ends, its refusals logged through `ctx`.
 */
export async function acceptMessage(
  ctx: DataContext,
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  open: OpenTransaction,
): Promise<SmtpReply> {
  const { qid, spf, policy } = open;
  const now = ctx.deps.now?.() ?? new Date();
  const mailFrom = session.envelope.mailFrom;
  const from = mailFrom ? mailFrom.address || "" : "";
  const to = session.envelope.rcptTo.map((r) => r.address);
  const smtputf8 = Boolean(mailFrom && mailFrom.args && mailFrom.args.SMTPUTF8);
  const envelope: Envelope = {
    v: 1,
    id: qid,
    from,
    to,
    received_at: now.toISOString(),
    client: {
      ip: session.remoteAddress,
      helo: session.hostNameAppearsAs || "",
      tls: session.secure,
    },
    smtputf8,
  };
  const header = receivedHeader({
    helo: envelope.client.helo,
    clientIp: session.remoteAddress,
    hostname: ctx.deps.hostname,
    queueId: qid,
    tls: session.secure,
    smtputf8,
    esmtp: session.openingCommand === "EHLO",
    authenticated: authenticatedUser(session) !== undefined,
    recipients: to,
    date: now,
  });

  let writer;
  try {
    writer = await ctx.deps.spool.receive(envelope);
  } catch (err) {
    for await (const _ of stream) { /* drain: smtp-server replies only after the end */ }
    return failed(ctx, session, qid, err, envelope);
  }
  // RFC 8601 section 5: our own authserv-id in a field from outside is a forgery.
  const auth = policy.auth;
  // Mail from outside gets the RFC 8601 filter; submitted mail (the only
  // mail that is relayed) gives up its SendID and ListID and is signed.
  const submitted = authenticatedUser(session) !== undefined;
  const checkedClient = auth !== undefined && !submitted &&
    !inNetworks(session.remoteAddress, policy.trustedNetworks);
  const ids: SubmittedHeaders = {};
  const outbound = submitted ? policy.outbound : undefined;
  // RFC 8601 section 5: a submitting user is no trusted MTA either, so
  // submitted mail loses claims of our authserv-id too.
  const filter = checkedClient
    ? new HeaderFilter(ourAuthenticationResults(auth.hostname))
    : outbound
    ? idHeaderFilter(outbound, ids, ourAuthenticationResults(ctx.deps.hostname))
    : undefined;
  const outcome = await receiveMessage(
    stream,
    writer,
    new TextEncoder().encode(header),
    policy.maxMessageSize,
    filter,
  );
  if (checkedClient && filter && filter.dropped > 0) {
    ctx.deps.logger.warn("removed Authentication-Results fields that claimed our name", {
      qid,
      fields: filter.dropped,
    });
  }
  switch (outcome.kind) {
    case "too_big": {
      const r = Replies.messageTooBig(policy.maxMessageSize);
      ctx.reject(session, "data", "message_too_big", r, undefined, qid, from);
      return r;
    }
    case "bad_header": {
      // Refused before anything read the header: mailauth (to verify or
      // sign) would take too long over it, or it hides fields behind a
      // bare CR. Nothing of it was stored (header_guard.ts).
      const { reason, reply: r } = headerRefusal(outcome.violation);
      ctx.reject(session, "data", reason, r, undefined, qid, from);
      return r;
    }
    case "failed":
      return failed(ctx, session, qid, outcome.error, envelope);
    case "interrupted":
      // The connection is gone: the reply goes nowhere, the log says why.
      ctx.reject(session, "data", "interrupted", Replies.localError, undefined, qid, from);
      return Replies.localError;
    case "received":
      ctx.deps.freeSpace?.consumed(outcome.bytes);
      break;
  }

  let item: SpoolItem;
  let results: Record<string, string> = {};
  try {
    const spooled: SpooledMessage = { policy, session, writer, envelope, spf };
    const authenticated = await authenticate(ctx, spooled);
    if ("code" in authenticated) {
      await writer.abort();
      return authenticated;
    }
    results = authenticated.results;
    const checked = await runPostData(ctx, spooled);
    if ("code" in checked) {
      await writer.abort();
      return checked;
    }
    if (outbound) {
      writer.setIds(ids);
      await writer.prepend(missingHeaders(ids, qid, ctx.deps.hostname, now, from));
    }
    if (checked.head) await writer.prepend(checked.head);
    // For local delivery's loop check (src/delivery/delivered_to.ts).
    writer.setDeliveredTo(
      outcome.deliveredTo || (checked.head !== undefined && hasDeliveredTo(checked.head)),
    );
    item = await writer.commit(
      outbound ? await signatureHead(outbound, writer, envelope) : undefined,
    );
  } catch (err) {
    await writer.abort();
    return failed(ctx, session, qid, err, envelope);
  }
  ctx.deps.mailLog.queued(
    qid,
    client(session),
    from,
    to,
    outcome.bytes,
    session.secure,
    results,
  );
  ctx.deps.onQueued(item);
  return reply(250, "2.0.0", `Ok: queued as ${qid}`);
}

/**
 * DKIM, ARC and DMARC on the spooled message; their header fields (and
 * Received-SPF) are added at once, so the post-data hook sees them, as
 * chasquid's does.
 */
async function authenticate(
  ctx: DataContext,
  message: SpooledMessage,
): Promise<{ results: Record<string, string> } | SmtpReply> {
  const { policy, session, writer, envelope, spf } = message;
  const auth = policy.auth;
  if (!auth) return { results: {} };
  const checked = await authenticateAfterData(auth, async () => ({
    ...await writer.readable(),
    read: () => writer.message(),
  }), {
    sender: envelope.from,
    ip: envelope.client.ip,
    helo: envelope.client.helo,
    spf,
    authenticated: authenticatedUser(session) !== undefined,
  });
  if (checked.refusal) {
    ctx.reject(
      session,
      "data",
      checked.refusal.reason,
      checked.refusal.reply,
      undefined,
      envelope.id,
      envelope.from,
    );
    return checked.refusal.reply;
  }
  if (checked.head) await writer.prepend(new TextEncoder().encode(checked.head));
  return { results: checked.results };
}

/** A message the spool could not take: logged, and refused for now. */
function failed(
  ctx: DataContext,
  session: SMTPServerSession,
  qid: string,
  err: unknown,
  envelope: Envelope,
): SmtpReply {
  ctx.deps.logger.error("cannot spool message", {
    qid,
    error: err instanceof Error ? err.message : String(err),
  });
  ctx.reject(session, "data", "spool_error", Replies.localError, undefined, qid, envelope.from);
  return Replies.localError;
}
