/**
 * A mail store for end-to-end tests that records what Postern's LMTP
 * courier sends, byte for byte, as it is on the wire: every command line,
 * and the DATA of each transaction still dot-stuffed. It understands just
 * enough LMTP (RFC 2033) to accept everything, with one reply per recipient
 * after DATA; it offers no extensions, so nothing is pipelined.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createServer, type Server, type Socket } from "node:net";

/** One message as the store received it. */
export interface CapturedMessage {
  /** The bytes between DATA's 354 and the final CRLF.CRLF (latin1), dot-stuffing kept. */
  wire: string;
  recipients: string[];
}

/** A running capture store. */
export interface LmtpCapture {
  /** `127.0.0.1:port`, for `delivery.lmtp`. */
  address: string;
  /** Every command line received, in order, on every connection. */
  commands: string[];
  messages: CapturedMessage[];
  /** Resolves when `count` messages have arrived in all; rejects after `timeoutMs`. */
  waitForMessages(count: number, timeoutMs?: number): Promise<CapturedMessage[]>;
  close(): Promise<void>;
}

/** Starts a capture store on a loopback port the kernel picks. */
export async function startLmtpCapture(): Promise<LmtpCapture> {
  const commands: string[] = [];
  const messages: CapturedMessage[] = [];
  const waiters: Array<{ count: number; resolve: (m: CapturedMessage[]) => void }> = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const sockets = new Set<Socket>();
  const arrived = (message: CapturedMessage) => {
    messages.push(message);
    for (const waiter of [...waiters]) {
      if (messages.length >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(messages);
      }
    }
  };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer = "";
    let inData = false;
    let recipients: string[] = [];
    const reply = (line: string) => socket.write(line + "\r\n");
    socket.write("220 capture.test LMTP\r\n");
    socket.on("data", (chunk: Uint8Array) => {
      buffer += Buffer.from(chunk).toString("latin1");
      while (true) {
        if (inData) {
          // The DATA began right after the 354, so a CRLF is put before it
          // for the search: an empty message is "." at once.
          const end = ("\r\n" + buffer).indexOf("\r\n.\r\n");
          if (end < 0) return;
          const wire = ("\r\n" + buffer).slice(2, end + 2);
          buffer = ("\r\n" + buffer).slice(end + 5);
          inData = false;
          arrived({ wire, recipients });
          for (const _ of recipients) reply("250 2.0.0 stored");
          recipients = [];
          continue;
        }
        const nl = buffer.indexOf("\r\n");
        if (nl < 0) return;
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        commands.push(line);
        const verb = line.split(" ", 1)[0]!.toUpperCase();
        if (verb === "LHLO") reply("250 capture.test");
        else if (verb === "MAIL") reply("250 2.1.0 ok");
        else if (verb === "RCPT") {
          recipients.push(line.replace(/^RCPT TO:\s*/i, ""));
          reply("250 2.1.5 ok");
        } else if (verb === "DATA") {
          inData = true;
          reply("354 go ahead");
        } else if (verb === "QUIT") {
          reply("221 2.0.0 bye");
          socket.end();
        } else if (verb === "RSET" || verb === "NOOP") reply("250 2.0.0 ok");
        else reply("500 5.5.2 unknown command");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const bound = server.address();
  const port = typeof bound === "object" && bound ? bound.port : 0;
  return {
    address: `127.0.0.1:${port}`,
    commands,
    messages,
    waitForMessages: (count, timeoutMs = 15_000) => {
      if (messages.length >= count) return Promise.resolve(messages);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`${messages.length} of ${count} messages within ${timeoutMs} ms`));
        }, timeoutMs);
        timers.add(timer);
        const waiter = {
          count,
          resolve: (all: CapturedMessage[]) => {
            clearTimeout(timer);
            timers.delete(timer);
            resolve(all);
          },
        };
        waiters.push(waiter);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
