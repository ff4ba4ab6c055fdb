/**
 * A scripted LMTP server (RFC 2033) on test/support/fake_mx.ts, for tests
 * that need a mail store to misbehave on cue, as Dovecot will not: answer
 * the data for some recipients and then die before the others' replies.
 * The script decides the replies to MAIL FROM, each RCPT TO and DATA, and
 * each recipient's reply to the data; the server writes the latter in order
 * and hangs up (or falls silent) when the script gave fewer than there are
 * recipients.
 *
 * @module
 */

import type { FakeMxConnection, FakeMxMessage } from "./fake_mx.ts";

/** What an LMTP dialogue answers; each reply without its CRLF. */
export interface LmtpScript {
  /** The reply to MAIL FROM, for the line as sent. Default "250 2.1.0 ok". */
  mail?: (line: string) => string;
  /** The reply to RCPT TO for `address`. Default "250 2.1.5 ok". */
  rcpt?: (address: string) => string;
  /**
   * The reply to DATA when a recipient was accepted. Default "354 go
   * ahead"; any other reply ends the transaction there.
   */
  data?: () => string;
  /**
   * The replies to the data, one per recipient accepted at RCPT, in their
   * order (RFC 2033 section 4.2). Fewer than the recipients: the connection
   * is closed after the last one given. Default: 250 for each.
   */
  afterData?: (message: FakeMxMessage, connection: FakeMxConnection) => string[];
  /** Instead of closing the connection after too few replies, say nothing more until the client does. */
  silent?: boolean;
  /** Close the connection at RSET instead of answering it (a store restarting). */
  closeAtRset?: boolean;
  /** The reply to RSET. Default "250 2.0.0 ok". */
  rset?: () => string;
  /** Say nothing to QUIT and keep the connection open (a store that hangs). */
  ignoreQuit?: boolean;
}

/** An LMTP server's dialogue, answering as `script` says. */
export function lmtpDialogue(script: LmtpScript = {}): (c: FakeMxConnection) => Promise<void> {
  return async (c) => {
    c.send("220 fake.lmtp LMTP\r\n");
    let mailFrom = "";
    let to: string[] = [];
    for (let line = await c.line(); line !== undefined; line = await c.line()) {
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === "LHLO") c.send("250-fake.lmtp\r\n250 PIPELINING\r\n");
      else if (verb === "MAIL") {
        const reply = script.mail?.(line) ?? "250 2.1.0 ok";
        // A refused sender starts no transaction: a RCPT then gets 503 (RFC 5321 section 3.3).
        mailFrom = reply.startsWith("250") ? line : "";
        to = [];
        c.send(`${reply}\r\n`);
      } else if (verb === "RCPT") {
        const address = /<(.*)>/.exec(line)?.[1] ?? "";
        const reply = mailFrom === ""
          ? "503 5.5.1 MAIL first"
          : script.rcpt?.(address) ?? "250 2.1.5 ok";
        if (reply.startsWith("250")) to.push(address);
        c.send(`${reply}\r\n`);
      } else if (verb === "DATA") {
        if (to.length === 0) {
          c.send("503 5.5.1 no valid recipients\r\n");
          continue;
        }
        const reply = script.data?.() ?? "354 go ahead";
        c.send(`${reply}\r\n`);
        if (!reply.startsWith("354")) {
          [mailFrom, to] = ["", []];
          continue;
        }
        const data = await c.data();
        if (data === undefined) return;
        const message = { mailFrom, to, data };
        c.messages.push(message);
        [mailFrom, to] = ["", []];
        const replies = script.afterData?.(message, c) ??
          message.to.map((address) => `250 2.0.0 <${address}> saved`);
        for (const reply of replies.slice(0, message.to.length)) c.send(`${reply}\r\n`);
        if (replies.length >= message.to.length) continue;
        if (script.silent) c.log.push("silent");
        return script.silent ? await c.closed : c.destroy();
      } else if (verb === "QUIT" && script.ignoreQuit) {
        c.log.push("QUIT ignored");
      } else if (verb === "QUIT") {
        c.send("221 2.0.0 bye\r\n");
        return c.destroy();
      } else if (verb === "RSET" && script.closeAtRset) {
        c.log.push("closed at RSET");
        return c.destroy();
      } else if (verb === "RSET") {
        [mailFrom, to] = ["", []];
        c.send(`${script.rset?.() ?? "250 2.0.0 ok"}\r\n`);
      } else if (verb === "NOOP") {
        c.send("250 2.0.0 ok\r\n");
      } else {
        c.send("502 5.5.2 not here\r\n");
      }
    }
  };
}
