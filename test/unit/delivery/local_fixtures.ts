/**
 * What the LocalCourier tests share: one local domain `ex.test`, a message
 * body, its arrival time, and a forward callback that answers per target.
 */

import { type LocalDomain, parseAliases, RecipientResolver } from "../../../src/aliases/mod.ts";
import type { LocalCourierOptions } from "../../../src/delivery/mod.ts";
import type { DeliveryResult, RecipientRef } from "../../../src/queue/mod.ts";

/** Address options of the domain: `+` tags, dots dropped. */
export const OPTIONS = { suffixSeparators: "+", dropCharacters: "." };
/** When the test messages arrived. */
export const RECEIVED_AT = "2026-01-02T03:04:05.000Z";
/** A small message with CRLF line ends, as the spool holds it. */
export const BODY = "Subject: test\r\nFrom: sender@client.test\r\n\r\nline one\r\nline two\r\n";

/** A resolver for `ex.test` with these aliases and users. */
export function resolverFor(aliases: string, users = ["alice", "bob"]): RecipientResolver {
  const domain: LocalDomain = {
    name: "ex.test",
    anyUser: false,
    users: new Set(users),
    aliases: parseAliases(aliases, "ex.test"),
  };
  return new RecipientResolver(new Map([["ex.test", domain]]), OPTIONS);
}

/** A forward callback that answers each target of the call with `answer`. */
export function eachTarget(
  answer: (recipient: RecipientRef) => DeliveryResult,
): NonNullable<LocalCourierOptions["forward"]> {
  return (_item, recipients) => Promise.resolve(recipients.map(answer));
}
