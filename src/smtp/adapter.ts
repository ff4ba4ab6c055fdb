/**
 * The one place where smtp-server's callbacks meet Postern's async
 * handlers. Each handler returns a reply value (or nothing for the default
 * success); the adapter calls smtp-server's callback exactly once, with an
 * Error carrying `responseCode` for refusals, and never lets an exception
 * escape into the library.
 *
 * A refusal a handler returns is the handler's to log (Intake logs each,
 * with its reason); the reply to an unexpected error is not, and is marked
 * so that the connection logs it ({@linkcode isUnlogged}).
 *
 * @module
 */

import { Replies, replyText, type SmtpReply } from "./reply.ts";

/** smtp-server's callback shape. */
export type NodeCallback = (err?: Error | null, message?: string) => void;

/** Errors whose reply no handler logged: those answering an unexpected error. */
const unlogged = new WeakSet<object>();

/** True for an error whose reply no handler logged (the connection logs it). */
export function isUnlogged(err: unknown): boolean {
  return typeof err === "object" && err !== null && unlogged.has(err);
}

/** The temporary local error that answers an unexpected error of a handler. */
function unexpectedError(): Error & { responseCode: number } {
  const err = replyError(Replies.localError);
  unlogged.add(err);
  return err;
}

/** An Error that smtp-server turns into the reply it describes. */
export function replyError(r: SmtpReply): Error & { responseCode: number } {
  return Object.assign(new Error(replyText(r)), { responseCode: r.code });
}

/**
 * The same for AUTH: `handler` resolves to the user, or to the reply that
 * refuses the login; smtp-server's callback gets `{ user }` or the error.
 */
export function completeLogin(
  handler: () => Promise<{ user: string } | SmtpReply>,
  callback: (err: Error | null | undefined, response?: { user?: string }) => void,
  onUnexpected: (err: unknown) => void,
): void {
  let done = false;
  const finish = (err: Error | null, response?: { user: string }) => {
    if (done) return;
    done = true;
    if (response) callback(null, response);
    else callback(err);
  };
  new Promise<{ user: string } | SmtpReply>((resolve) => resolve(handler())).then(
    (result) => {
      if ("user" in result) finish(null, { user: result.user });
      else finish(replyError(result));
    },
    (err) => {
      onUnexpected(err);
      finish(unexpectedError());
    },
  );
}

/**
 * Runs `handler` and completes `callback` exactly once: a reply below 400
 * succeeds with that text, a reply of 400 or more refuses, and a thrown
 * error becomes a temporary local error after `onUnexpected` has seen it.
 */
export function complete(
  handler: () => Promise<SmtpReply | undefined>,
  callback: NodeCallback,
  onUnexpected: (err: unknown) => void,
): void {
  let done = false;
  const finish = (err: Error | null, message?: string) => {
    if (done) return;
    done = true;
    if (message === undefined) callback(err);
    else callback(err, message);
  };
  new Promise<SmtpReply | undefined>((resolve) => resolve(handler())).then(
    (r) => {
      if (r === undefined) finish(null);
      else if (r.code >= 400) finish(replyError(r));
      else finish(null, replyText(r));
    },
    (err) => {
      onUnexpected(err);
      finish(unexpectedError());
    },
  );
}
