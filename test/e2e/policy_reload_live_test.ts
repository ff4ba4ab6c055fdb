/**
 * Settings changed live, end to end: a renewed certificate served on the
 * next STARTTLS (openssl s_client), a first certificate named before an
 * ACME client writes it, rate limits raised and lowered, and a hook's
 * grants changed under a running worker. The policy files' own reloads are
 * in policy_reload_test.ts.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, rename, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  cleanup,
  eventually,
  maildirMessages,
  rawSession,
  replies,
  run,
  type Server,
  startServer,
  swaks,
  tempDir,
} from "./harness.ts";
import { logLines, untilLog, untilRcpt, writeInPlace } from "./policy_reload_fixtures.ts";

/** A self-signed certificate and key for `name`, PEM, from openssl. */
let certificatesMade = 0;
async function makeCertificate(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const serial = ++certificatesMade;
  const cert = join(dir, `${name}-${serial}.crt`);
  const key = join(dir, `${name}-${serial}.key`);
  const made = await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
  ]);
  assert.equal(made.code, 0, made.stderr);
  return { cert, key };
}

/** SHA-256 fingerprint of the certificate served after STARTTLS, via openssl s_client. */
function servedFingerprint(server: Server): Promise<string> {
  return new Promise((resolve) => {
    execFile(
      "bash",
      [
        "-c",
        `openssl s_client -connect ${server.host}:${server.port} -starttls smtp ` +
        `-servername mx.example.test </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`,
      ],
      { timeout: 20_000 },
      (_err, stdout) => resolve(String(stdout).trim()),
    );
  });
}

async function fingerprintOf(certFile: string): Promise<string> {
  const result = await run("openssl", [
    "x509",
    "-noout",
    "-fingerprint",
    "-sha256",
    "-in",
    certFile,
  ]);
  return result.stdout.trim();
}

