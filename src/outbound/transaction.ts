/**
 * One outbound SMTP transaction over an open session: the message sent
 * to a group of recipients as the server's extensions allow (SMTPUTF8,
 * 8BITMIME or a 7-bit downgrade), and the server's replies turned into a
 * delivery result per recipient.
 *
 * @module
 */

import type { DeliveryResult } from "../queue/mod.ts";
import { SmtpError, type SmtpSession } from "./client.ts";
import { downgradeTo7bit } from "./downgrade.ts";
import { statusOf } from "./dsn.ts";
import { type MessageContent, sendPlan } from "./eight_bit.ts";
import type { VirtualMta } from "./settings.ts";

/** The message of one attempt: its bytes, and what they need of a server. */
export interface AttemptMessage {
  open: () => AsyncIterable<Uint8Array>;
  /** Read once, when the first session is open. */
  content: () => Promise<MessageContent>;
  /** The sender declared SMTPUTF8 when it gave us the message. */
  smtputf8: boolean;
}

/** Recipients that go in one transaction. */
export interface RecipientGroup {
  mta: VirtualMta;
  /** The recipients' real domain: where the MX lookup goes. */
  domain: string;
  /** The domain routes and per-destination limits use (deliver_as_if_to_domain). */
  limitDomain: string;
  sender: string;
  members: Array<{ position: number; address: string }>;
}

/**
 * One transaction over an open session; `lost` when the connection
 * failed without a reply to the message (`afterData`: once it had
 * started to go out).
 */
export async function sendTransaction(
  session: SmtpSession,
  group: RecipientGroup,
  message: AttemptMessage,
): Promise<DeliveryResult[] | { lost: string; afterData: boolean }> {
  const remote = `${session.options.serverName}[${session.options.address}]`;
  const to = group.members.map((m) => m.address);
  let content: MessageContent;
  try {
    content = await message.content();
  } catch (err) {
    const error = `cannot read the message: ${err instanceof Error ? err.message : err}`;
    return group.members.map(() => ({ status: "deferred", error, dsnStatus: "4.3.0" }));
  }
  const plan = sendPlan(content, message.smtputf8, [group.sender, ...to], session);
  if ("cannot" in plan) {
    // RFC 6531 section 3.4; Postfix's status and text.
    return group.members.map(() => ({
      status: "failed",
      error: `SMTPUTF8 is required, but was not offered by host ${remote}`,
      dsnStatus: "5.6.7",
      remoteMta: session.options.serverName,
    }));
  }
  try {
    const outcome = await session.send(
      { from: group.sender, to },
      plan.downgrade ? downgradeTo7bit(message.open()) : message.open(),
      plan,
    );
    if (outcome.accepted.length === 0 && !(await session.reset())) session.close();
    return group.members.map((member): DeliveryResult => {
      const refused = outcome.rejected.get(member.address);
      if (!refused) return { status: "sent", detail: `${remote} ${outcome.response}` };
      const permanent = (refused.code ?? 400) >= 500;
      return {
        status: permanent ? "failed" : "deferred",
        error: `${remote} said: ${refused.response}`,
        dsnStatus: statusOf(refused.response, permanent),
        remoteMta: session.options.serverName,
      };
    });
  } catch (err) {
    const smtp = err instanceof SmtpError ? err : new SmtpError(err, "DATA");
    if (smtp.code === undefined && !smtp.malformed) {
      session.close();
      return { lost: `${remote} failed: ${smtp.message}`, afterData: smtp.afterData };
    }
    if (!(await session.reset())) session.close();
    return group.members.map(() => ({
      status: smtp.permanent ? "failed" : "deferred",
      // RFC 5321 section 4.2.1: a malformed reply ends the transaction
      // as a fatal error (5.5.0, a protocol error).
      error: smtp.malformed
        ? `${remote} sent a ${smtp.message}`
        : `${remote} said: ${smtp.message}`,
      dsnStatus: smtp.malformed ? "5.5.0" : statusOf(smtp.response ?? "", smtp.permanent),
      remoteMta: session.options.serverName,
    }));
  }
}
