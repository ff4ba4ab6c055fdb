/**
 * The free-space check at MAIL FROM: room for the declared SIZE plus a
 * reserve (Postfix's `queue_minfree`), or a temporary refusal before the
 * client sends a message that could not be stored.
 *
 * @module
 */

import type { SMTPServerAddress } from "smtp-server";
import type { FreeSpace } from "../queue/mod.ts";
import { reply, type SmtpReply } from "./reply.ts";

/**
 * RFC 1870 section 6.1: a size the server cannot accommodate now, for lack
 * of storage, gets 452; RFC 3463 section 3.4: X.3.1 "mail system full".
 * The text is Postfix's.
 */
export const insufficientStorage: SmtpReply = reply(452, "4.3.1", "Insufficient system storage");

/** The size the client declared with the SIZE parameter (RFC 1870), or 0. */
export function declaredSize(address: SMTPServerAddress): number {
  const args: unknown = address.args;
  if (typeof args !== "object" || args === null) return 0;
  const size = (args as Record<string, unknown>)["SIZE"];
  return typeof size === "string" && /^\d{1,15}$/.test(size) ? Number(size) : 0;
}

/**
 * The refusal for a MAIL FROM when less than the declared size plus
 * `reserve` bytes is free; undefined when there is room, or when the file
 * system cannot be measured (a full disk during DATA still gets 451 and
 * loses nothing).
 */
export async function storageRefusal(
  space: FreeSpace | undefined,
  address: SMTPServerAddress,
  reserve: number,
): Promise<SmtpReply | undefined> {
  if (space === undefined) return undefined;
  const free = await space.available();
  if (free === undefined) return undefined;
  return free < declaredSize(address) + reserve ? insufficientStorage : undefined;
}
