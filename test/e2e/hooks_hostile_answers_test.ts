/**
 * A hostile module hook's answers on the wire (issue 15, review): a
 * post-data hook that copies a sender's text into its reject or defer
 * message cannot forge SMTP reply lines with CRLF, a bare CR or LF, or
 * Unicode line separators. The client gets exactly one reply to its DATA,
 * on one line, and the next command's reply is the next line it reads.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { cleanup, rawSession, type Server, startServer } from "./harness.ts";

/** Rejects, or defers, with the text the message's Subject names (decoded from JSON). */
const ANSWER_HOOK = `
export default async function (input) {
  const text = await new Response(input.message).text();
  const subject = /^Subject: (.*)$/m.exec(text)?.[1] ?? '""';
  const [action, message] = JSON.parse(subject);
  return { action, message };
}
`;

/** Texts that would add reply lines if they reached the socket as they are. */
const FORGERIES = [
  "no\r\n250 2.0.0 Ok: queued as FORGED",
  "no\n250 2.0.0 Ok: queued as FORGED",
  "no\r250 2.0.0 Ok: queued as FORGED",
  "no\u2028250 2.0.0 Ok: queued as FORGED\u0085250 x",
  "\r\n250 2.0.0 Ok: queued as FORGED\r\n",
];

describe("hostile hook: reply text", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      config: {
        "domains/example.test/users": "alice\n",
        "hooks/post-data.ts": ANSWER_HOOK,
      },
    });
  });
  after(() => cleanup(server));

  for (const [action, code] of [["reject", "554 5.7.1"], ["defer", "451 4.3.0"]] as const) {
    it(`a ${action} message holding line breaks is one reply line`, async () => {
      const session = await rawSession(server);
      try {
        assert.match(await session.read(), /^220 /);
        assert.match(await session.send("EHLO client.test"), /^250 /);
        for (const forgery of FORGERIES) {
          assert.match(await session.send("MAIL FROM:<carol@client.test>"), /^250 /);
          assert.match(await session.send("RCPT TO:<alice@example.test>"), /^250 /);
          assert.match(await session.send("DATA"), /^354 /);
          // ASCII JSON: the Subject is one line whatever the text holds.
          const subject = JSON.stringify([action, forgery]).replace(
            /[^\x20-\x7e]/g,
            (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
          );
          const reply = await session.send(`Subject: ${subject}\r\n\r\nbody\r\n.`);
          assert.ok(reply.startsWith(`${code} `), `${JSON.stringify(forgery)}: ${reply}`);
          assert.match(reply, /^[\x20-\x7e]+$/, "printable ASCII only");
          assert.match(reply, /no|FORGED/);
          // The next line read is NOOP's own reply, not a forged one.
          assert.match(await session.send("NOOP"), /^250 /);
        }
      } finally {
        session.close();
      }
    });
  }
});
