/**
 * A receiving SMTP server, on smtp-server, that follows each connection
 * from open to close: how many are open at once (and the most ever), and
 * how many messages each one carried. It can present a given key and
 * certificate (one a test CA signed, for verified TLS) and hold each
 * message for a while before answering, so that deliveries overlap.
 *
 * @module
 */

import { SMTPServer } from "smtp-server";
import type { KeyPair } from "./test_ca.ts";
import { testCertificate } from "./smtp_receiver.ts";

/** One connection, from open to close. */
export interface TrackedConnection {
  id: string;
  remoteAddress: string;
  ehlo: string;
  secure: boolean;
  /** Messages accepted over it. */
  messages: number;
  closed: boolean;
}

/** One accepted message. */
export interface TrackedMessage {
  connection: string;
  secure: boolean;
  from: string;
  to: string[];
}

/** Settings of a {@linkcode TrackingReceiver}. */
export interface TrackingReceiverOptions {
  host: string;
  port: number;
  /** Offer STARTTLS. Default true. */
  starttls?: boolean;
  /** The certificate to present. Default: self-signed for "mx.test". */
  tls?: KeyPair;
  /** Wait this long after a message's data before accepting it. Default 0. */
  holdMs?: number;
}

/** A running receiver. */
export class TrackingReceiver {
  readonly connections: TrackedConnection[] = [];
  readonly messages: TrackedMessage[] = [];
  /** Connections open now. */
  open = 0;
  /** The most connections ever open at once. */
  peak = 0;
  #server!: SMTPServer;
  #waiters: Array<{ count: number; resolve: () => void }> = [];

  /** Starts a receiver on `options.host:options.port`. */
  static async start(options: TrackingReceiverOptions): Promise<TrackingReceiver> {
    const tls = options.tls ?? await testCertificate("mx.test");
    const receiver = new TrackingReceiver();
    const find = (id: string) => receiver.connections.find((c) => c.id === id);
    const server = new SMTPServer({
      key: tls.key,
      cert: tls.cert,
      hideSTARTTLS: options.starttls === false,
      authOptional: true,
      disabledCommands: ["AUTH"],
      logger: false,
      onConnect(session, callback) {
        receiver.connections.push({
          id: session.id,
          remoteAddress: session.remoteAddress,
          ehlo: "",
          secure: session.secure,
          messages: 0,
          closed: false,
        });
        receiver.open++;
        receiver.peak = Math.max(receiver.peak, receiver.open);
        callback();
      },
      onClose(session) {
        const seen = find(session.id);
        if (seen && !seen.closed) {
          seen.closed = true;
          receiver.open--;
        }
      },
      onMailFrom(_address, session, callback) {
        const seen = find(session.id);
        if (seen) {
          seen.ehlo = session.hostNameAppearsAs;
          seen.secure = session.secure;
        }
        callback();
      },
      onData(stream, session, callback) {
        stream.resume();
        stream.on("end", () => {
          setTimeout(() => {
            const seen = find(session.id);
            if (seen) seen.messages++;
            receiver.messages.push({
              connection: session.id,
              secure: session.secure,
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
              to: session.envelope.rcptTo.map((r) => r.address),
            });
            receiver.#notify();
            callback(null, "2.0.0 Ok: queued");
          }, options.holdMs ?? 0);
        });
      },
    });
    receiver.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host, () => resolve());
    });
    return receiver;
  }

  /** Resolves once `count` messages have arrived, or rejects after `timeoutMs`. */
  waitForMessages(count: number, timeoutMs = 20_000): Promise<void> {
    if (this.messages.length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.messages.length} of ${count} messages in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiters.push({
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /** Stops listening and closes connections. */
  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #notify(): void {
    for (const waiter of [...this.#waiters]) {
      if (this.messages.length >= waiter.count) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  }
}
