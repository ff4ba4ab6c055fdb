/**
 * What the message authentication tests share: the zone of the loopback
 * DNS server (SPF, DKIM and DMARC records for every case), the server's
 * configuration and post-data hook, the main test server (IPv4 and IPv6
 * loopback, DKIM keys in the zone), swaks transactions against it, and
 * readers of the delivered message's header fields.
 *
 * @module
 */

import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  dkimKeyDir,
  dkimSign,
  type GeneratedDkimKey,
  generateDkimKey,
} from "../../src/auth/mod.ts";
import { startDnsServer, type TestDnsServer, type Zone } from "../support/dns_server.ts";
import { ipv6Loopback, startListening } from "../support/start_listening.ts";
import {
  eventually,
  maildirMessages,
  run,
  type RunResult,
  type Server,
  tempDir,
} from "./harness.ts";

/** Our host name: the authserv-id and the "by" of Received. */
export const HOSTNAME = "mx.postern.test";

/** Eleven includes: one DNS-querying term more than RFC 7208 section 4.6.4 allows. */
const ELEVEN_INCLUDES = Array.from({ length: 11 }, (_, i) => `include:l${i}.lookups.test`)
  .join(" ");

/**
 * The zone. Every record that must not match ends in a mechanism that
 * would match 127.0.0.1 if the check before it were skipped, so a broken
 * limit or a wrong expansion shows as a different result.
 */
