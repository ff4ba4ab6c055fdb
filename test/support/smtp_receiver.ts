/**
 * A receiving SMTP server for outbound tests, on smtp-server: records each
 * connection from open to close (client address, EHLO name, TLS, AUTH,
 * messages carried; how many are open at once and the most ever) and each
 * transaction, and answers as a test tells it to (per recipient, at MAIL
 * FROM, or after DATA), so that retries and bounces can be driven from the
 * far side. It presents a self-signed certificate or a given one, and can
 * hold each message before answering, so that deliveries overlap.
 *
 * @module
 */

import { generate } from "selfsigned";
import { SMTPServer, type SMTPServerSession } from "smtp-server";

/** One SMTP connection as the receiver saw it. */
export interface SeenConnection {
  id: string;
  remoteAddress: string;
  ehlo: string;
  secure: boolean;
  user: string | undefined;
  /** Messages accepted over it. */
  messages: number;
  closed: boolean;
}

/** One accepted message. */
export interface SeenMessage {
  connection: string;
  remoteAddress: string;
  secure: boolean;
  from: string;
  to: string[];
  data: string;
}

/** A reply the test wants: code and text (with its enhanced code). */
export interface Answer {
  code: number;
  text: string;
}

/** How the receiver answers; each returns undefined to accept. */
export interface ReceiverBehaviour {
  mailFrom?: (from: string) => Answer | undefined;
  rcptTo?: (to: string) => Answer | undefined;
  data?: (message: { from: string; to: string[]; data: string }) => Answer | undefined;
}

/** Settings of a receiver. */
export interface ReceiverOptions {
  host: string;
  port: number;
  /** Offer STARTTLS (with a self-signed certificate for `tlsName`). Default true. */
  starttls?: boolean;
  /** Implicit TLS from the first byte. */
  implicitTls?: boolean;
  /** Name (and IP) the certificate is for. Default "mx.test". */
  tlsName?: string;
  /** Require AUTH with these credentials. */
  auth?: { user: string; pass: string };
  /** The certificate to present instead of a self-signed one (e.g. a test CA's). */
  tls?: { key: string; cert: string };
  /** Wait this long after a message's data before accepting it. Default 0. */
  holdMs?: number;
}

/** A certificate for `name` (and 127.0.0.1), self-signed. */
export async function testCertificate(name: string): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: "commonName", value: name }], {
    keySize: 2048,
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: true },
      {
        name: "subjectAltName",
        altNames: [{ type: 2, value: name }, { type: 7, ip: "127.0.0.1" }],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** A running receiver. */
export class SmtpReceiver {
  readonly connections: SeenConnection[] = [];
  readonly messages: SeenMessage[] = [];
  behaviour: ReceiverBehaviour = {};
  /** Connections open now. */
  open = 0;
  /** The most connections ever open at once. */
  peak = 0;
  readonly certificate: { cert: string; key: string };
  #server!: SMTPServer;
  #waiters: Array<{ count: number; resolve: () => void }> = [];

  private constructor(certificate: { cert: string; key: string }) {
    this.certificate = certificate;
  }

  /** Starts a receiver on `options.host:options.port`. */
  static async start(options: ReceiverOptions): Promise<SmtpReceiver> {
    const certificate = options.tls ?? await testCertificate(options.tlsName ?? "mx.test");
    const receiver = new SmtpReceiver(certificate);
    const connection = (session: SMTPServerSession): SeenConnection | undefined =>
      receiver.connections.find((c) => c.id === session.id);
    const refuse = (answer: Answer | undefined): Error | undefined => {
      if (!answer) return undefined;
      return Object.assign(new Error(answer.text), { responseCode: answer.code });
    };
    const server = new SMTPServer({
      secure: options.implicitTls === true,
      key: certificate.key,
      cert: certificate.cert,
      hideSTARTTLS: options.starttls === false,
      authOptional: options.auth === undefined,
      allowInsecureAuth: false,
      authMethods: ["PLAIN", "LOGIN"],
      disabledCommands: options.auth === undefined ? ["AUTH"] : [],
      logger: false,
      size: 100 * 1024 * 1024,
      onConnect(session, callback) {
        receiver.connections.push({
          id: session.id,
          remoteAddress: session.remoteAddress,
          ehlo: "",
          secure: session.secure,
          user: undefined,
          messages: 0,
          closed: false,
        });
        receiver.open++;
        receiver.peak = Math.max(receiver.peak, receiver.open);
        callback();
      },
      onClose(session) {
        const seen = connection(session);
        if (seen && !seen.closed) {
          seen.closed = true;
          receiver.open--;
        }
      },
      onAuth(auth, session, callback) {
        if (auth.username === options.auth?.user && auth.password === options.auth?.pass) {
          const seen = connection(session);
          if (seen) seen.user = auth.username;
          callback(null, { user: auth.username });
        } else {
          callback(Object.assign(new Error("5.7.8 Bad credentials"), { responseCode: 535 }));
        }
      },
      onMailFrom(address, session, callback) {
        const seen = connection(session);
        if (seen) {
          seen.ehlo = session.hostNameAppearsAs;
          seen.secure = session.secure;
        }
        callback(refuse(receiver.behaviour.mailFrom?.(address.address)) ?? null);
      },
      onRcptTo(address, _session, callback) {
        callback(refuse(receiver.behaviour.rcptTo?.(address.address)) ?? null);
      },
      onData(stream, session, callback) {
        const chunks: Uint8Array[] = [];
        stream.on("data", (chunk: Uint8Array) => chunks.push(chunk));
        stream.on("end", () => {
          const message = {
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
            to: session.envelope.rcptTo.map((r) => r.address),
            data: Buffer.concat(chunks).toString("utf8"),
          };
          const answer = receiver.behaviour.data?.(message);
          if (answer) return callback(refuse(answer)!);
          setTimeout(() => {
            const seen = connection(session);
            if (seen) seen.messages++;
            receiver.messages.push({
              connection: session.id,
              remoteAddress: session.remoteAddress,
              secure: session.secure,
              ...message,
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
