/**
 * A scripted SMTP server for outbound tests that need a server to misbehave
 * in ways smtp-server will not: bytes that are not TLS after the 220 to
 * STARTTLS, a reply trickled a byte at a time, malformed reply codes, a
 * connection dropped after the data. Each connection runs a script; the
 * script reads the client's lines and the message (line by line, as a real
 * server does: a lone "." right after DATA is an empty message) and writes
 * what it likes. Everything each connection saw is kept for assertions.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createServer, type Server, type Socket } from "node:net";

/** One connection, as the script drives it. */
export class FakeMxConnection {
  readonly socket: Socket;
  /** "C: …" (from the client) and "S: …" (written) lines, and notes. */
  readonly log: string[] = [];
  /** The messages whose data came in full over this connection. */
  readonly messages: FakeMxMessage[] = [];
  /** Resolves when the connection is closed (by either side). */
  readonly closed: Promise<void>;
  #buffer = "";
  #waiters: Array<() => void> = [];
  #isClosed = false;

  constructor(socket: Socket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => {
      socket.on("close", () => {
        this.#isClosed = true;
        resolve();
        this.#wake();
      });
    });
    socket.on("error", () => {});
    socket.on("data", (chunk: Uint8Array) => {
      // One character per byte (TextDecoder's "latin1" is windows-1252).
      this.#buffer += Buffer.from(chunk).toString("latin1");
      this.#wake();
    });
  }

  /** True once the connection is closed. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Writes `text` as it is. */
  send(text: string | Uint8Array): void {
    if (typeof text === "string") this.log.push(`S: ${text.trimEnd()}`);
    if (!this.socket.destroyed) this.socket.write(text);
  }

  /** The client's next line (without CRLF); undefined once the connection closed. */
  async line(): Promise<string | undefined> {
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl).replace(/\r$/, "");
        this.#buffer = this.#buffer.slice(nl + 1);
        this.log.push(`C: ${line}`);
        return line;
      }
      if (this.#isClosed) return undefined;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** The message after a 354, up to its lone "." line (unstuffed); undefined if closed first. */
  async data(): Promise<string | undefined> {
    const lines: string[] = [];
    for (;;) {
      const next = await this.nextDataLine();
      if (next === undefined) return undefined;
      if (next === ".") break;
      lines.push(next.startsWith(".") ? next.slice(1) : next);
    }
    const message = lines.map((l) => `${l}\r\n`).join("");
    this.log.push(`C: <data ${message.length} bytes>`);
    return message;
  }

  /** Closes the connection from this side. */
  destroy(): void {
    this.socket.destroy();
  }

  private async nextDataLine(): Promise<string | undefined> {
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl).replace(/\r$/, "");
        this.#buffer = this.#buffer.slice(nl + 1);
        return line;
      }
      if (this.#isClosed) return undefined;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

/** A message the fake took: the envelope as given and the data. */
export interface FakeMxMessage {
  mailFrom: string;
  to: string[];
  data: string;
}

/** What a standard dialogue answers, each a reply line or lines (without the last CRLF). */
export interface Dialogue {
  /** The EHLO reply. Default: 250-fake.mx, PIPELINING, 8BITMIME. */
  ehlo?: string;
  /** The reply to STARTTLS, or what to do instead: "garbage" (plain bytes), "alert" (a TLS alert). */
  starttls?: "garbage" | "alert";
  /** The reply to RCPT TO for `address`. Default "250 2.1.5 ok". */
  rcpt?: (address: string) => string;
  /** Called once the message is in; returns the reply, or "close" to hang up without one. */
  afterData?: (message: FakeMxMessage, connection: FakeMxConnection) => string | "close";
  /** Called when MAIL FROM arrives; may write the reply itself and return true. */
  mail?: (line: string, connection: FakeMxConnection) => Promise<boolean> | boolean;
}

/** A well-behaved server's dialogue, with the changes `options` asks for. */
export function dialogue(options: Dialogue = {}): (c: FakeMxConnection) => Promise<void> {
  return async (c) => {
    c.send("220 fake.mx ESMTP\r\n");
    let mailFrom = "";
    let to: string[] = [];
    for (let line = await c.line(); line !== undefined; line = await c.line()) {
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === "EHLO" || verb === "HELO") {
        c.send(`${options.ehlo ?? "250-fake.mx\r\n250-PIPELINING\r\n250 8BITMIME"}\r\n`);
      } else if (verb === "STAR" && options.starttls) {
        c.send("220 2.0.0 go ahead\r\n");
        if (options.starttls === "garbage") c.send("this is not TLS\r\n");
        // A fatal handshake_failure alert (TLS 1.2 record: type 21, level 2, description 40).
        else c.send(new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]));
        c.log.push("S: <not a TLS handshake>");
        await c.line();
        return c.destroy();
      } else if (verb === "MAIL") {
        if (await options.mail?.(line, c)) continue;
        mailFrom = line;
        to = [];
        c.send("250 2.1.0 ok\r\n");
      } else if (verb === "RCPT") {
        const address = /<(.*)>/.exec(line)?.[1] ?? "";
        const reply = options.rcpt?.(address) ?? "250 2.1.5 ok";
        if (reply.startsWith("250")) to.push(address);
        c.send(`${reply}\r\n`);
      } else if (verb === "DATA") {
        c.send("354 go ahead\r\n");
        const data = await c.data();
        if (data === undefined) return;
        c.messages.push({ mailFrom, to, data });
        const reply = to.length === 0
          ? "554 5.5.1 no valid recipients"
          : options.afterData?.({ mailFrom, to, data }, c) ?? "250 2.0.0 accepted";
        if (reply === "close") return c.destroy();
        c.send(`${reply}\r\n`);
      } else if (verb === "QUIT") {
        c.send("221 2.0.0 bye\r\n");
        return c.destroy();
      } else if (verb === "RSET" || verb === "NOOP") {
        c.send("250 2.0.0 ok\r\n");
      } else {
        c.send("502 5.5.2 not here\r\n");
      }
    }
  };
}

/** A scripted server on `host:port`. */
export class FakeMx {
  /** Every connection so far, in the order they came. */
  readonly connections: FakeMxConnection[];
  #server: Server;

  private constructor(server: Server, connections: FakeMxConnection[]) {
    this.#server = server;
    this.connections = connections;
  }

  /** Listens on `host:port`; each connection runs `script`. */
  static async start(
    host: string,
    port: number,
    script: (c: FakeMxConnection) => Promise<void>,
  ): Promise<FakeMx> {
    const connections: FakeMxConnection[] = [];
    const server = createServer((socket) => {
      const connection = new FakeMxConnection(socket);
      connections.push(connection);
      script(connection)
        .catch((err) => connection.log.push(`script error: ${err}`))
        .finally(() => {
          if (!socket.destroyed) socket.end();
        });
    });
    const fake = new FakeMx(server, connections);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    return fake;
  }

  /** The port it listens on (the kernel's choice when started on port 0). */
  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  /** Every line of every connection, in order, for failure messages. */
  get transcript(): string {
    return this.connections.map((c, i) => `#${i}: ${c.log.join(" | ")}`).join("\n");
  }

  /** Closes every connection and stops listening. */
  async close(): Promise<void> {
    for (const connection of this.connections) connection.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
