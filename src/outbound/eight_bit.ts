/**
 * What a message needs of the server it goes to: BODY=8BITMIME for 8-bit
 * content (RFC 6152), SMTPUTF8 for UTF-8 addresses or header fields (RFC
 * 6531, RFC 6532). The intake does not record the BODY parameter a client
 * gave, so the message is read for 8-bit bytes, as Postfix's cleanup does
 * when it sets a message's encoding.
 *
 * @module
 */

/** What the bytes of a message hold. */
export interface MessageContent {
  /** A byte above 0x7f anywhere: the message needs 8BITMIME (RFC 6152 section 3). */
  eightBit: boolean;
  /** A byte above 0x7f in the header section. */
  eightBitHeader: boolean;
}

/**
 * Reads `message` (stopping as soon as the answer is known) for bytes
 * above 0x7f in its header section and in all of it.
 */
export async function scanMessage(message: AsyncIterable<Uint8Array>): Promise<MessageContent> {
  let inHeader = true;
  /** The header line being read has something besides CR. */
  let lineHasText = false;
  for await (const chunk of message) {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (byte > 0x7f) return { eightBit: true, eightBitHeader: inHeader };
      if (!inHeader) {
        // The rest of the chunk in one search: faster than byte by byte.
        const high = chunk.subarray(i).findIndex((b) => b > 0x7f);
        if (high >= 0) return { eightBit: true, eightBitHeader: false };
        break;
      }
      if (byte === 0x0a) {
        // RFC 5322 section 2.1: an empty line ends the header section.
        if (!lineHasText) inHeader = false;
        lineHasText = false;
      } else if (byte !== 0x0d) {
        lineHasText = true;
      }
    }
  }
  return { eightBit: false, eightBitHeader: false };
}

/**
 * The transaction needs SMTPUTF8 (RFC 6531 section 3.4): a non-ASCII
 * envelope address, or UTF-8 header fields in a message whose sender
 * declared SMTPUTF8 (RFC 6532). As in Postfix, a declared message that is
 * ASCII after all does not need it, and 8-bit header bytes without the
 * declaration are legacy 8-bit text, not UTF-8 (they need 8BITMIME only).
 */
export function needsSmtputf8(
  declared: boolean,
  addresses: readonly string[],
  content: MessageContent,
): boolean {
  return addresses.some((a) => /[^\p{ASCII}]/u.test(a)) || (declared && content.eightBitHeader);
}

/** How a message goes to a server: its MAIL FROM parameters and form, or that it cannot. */
export type SendPlan =
  | { smtputf8: boolean; eightBitMime: boolean; downgrade: boolean }
  | { cannot: "SMTPUTF8" };

/**
 * How a message with `content` goes to `server`, which supports the EHLO
 * keywords (upper case) it says:
 * - RFC 6531 section 3.4: what needs SMTPUTF8 goes with it, and cannot go
 *   to a server without it (Postfix bounces it, 5.6.7);
 * - RFC 6152 section 3: 8-bit data goes with BODY=8BITMIME, and to a server
 *   without 8BITMIME converted (`downgrade`), as Postfix converts it.
 */
export function sendPlan(
  content: MessageContent,
  declared: boolean,
  addresses: readonly string[],
  server: { supports(keyword: string): boolean },
): SendPlan {
  const smtputf8 = needsSmtputf8(declared, addresses, content);
  if (smtputf8 && !server.supports("SMTPUTF8")) return { cannot: "SMTPUTF8" };
  const downgrade = content.eightBit && !server.supports("8BITMIME");
  return { smtputf8, eightBitMime: content.eightBit && !downgrade, downgrade };
}