describe("certificate renewal", () => {
  let server: Server;
  let acmeDir: string;
  before(async () => {
    // An ACME client's layout outside the configuration: live/ holds links
    // into archive/, swapped on renewal.
    acmeDir = await tempDir("postern-acme-");
    await mkdir(join(acmeDir, "live"));
    const first = await makeCertificate(acmeDir, "mx.example.test");
    await symlink(first.cert, join(acmeDir, "live/fullchain.pem"));
    await symlink(first.key, join(acmeDir, "live/privkey.pem"));
    server = await startServer({
      config: {
        "postern.yaml": `tls:\n  cert: ${join(acmeDir, "live/fullchain.pem")}\n` +
          `  key: ${join(acmeDir, "live/privkey.pem")}\n`,
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
    await rm(acmeDir, { recursive: true, force: true });
  });

  it("serves a renewed certificate on the next STARTTLS, without a restart", async () => {
    const before = await servedFingerprint(server);
    assert.equal(before, await fingerprintOf(join(acmeDir, "live/fullchain.pem")));
    const renewed = await makeCertificate(acmeDir, "mx.example.test");
    // certbot replaces the links one by one: key first, then the chain.
    for (const [target, link] of [[renewed.key, "privkey.pem"], [renewed.cert, "fullchain.pem"]]) {
      const temp = join(acmeDir, "live", `${link}.new`);
      await symlink(target!, temp);
      await rename(temp, join(acmeDir, "live", link!));
    }
    const expected = await fingerprintOf(renewed.cert);
    assert.notEqual(expected, before);
    await eventually(
      async () => {
        const served = await servedFingerprint(server);
        return served === expected ? served : undefined;
      },
      10_000,
      "the renewed certificate to be served",
    );
    // Mail still flows over the new certificate.
    const sent = await swaks(server, [
      "--from",
      "sender@client.test",
      "--to",
      "alice@example.test",
      "--tls",
    ]);
    assert.equal(sent.code, 0, `${sent.stdout}${sent.stderr}\nserver log:\n${server.stderr()}`);
    assert.ok(replies(sent.stdout).some((l) => l.startsWith("250 2.0.0 Ok: queued")));
  });
});

describe("a first certificate from an ACME client, named before it exists", () => {
  let server: Server;
  let acmeDir: string;
  before(async () => {
    acmeDir = await tempDir("postern-acme-first-");
    server = await startServer({ config: { "domains/example.test/users": "alice\n" } });
  });
  after(async () => {
    await cleanup(server);
    await rm(acmeDir, { recursive: true, force: true });
  });

  it("is served once the files appear, with no other change", async () => {
    const live = join(acmeDir, "live", "mx.example.test");
    const mark = logLines(server);
    await writeInPlace(
      join(server.configDir, "postern.yaml"),
      `tls:\n  cert: ${join(live, "fullchain.pem")}\n  key: ${join(live, "privkey.pem")}\n`,
    );
    const error = await untilLog(server, /policy reload failed/, mark);
    assert.match(error, /fullchain\.pem: the certificate file is missing/);
    // The ACME client creates the folders and the files later.
    const issued = await makeCertificate(acmeDir, "mx.example.test");
    await mkdir(live, { recursive: true });
    await rename(issued.key, join(live, "privkey.pem"));
    await rename(issued.cert, join(live, "fullchain.pem"));
    const expected = await fingerprintOf(join(live, "fullchain.pem"));
    await eventually(
      async () => {
        const served = await servedFingerprint(server);
        return served === expected ? served : undefined;
      },
      10_000,
      "the new certificate to be served",
    );
  });
});

describe("rate limits, changed live", () => {
  let server: Server;
  const settings = (connections: number, messages: number) =>
    "auth:\n  trusted_networks: []\n  spf:\n    enabled: false\n  verify: false\n" +
    `rate_limits:\n  connections_per_ip_per_minute: ${connections}\n` +
    `  messages_per_ip_per_hour: ${messages}\n`;
  before(async () => {
    server = await startServer({
      config: {
        "postern.yaml": settings(3, 0),
        "domains/example.test/users": "alice\n",
      },
    });
  });
  after(async () => {
    await cleanup(server);
  });

  it("refuses connections over the per-minute limit with 421 4.7.0, and counts it in the log", async () => {
    const greetings: string[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await rawSession(server);
      greetings.push(await s.read());
      s.close();
    }
    assert.deepEqual(greetings.slice(0, 3).map((g) => g.slice(0, 4)), ["220 ", "220 ", "220 "]);
    assert.match(greetings[3]!, /^421 4\.7\.0 /);
    await server.waitForLog(/event=rejected .*stage=connect .*reason=connection_rate/);
  });

  it("lifts the limit when the configuration raises it", async () => {
    const main = join(server.configDir, "postern.yaml");
    await writeInPlace(main, settings(1000, 2));
    await untilRcpt(server, "alice@example.test", /^250 /);
  });

  it("defers messages over the per-hour limit with 451 4.7.1 at MAIL FROM", async () => {
    const s = await rawSession(server);
    assert.match(await s.read(), /^220 /);
    assert.match(await s.send("EHLO client.test"), /^250 /);
    // The RCPT check above used one message of the two.
    assert.match(await s.send("MAIL FROM:<sender@client.test>"), /^250 /);
    assert.match(await s.send("RSET"), /^250 /);
    assert.match(await s.send("MAIL FROM:<sender@client.test>"), /^451 4\.7\.1 /);
    s.close();
    await server.waitForLog(/event=rejected .*stage=mail .*reason=message_rate/);
  });
});

describe("hook grants, changed live", () => {
  let server: Server;
  const variable = `postern-reload-${process.pid}`;
  const hooksSection = (env: string[]) =>
    `hooks:\n  post_data:\n    allow:\n      env: ${JSON.stringify(env)}\n`;
  before(async () => {
    process.env["POSTERN_RELOAD_VAR"] = variable;
    server = await startServer({
      config: {
        "postern.yaml": hooksSection([]),
        "domains/example.test/users": "alice\n",
        "hooks/post-data.ts": [
          "export default function () {",
          "  let value;",
          '  try { value = Deno.env.get("POSTERN_RELOAD_VAR") ?? "unset"; }',
          '  catch { value = "denied"; }',
          '  return { action: "accept", headers: { "X-Env": value } };',
          "}",
          "",
        ].join("\n"),
      },
    });
  });
  after(async () => {
    delete process.env["POSTERN_RELOAD_VAR"];
    await cleanup(server);
  });

  const send = async (subject: string) => {
    const sent = await swaks(server, [
      "--from",
      "sender@client.test",
      "--to",
      "alice@example.test",
      "--header",
      `Subject: ${subject}`,
    ]);
    assert.equal(sent.code, 0, sent.stdout + sent.stderr);
    const message = await eventually(
      async () => {
        const messages = await maildirMessages(server.dataDir, "example.test", "alice");
        return messages.find((m) => m.includes(`Subject: ${subject}`));
      },
      10_000,
      `delivery of "${subject}"`,
    );
    return /^X-Env: (.*)$/m.exec(message)?.[1];
  };

  it("restarts the hook's workers under the new grants", async () => {
    assert.equal(await send("before the grant"), "denied");
    const mark = logLines(server);
    await writeInPlace(
      join(server.configDir, "postern.yaml"),
      hooksSection(["POSTERN_RELOAD_VAR"]),
    );
    await untilLog(server, /hook loaded" .*env=POSTERN_RELOAD_VAR/, mark);
    assert.equal(await send("after the grant"), variable);
  });
});