export const ZONE: Zone = {
  "pass.test": { TXT: ["v=spf1 ip4:127.0.0.1 -all"] },
  "fail.test": { TXT: ["v=spf1 ip4:192.0.2.1 exp=why.fail.test -all"] },
  "why.fail.test": { TXT: ["%{i} is not one of %{d}'s mail servers"] },
  "bare-fail.test": { TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
  "softfail.test": { TXT: ["v=spf1 ip4:192.0.2.1 ~all"] },
  "neutral.test": { TXT: ["v=spf1 ip4:192.0.2.1 ?all"] },
  "none.test": { TXT: ["google-site-verification=abc"], A: ["192.0.2.1"] },
  "timeout.test": { TXT: ["v=spf1 +all"], mode: "timeout" },
  "servfail.test": { TXT: ["v=spf1 +all"], mode: "servfail" },
  "garbage.test": { TXT: ["v=spf1 +all"], mode: "garbage" },
  "syntax.test": { TXT: ["v=spf1 ip4:127.0.0.1/33 +all"] },
  "lookups.test": { TXT: [`v=spf1 ${ELEVEN_INCLUDES} ip4:127.0.0.1 -all`] },
  ...Object.fromEntries(
    Array.from({ length: 11 }, (_, i) => [`l${i}.lookups.test`, { TXT: ["v=spf1 -all"] }]),
  ),
  "void.test": {
    TXT: ["v=spf1 a:gone1.void.test a:gone2.void.test a:gone3.void.test ip4:127.0.0.1 -all"],
  },
  "include.test": { TXT: ["v=spf1 include:_spf.include.test -all"] },
  "_spf.include.test": { TXT: ["v=spf1 ip4:192.0.2.0/24 ip4:127.0.0.0/8 -all"] },
  "include-miss.test": { TXT: ["v=spf1 include:bare-fail.test -all"] },
  "redirect.test": { TXT: ["v=spf1 ip4:192.0.2.1 redirect=pass.test"] },
  "redirect-miss.test": { TXT: ["v=spf1 ip4:192.0.2.2 redirect=bare-fail.test"] },
  "macro.test": { TXT: ["v=spf1 exists:%{i}._spf.%{d} -all"] },
  "127.0.0.1._spf.macro.test": { A: ["127.0.0.2"] },
  "local.test": { TXT: ["v=spf1 exists:%{l}.%{i}._spf.%{d} -all"] },
  "alice.127.0.0.1._spf.local.test": { A: ["127.0.0.2"] },
  "v6.test": { TXT: ["v=spf1 ip6:::1 ip4:192.0.2.1 -all"] },
  "mail.helo.test": { TXT: ["v=spf1 ip4:127.0.0.1 ip6:::1 -all"] },
  "bad.helo.test": { TXT: ["v=spf1 ip4:192.0.2.9 -all"] },
  // Our own domain: a softfail for any host but 192.0.2.1.
  "example.test": { TXT: ["v=spf1 ip4:192.0.2.1 ~all"] },
  "dkim.test": { TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
  "dmarc-reject.test": { TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
  "_dmarc.dmarc-reject.test": { TXT: ["v=DMARC1; p=reject"] },
  "dmarc-none.test": { TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
  "_dmarc.dmarc-none.test": { TXT: ["v=DMARC1; p=none"] },
};

/** Records the hook's view: the SPF verdict and the header fields above Received. */
export const POST_DATA_HOOK = `
export default async function (input) {
  const text = await new Response(input.message).text();
  const head = text.slice(0, text.indexOf("\\r\\n\\r\\n"));
  const names = head.split("\\r\\n").filter((l) => /^[A-Za-z-]+:/.test(l))
    .map((l) => l.slice(0, l.indexOf(":")));
  return {
    action: "accept",
    headers: ["X-Spf-Pass: " + input.spfPass, "X-Hook-Saw: " + names.slice(0, 3).join(",")],
  };
}
`;

/** The configuration files: our host name, the DNS server, the `auth:` section and alice. */
export function configFiles(dnsAddress: string, auth: string): Record<string, string> {
  return {
    "postern.yaml": [
      `hostname: ${HOSTNAME}`,
      "dns:",
      `  servers: ["${dnsAddress}"]`,
      "  timeout: 1s",
      "auth:",
      auth,
      "",
    ].join("\n"),
    "domains/example.test/users": "alice\n",
  };
}

/** What one swaks transaction got. */
export interface Sent {
  /** The reply to MAIL FROM (`250 …`, `550 5.7.23 …`). */
  mail: string;
  /** The reply to the end of DATA, or "" when the transaction stopped earlier. */
  data: string;
  /** The queue ID from the 250 to DATA, or "". */
  qid: string;
  result: RunResult;
}

/** The server's (last) reply line after the command line that matches `command`. */
export function replyAfter(stdout: string, command: RegExp): string {
  const lines = stdout.split("\n");
  const at = lines.findIndex((l) =>
    /^ *[-~]> /.test(l) && command.test(l.replace(/^ *[-~]> /, ""))
  );
  if (at < 0) return "";
  let last = "";
  for (const line of lines.slice(at + 1)) {
    if (/^ *(->|~>|\*\*>)/.test(line)) break;
    const m = /^<(?:-|~|\*\*|~\*|~\*\*)\s+(.*)$/.exec(line);
    if (m) {
      last = m[1]!;
      if (/^\d{3} /.test(last)) break;
    }
  }
  return last;
}

/** Unfolded header fields of a delivered message, in order. */
export function headerFields(message: string): string[] {
  const head = message.slice(0, message.indexOf("\n\n"));
  return head.replace(/\n(?=[ \t])/g, "").split("\n");
}

/** The first field named `name` (unfolded, without the name), or undefined. */
export function field(message: string, name: string): string | undefined {
  const prefix = `${name.toLowerCase()}: `;
  const line = headerFields(message).find((l) => l.toLowerCase().startsWith(prefix));
  return line?.slice(prefix.length);
}

/** A small message with CRLF line endings. */
export function message(
  from: string,
  subject: string,
  body = "Hello Alice,\r\n\r\nsee you at noon.\r\n",
) {
  return [
    `From: Bob <${from}>`,
    "To: Alice <alice@example.test>",
    `Subject: ${subject}`,
    "Date: Mon, 01 Jan 2024 12:00:00 +0000",
    `Message-ID: <${subject.replace(/\W+/g, ".")}@${from.slice(from.indexOf("@") + 1)}>`,
    "",
    body,
  ].join("\r\n");
}

/** The main test server and what the tests read of it. */
export interface AuthWorld {
  /** A scratch folder: DKIM keys and the message files given to swaks. */
  dir: string;
  dns: TestDnsServer;
  server: Server;
  /** Whether the server also listens on [::1] (port6). */
  ipv6: boolean;
  port6: number;
  keys: Record<string, GeneratedDkimKey>;
}

/**
 * Starts the DNS server (with DKIM keys for dkim.test and dmarc-reject.test
 * in its zone) and the main test server: trusted_networks: [], the
 * post-data hook, and IPv4 and IPv6 loopback (the IPv6 test fails where
 * there is no ::1). The caller stops both and removes `dir`.
 */
export async function startAuthServer(): Promise<AuthWorld> {
  const keys: Record<string, GeneratedDkimKey> = {};
  const dir = await tempDir("postern-auth-");
  const dns = await startDnsServer(structuredClone(ZONE));
  try {
    for (const domain of ["dkim.test", "dmarc-reject.test"]) {
      const key = await generateDkimKey({ dir: dkimKeyDir(dir, domain), domain, selector: "s1" });
      dns.zone[key.record.name] = { TXT: [key.record.strings] };
      keys[domain] = key;
    }
    // Without ::1 the server starts on IPv4 alone, and the IPv6 test fails.
    const ipv6 = await ipv6Loopback();
    const { server, addresses } = await startListening(
      {
        ...configFiles(dns.address, "  trusted_networks: []"),
        "hooks/post-data.ts": POST_DATA_HOOK,
      },
      ipv6 ? ["[::1]:0"] : [],
    );
    let port6 = 0;
    if (ipv6) {
      assert.match(addresses[1]!, /^\[::1\]:\d+$/);
      port6 = Number(/:(\d+)$/.exec(addresses[1]!)![1]);
    }
    return { dir, dns, server, ipv6, port6, keys };
  } catch (err) {
    await dns.close();
    throw err;
  }
}

/** Options of one swaks transaction. */
export interface SendOptions {
  from: string;
  helo?: string;
  data?: string;
  to?: string;
  ipv6?: boolean;
  tls?: boolean;
}

/** Swaks transactions against the main test server that `world` returns once started. */
export function authClient(world: () => AuthWorld) {
  let files = 0;

  /** One transaction with swaks; `data` is the message text (written to a file) or a body. */
  async function send(options: SendOptions): Promise<Sent> {
    const { server, port6, dir } = world();
    const args = [
      "--server",
      options.ipv6 ? `[::1]:${port6}` : `127.0.0.1:${server.port}`,
      "--timeout",
      "20",
      "--helo",
      options.helo ?? "client.test",
      "--from",
      options.from === "" ? "<>" : options.from,
      "--to",
      options.to ?? "alice@example.test",
    ];
    if (options.tls) args.push("--tls");
    if (options.data !== undefined) {
      const path = join(dir, `message-${files++}.eml`);
      await writeFile(path, options.data);
      args.push("--data", path);
    }
    const result = await run("swaks", args);
    const data = replyAfter(result.stdout, /^\.$/);
    return {
      mail: replyAfter(result.stdout, /^MAIL FROM:/),
      data,
      qid: /^250 .*queued as (\w+)/.exec(data)?.[1] ?? "",
      result,
    };
  }

  /** Sends, expects 250 to DATA, and returns the delivered message. */
  async function deliver(options: Parameters<typeof send>[0]): Promise<{
    sent: Sent;
    text: string;
    log: string;
  }> {
    const { server } = world();
    const sent = await send(options);
    assert.match(sent.data, /^250 2\.0\.0 Ok: queued as \w+$/, sent.result.stdout);
    const text = await delivered(server, sent.qid);
    const log = await server.waitForLog(new RegExp(`qid=${sent.qid} event=queued `));
    return { sent, text, log };
  }

  /** Sends, expects MAIL FROM refused with `reply`, and returns the mail log line. */
  async function refusedAtMail(
    options: Parameters<typeof send>[0],
    reply: RegExp,
  ): Promise<string> {
    const { server } = world();
    const sent = await send(options);
    assert.match(sent.mail, reply, sent.result.stdout);
    assert.equal(sent.data, "");
    const sender = options.from === "" ? "<>" : `<${options.from}>`;
    return await server.waitForLog(
      new RegExp(`event=rejected stage=mail .*from=${escape(sender)} `),
    );
  }

  /** `text` with a DKIM-Signature of `domain`'s key on top. */
  async function signed(domain: string, text: string): Promise<string> {
    const { keys, dir } = world();
    const key = keys[domain]!;
    const path = join(dir, `unsigned-${files++}.eml`);
    await writeFile(path, text);
    const signature = await dkimSign(path, 0, {
      domain,
      selector: key.selector,
      privateKey: key.privateKey,
    });
    return signature.replace(/\r?\n/g, "\r\n") + text;
  }

  return { send, deliver, refusedAtMail, signed };
}

/** `(mx.postern.test: …) client-ip=…; envelope-from="…"; helo=…;` for a MAIL FROM check. */
export function receivedSpf(result: string, comment: string, from: string, ip = "127.0.0.1") {
  const clientIp = ip.includes(":") ? `"${ip}"` : ip;
  return `${result} (${HOSTNAME}: ${comment}) client-ip=${clientIp}; ` +
    `envelope-from="${from}"; helo=client.test;`;
}

/** The `spf=…` row of Authentication-Results for a MAIL FROM check. */
export function spfRow(result: string, comment: string, from: string) {
  return `spf=${result} (${HOSTNAME}: ${comment}) smtp.mailfrom=${from} smtp.helo=client.test`;
}

/** The rows of the Authentication-Results field, after the authserv-id. */
export function rows(text: string): string[] {
  const value = field(text, "Authentication-Results");
  assert.ok(value, `no Authentication-Results in:\n${text}`);
  const [id, ...rest] = value.split("; ");
  assert.equal(id, HOSTNAME);
  return rest;
}

/** The message with queue ID `qid` in alice's Maildir. */
export async function delivered(server: Server, qid: string): Promise<string> {
  return await eventually(
    async () => {
      const messages = await maildirMessages(server.dataDir, "example.test", "alice");
      return messages.find((m) => m.includes(` id ${qid}`));
    },
    15_000,
    `delivery of ${qid}`,
  );
}

/** `text` with every character that has a meaning in a RegExp escaped. */
export function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
