/**
 * What goes over one SMTP connection, seen from inside nodemailer's
 * SMTPConnection: each command it writes. The session learns from it,
 * without matching error texts, whether STARTTLS was sent.
 *
 * nodemailer has no public hook for this, so the wire wraps a method of
 * the connection object: `_sendCommand` (every command line). `attach`
 * checks that it exists, so an upgrade that renames it fails at the first
 * connection, and the outbound tests with it.
 *
 * @module
 */

/** The method of nodemailer's SMTPConnection the wire wraps. */
interface Tappable {
  _sendCommand(str: string, logStr?: string): void;
}

/** Observes the dialogue of one nodemailer connection. */
export class Wire {
  /** STARTTLS was sent (RFC 3207): a failure from here on is a failed handshake. */
  starttlsSent = false;

  private constructor() {}

  /** Wraps `connection`'s command method; call before `connect()`. */
  static attach(connection: object): Wire {
    const target = connection as Partial<Tappable>;
    if (typeof target._sendCommand !== "function") {
      throw new TypeError(
        "Cannot watch the SMTP dialogue: nodemailer's SMTPConnection has no _sendCommand",
      );
    }
    const wire = new Wire();
    const send = target._sendCommand.bind(connection);
    target._sendCommand = (str, logStr) => send(wire.#sent(str), logStr);
    return wire;
  }

  #sent(str: string): string {
    if (/^STARTTLS$/i.test(str)) this.starttlsSent = true;
    return str;
  }
}
