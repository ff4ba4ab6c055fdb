/**
 * SMTP intake: smtp-server with Postern's connection class, the async
 * handler adapter, recipient policy, Received headers, and DATA streamed
 * into the durable spool.
 *
 * @module
 */

export { complete, replyError } from "./adapter.ts";
export type { AuthDeps } from "./authentication.ts";
export { ConnectionLimits } from "./connection_limits.ts";
export { receiveMessage } from "./data.ts";
export type { ReceiveOutcome } from "./data.ts";
export { splitHostPort, startListeners } from "./listener.ts";
export type { ListenerOptions, LiveListenerSettings, SmtpListeners } from "./listener.ts";
export { clientKey, RATE_REFUSALS, RateLimits, SlidingWindowCounter } from "./rate_limits.ts";
export { LoginChecker } from "./login.ts";
export type { LoginAttempt, LoginResult } from "./login.ts";
export { senderRefusal } from "./submission.ts";
export type { RateLimiter, RateLimitSettings, RateRefusal } from "./rate_limits.ts";
export { receivedHeader, rfc5322Date } from "./received.ts";
export { checkRecipient } from "./recipient.ts";
export { formatReply, isPermanent, Replies, reply } from "./reply.ts";
export type { SmtpReply } from "./reply.ts";
export { Intake } from "./session.ts";
export type { IntakeDeps, IntakePolicy } from "./intake_deps.ts";
