/**
 * An address's domain as the client wrote it. smtp-server turns every
 * A-label of a `MAIL FROM` or `RCPT TO` domain into its U-label
 * (`xn--bcher-kva.test` becomes `bücher.test`), so an address sent in
 * plain ASCII came out non-ASCII: it was logged, quoted in replies and in
 * the `Received:` field that way, and stored so in the envelope, where
 * outbound delivery then asked the next server for SMTPUTF8 and bounced the
 * message when it had none. Nothing in such a transaction needs SMTPUTF8:
 * an A-label is an ordinary ASCII domain (RFC 5890 section 2.3.2.1), and
 * RFC 6531 section 3.2 leaves the choice of form to the client.
 *
 * @module
 */

const ASCII = /^[^\u0080-\uffff]*$/;

/**
 * `parsed` (an address smtp-server took from the command line `command`)
 * with its domain as written on that line, when that was ASCII and
 * smtp-server made it non-ASCII; otherwise `parsed` unchanged.
 */
export function domainAsSent(parsed: string, command: string): string {
  const at = parsed.lastIndexOf("@");
  if (at < 0 || ASCII.test(parsed.slice(at + 1))) return parsed;
  // The path is the first <…> on the line (RFC 5321 section 4.1.2), and
  // its domain follows the last "@": a source route's domains come first,
  // and a quoted local part with an "@" lies before it.
  const path = /<([^<>]*)>/.exec(command)?.[1];
  if (path === undefined) return parsed;
  const sent = path.slice(path.lastIndexOf("@") + 1);
  if (!ASCII.test(sent) || !/^[a-z0-9.-]+$/i.test(sent)) return parsed;
  return `${parsed.slice(0, at)}@${sent}`;
}
