/**
 * The `postern` command line: its options, and the help text that
 * describes them. Parsing is node:util's `parseArgs`, strict, so an unknown
 * option is a usage error.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** The help text, printed by `--help` and after every usage error. */
export const USAGE = `Usage: postern <command> [options]

Commands:
  serve     Run the mail server (default configuration when no --config)
  check     Validate a configuration directory, and type-check its TypeScript
            hooks when deno is there; exit 0 valid, 1 not
  hook run EVENT --input FILE [--message FILE]
            Run one hook (post-data, alias-resolve, alias-exists,
            pre-delivery-attempt) as the server would, in the same sandbox,
            and print what it answered (exit 0 answered, 1 failed, 2 usage)
  dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519]
            Write a DKIM key to <config>/domains/DOMAIN/dkim/<selector>.pem
            and print the DNS TXT record to publish; the key signs once the
            record is published
  dkim status [DOMAIN]
            List the DKIM keys: selector, algorithm, creation date, whether
            the record is published, missing or mismatched, which one signs
  dns [DOMAIN]
            Print the DNS records each local domain needs (MX, SPF, DKIM,
            DMARC, and with mta_sts the mta-sts host, _mta-sts with the
            policy's id, _smtp._tls) and check each against DNS (exit 1
            when one is missing or differs)
  user add|remove USER@DOMAIN, user list DOMAIN
            Manage submission users (the password is read from a prompt or
            stdin, never from the command line)
  status    Show the running server's status (through its admin API)
            (--cluster: the live nodes of its fleet)
  reload    Make the running server reload its configuration now
  queue ls | show ID | retry ID | hold ID | release ID | bounce ID | rm ID
            List or act on the running server's queue
  version   Print the version

Options:
  --config DIR       Configuration directory (postern.yaml, domains/, certs/, hooks/)
  --data DIR         Data directory for the spool and mailboxes (default ./data)
  --listen ADDR      SMTP listen address, repeatable (overrides smtp.listen)
  --admin-listen A   admin API address, or "off" (overrides admin.listen)
  --input FILE       hook run: the hook's input as JSON (see hooks/mod.ts)
  --message FILE     hook run: the message, for post-data
  --selector S       dkim keygen: the selector (default: today's date, YYYYMMDD)
  --algorithm A      dkim keygen: rsa (2048 bits, default) or ed25519
  -h, --help         Show this help
`;

/** Parses `argv` (the arguments after the program); throws on an unknown or malformed option. */
export function parseCommandLine(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string" },
      data: { type: "string" },
      listen: { type: "string", multiple: true },
      "admin-listen": { type: "string" },
      input: { type: "string" },
      message: { type: "string" },
      selector: { type: "string" },
      algorithm: { type: "string" },
      cluster: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}

/** The options of a parsed command line. */
export type CommandOptions = ReturnType<typeof parseCommandLine>["values"];
