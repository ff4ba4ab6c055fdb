/**
 * SMTP intake: smtp-server with Postern's connection class, the async
 * handler adapter, recipient policy, Received headers, and DATA streamed
 * into the durable spool.
 *
 * @module
 */

export { complete, replyError } from "./adapter.ts";
export { ConnectionLimits } from "./connection_limits.ts";
export { receiveMessage } from "./data.ts";
export type { ReceiveOutcome } from "./data.ts";
export { splitHostPort, startListeners } from "./listener.ts";
export type { ListenerOptions, SmtpListeners } from "./listener.ts";
export { receivedHeader, rfc5322Date } from "./received.ts";
export { checkRecipient } from "./recipient.ts";
export { formatReply, isPermanent, Replies, reply } from "./reply.ts";
export type { SmtpReply } from "./reply.ts";
export { Intake } from "./session.ts";
export type { IntakeDeps } from "./session.ts";
