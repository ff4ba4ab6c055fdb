/**
 * What the pre-delivery-attempt hook and virtual MTA tests share: a
 * submitter that logs in over STARTTLS, the mail log line of one
 * recipient's attempt, the hook's own log, and what the receiving SMTP
 * servers on 127.0.0.20-29 recorded (EHLO name, source address, envelope).
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type SeenMessage, SmtpReceiver } from "../support/smtp_receiver.ts";
import { eventually, queuedId, type RunResult, type Server, submitMail } from "./harness.ts";

/** The status text of every failure of the hook, from the reference. */
export const HOOK_ERROR = "Error in pre_delivery_attempt_hook (see logfile)";

/** A submitter for `user` (password `pw-<local part>-1`) on a submission port. */
export function submitter(port: () => number, user = "alice@example.test") {
  const login = { user, password: `pw-${user.split("@")[0]}-1` };
  return (to: string[], extra: string[] = []): Promise<RunResult> =>
    submitMail(port(), login, user, to, extra);
}

/** The queue ID swaks saw in the final reply. */
export const queued = queuedId;

/** Escapes text for use in a RegExp. */
export function re(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A mail log line for one recipient's attempt. */
export function delivery(qid: string, rcpt: string, result: string, rest = ""): RegExp {
  return new RegExp(`qid=${qid} event=delivery to=<${re(rcpt)}> result=${result}${rest}`);
}

/** The hook's own log. */
export function readHookLog(server: Server): Promise<string> {
  return readFile(join(server.dataDir, "log", "pre-delivery-attempt.log"), "utf8").catch(() => "");
}

/** Waits until the hook's log has a line matching `match`, and returns it. */
export function hookLogLine(server: Server, match: RegExp, timeoutMs = 10_000): Promise<string> {
  return eventually(
    async () => (await readHookLog(server)).split("\n").find((l) => match.test(l)),
    timeoutMs,
    `a line matching ${match} in the hook's log`,
  );
}

/** The connection a message came over: its EHLO name and source address. */
export function seenBy(
  receiver: SmtpReceiver,
  message: SeenMessage,
): { ehlo: string; from: string } {
  const connection = receiver.connections.find((c) => c.id === message.connection);
  assert.ok(connection, "the receiver recorded the connection");
  return { ehlo: connection.ehlo, from: connection.remoteAddress.replace(/^::ffff:/, "") };
}

/** The message a receiver got for `rcpt`, once it has arrived. */
export function messageFor(
  receiver: SmtpReceiver,
  rcpt: string,
  timeoutMs = 15_000,
): Promise<SeenMessage> {
  return eventually(
    () => Promise.resolve(receiver.messages.find((m) => m.to.includes(rcpt))),
    timeoutMs,
    `the message to ${rcpt}`,
  );
}
