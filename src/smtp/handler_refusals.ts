/**
 * Which error replies of a session its handlers have logged. smtp-server
 * sends a handler's refusal (the error passed to the callback of onConnect,
 * onAuth, onMailFrom, onRcptTo or onData) through the connection's `send`,
 * like every reply it makes up itself; Postern's handlers log their own
 * refusals, with their reasons, and the connection logs the rest. So the
 * callbacks are wrapped here: a refusal passed to one marks the session,
 * and the connection takes the mark with the next error reply it sends.
 *
 * @module
 */

import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerOptions,
  SMTPServerSession,
} from "smtp-server";
import { isUnlogged } from "./adapter.ts";

/** Sessions whose next error reply a handler logged: the reply code, 0 for any. */
const marks = new WeakMap<object, number>();

/** Marks `session` when `callback` gets an error its handler logged. */
function marking<R extends unknown[]>(
  session: SMTPServerSession,
  callback: (err: Error | null | undefined, ...rest: R) => void,
): (err: Error | null | undefined, ...rest: R) => void {
  return (err, ...rest) => {
    if (err && !isUnlogged(err)) {
      const code = (err as { responseCode?: unknown }).responseCode;
      marks.set(session, typeof code === "number" ? code : 0);
    }
    callback(err, ...rest);
  };
}

/** `options` with each handler's callback wrapped; see the module description. */
export function markingHandlers(options: SMTPServerOptions): SMTPServerOptions {
  const { onConnect, onAuth, onMailFrom, onRcptTo, onData } = options;
  const wrapped: SMTPServerOptions = { ...options };
  if (onConnect) {
    wrapped.onConnect = (session: SMTPServerSession, cb: (err?: Error | null) => void) =>
      onConnect(session, marking(session, (err) => cb(err)));
  }
  if (onAuth) {
    wrapped.onAuth = (
      auth: SMTPServerAuthentication,
      session: SMTPServerSession,
      cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
    ) => onAuth(auth, session, marking(session, cb));
  }
  if (onMailFrom) {
    wrapped.onMailFrom = (
      address: SMTPServerAddress,
      session: SMTPServerSession,
      cb: (err?: Error | null) => void,
    ) => onMailFrom(address, session, marking(session, (err) => cb(err)));
  }
  if (onRcptTo) {
    wrapped.onRcptTo = (
      address: SMTPServerAddress,
      session: SMTPServerSession,
      cb: (err?: Error | null) => void,
    ) => onRcptTo(address, session, marking(session, (err) => cb(err)));
  }
  if (onData) {
    wrapped.onData = (
      stream: SMTPServerDataStream,
      session: SMTPServerSession,
      cb: Parameters<NonNullable<SMTPServerOptions["onData"]>>[2],
    ) => onData(stream, session, marking(session, cb));
  }
  return wrapped;
}

/**
 * Takes the mark of `session` for an error reply `code` being sent: true
 * when a handler logged it (the mark is for this code, or for any).
 */
export function takeHandlerMark(session: object, code: number): boolean {
  const mark = marks.get(session);
  if (mark === undefined) return false;
  marks.delete(session);
  return mark === 0 || mark === code;
}
