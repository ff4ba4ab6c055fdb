/**
 * The `postern` command: the daemon and its tools. The only module that
 * exits the process.
 *
 * ```sh
 * postern serve [--config DIR] [--data DIR] [--listen HOST:PORT]…
 * postern check [--config DIR]
 * postern hook run EVENT --input FILE [--message FILE] [--config DIR]
 * postern dkim keygen DOMAIN --config DIR [--selector S] [--algorithm rsa|ed25519]
 * postern dkim status [DOMAIN] --config DIR
 * postern dns [DOMAIN] --config DIR
 * postern status|reload [--config DIR] [--data DIR]
 * postern queue ls|show|retry|hold|release|bounce|rm [ID] [--config DIR] [--data DIR]
 * postern version
 * ```
 *
 * @module
 */

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { normalizeDomain } from "./aliases/mod.ts";
import {
  defaultDkimSelector,
  dkimKeyDir,
  DkimKeyring,
  formatKeyStatus,
  generateDkimKey,
} from "./auth/mod.ts";
import { DnsResolver } from "./dns/mod.ts";
import { runAdminCommand } from "./admin/client.ts";
import { adminListenWarning } from "./admin/server.ts";
import { type Config, ConfigError, listenAddressProblem, loadConfig } from "./config/mod.ts";
import {
  describeHookRuntime,
  EmbeddedDeno,
  embeddedRuntime,
  findDeno,
  HookSetupError,
  typeCheckHooks,
} from "./hooks/mod.ts";
import { HOOK_POINTS } from "../hooks/mod.ts";
import { runHookOnce } from "./hooks/run_once.ts";
import { BatchedSink, Counters, FileSink, Logger } from "./log/mod.ts";
import { hashPassword, listUsers, removeUser, setUser, splitAddress } from "./users/mod.ts";
import * as runtime from "./runtime/mod.ts";
import { serve } from "./serve.ts";
import { checkRecords, formatChecks, wantedRecords } from "./publish/records.ts";

export { VERSION } from "./version.ts";
import { VERSION } from "./version.ts";

const USAGE = `Usage: postern <command> [options]

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

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
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
  } catch (err) {
    runtime.writeStderr(`postern: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const command = positionals[0] ?? "serve";
  if (values.help || command === "help") {
    runtime.writeStdout(USAGE);
    return 0;
  }
  switch (command) {
    case "version":
      runtime.writeStdout(
        `postern ${VERSION} (${runtime.runtimeName} ${runtime.runtimeVersion})\n` +
          `hook runtime: ${
            describeHookRuntime({
              embedded: (await embeddedRuntime())?.manifest.version ?? null,
              deno: null,
            })
          }\n`,
      );
      return 0;
    case "check":
    case "serve":
    case "status":
    case "reload":
    case "queue":
    case "dns":
      break;
    case "user":
      return await userCommand(positionals.slice(1), values.config);
    case "dkim":
      if (positionals[1] === "status") break;
      if (positionals[1] !== "keygen" || positionals[2] === undefined) {
        runtime.writeStderr(
          `postern: usage: postern dkim keygen DOMAIN | dkim status [DOMAIN] --config DIR\n\n${USAGE}`,
        );
        return 2;
      }
      return await dkimKeygen(positionals[2], values);
    case "hook":
      if (positionals[1] !== "run" || positionals[2] === undefined || values.input === undefined) {
        runtime.writeStderr(`postern: usage: postern hook run EVENT --input FILE\n\n${USAGE}`);
        return 2;
      }
      break;
    default:
      runtime.writeStderr(`postern: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }

  // The same command-line overrides apply to every reload.
  const load = async () => {
    // Checked as postern.yaml's are: a bad port is named here, not by the
    // runtime once the server is half started.
    for (
      const [option, address] of [
        ...(values.listen ?? []).map((a) => ["--listen", a] as const),
        ...(values["admin-listen"] !== undefined && values["admin-listen"] !== "off"
          ? [["--admin-listen", values["admin-listen"]] as const]
          : []),
      ]
    ) {
      const problem = listenAddressProblem(address);
      if (problem !== undefined) throw new ConfigError(option, `${option} "${address}" ${problem}`);
    }
    const loaded = await loadConfig({ configDir: values.config, dataDir: values.data });
    if (values.listen !== undefined) loaded.smtp.listen = values.listen;
    const adminListen = values["admin-listen"];
    if (adminListen !== undefined) {
      loaded.admin.listen = adminListen === "off" ? undefined : adminListen;
    }
    return loaded;
  };
  let config;
  try {
    config = await load();
  } catch (err) {
    if (err instanceof ConfigError) {
      runtime.writeStderr(`postern: configuration error:\n${err.message}\n`);
      return 1;
    }
    throw err;
  }
  if (command === "hook") {
    const embedded = await embeddedRuntime();
    const { status, report } = await runHookOnce({
      embeddedDeno: embedded && new EmbeddedDeno(embedded, config.dataDir),
      configDir: config.configDir,
      hooks: config.hooks,
      event: positionals[2]!,
      inputPath: values.input!,
      messagePath: values.message,
      logger: new Logger("debug", runtime.writeStderr),
      env: runtime.env,
      execPath: runtime.execPath(),
    });
    runtime.writeStdout(JSON.stringify(report, null, 2) + "\n");
    return status;
  }
  if (command === "check") return await check(config);
  if (command === "dkim") return await dkimStatus(config, positionals[2]);
  if (command === "dns") return await dnsRecords(config, positionals[1]);
  if (command === "status" || command === "reload" || command === "queue") {
    const result = await runAdminCommand(
      config,
      values.cluster ? [...positionals, "--cluster"] : positionals,
    );
    runtime.writeStdout(result.stdout);
    runtime.writeStderr(result.stderr);
    return result.status;
  }

  const logger = new Logger(config.log.level, runtime.writeStderr);
  // SIGHUP's default action ends the process. One handler for the whole
  // life of the daemon (start-up and shutdown included) reopens the mail
  // log and passes the signal on to whoever subscribed (the reloader, the
  // hook's log); with nobody, it is ignored.
  const hangups = new Set<() => void>();
  const mailFile = config.log.mailFile === undefined
    ? undefined
    : new FileSink(config.log.mailFile);
  // Mail log lines are written once per turn of the event loop (see
  // BatchedSink); what is pending when the process ends is written then.
  const mailSink = new BatchedSink(mailFile?.write ?? runtime.writeStdout);
  runtime.onExit(() => mailSink.flush());
  runtime.onSignal("SIGHUP", () => {
    mailSink.flush();
    mailFile?.reopen();
    for (const handler of hangups) handler();
  });
  let server;
  try {
    server = await serve(config, logger, mailSink.write, {
      reload: config.configDir === undefined ? undefined : load,
      onHangup: (handler) => {
        hangups.add(handler);
        return () => hangups.delete(handler);
      },
    });
  } catch (err) {
    if (err instanceof HookSetupError) {
      runtime.writeStderr(`postern: hook error:\n${err.message}\n`);
      return 1;
    }
    // Anything else that stops start-up (an address in use, an unreadable
    // token file) is reported plainly, without a stack trace.
    runtime.writeStderr(`postern: cannot start: ${err instanceof Error ? err.message : err}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    runtime.onSignal("SIGTERM", stop);
    runtime.onSignal("SIGINT", stop);
  });
  logger.info("shutting down");
  await server.stop();
  mailSink.flush();
  await mailFile?.close();
  return 0;
}

/**
 * `postern check`: the configuration loaded (or the caller already printed
 * why not); type-checks the TypeScript hooks when deno is there.
 */
async function check(config: Config): Promise<number> {
  runtime.writeStdout(`configuration OK: ${config.domains.size} domain(s)\n`);
  const exposed = config.admin.listen && adminListenWarning(config.admin.listen);
  if (exposed) runtime.writeStderr(`postern: warning: ${exposed}\n`);
  if (config.configDir === undefined) return 0;
  let deno;
  try {
    const embedded = await embeddedRuntime();
    const embeddedDeno = embedded && new EmbeddedDeno(embedded, config.dataDir);
    deno = findDeno({
      configured: config.hooks.deno,
      env: runtime.env,
      execPath: runtime.execPath(),
      embedded: embeddedDeno?.path,
    });
    // The embedded deno is read only when there is a TypeScript hook to check.
    const hooksDir = resolve(config.configDir, "hooks");
    const anyModule = HOOK_POINTS.some((point) => existsSync(join(hooksDir, `${point}.ts`)));
    if (deno?.source === "embedded" && anyModule) await embeddedDeno!.prepare();
  } catch (err) {
    runtime.writeStderr(`postern: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  if (!deno) {
    runtime.writeStdout("hooks not type-checked: deno not found (hooks.deno, DENO_BIN, PATH)\n");
    return 0;
  }
  const result = await typeCheckHooks(config.configDir, deno.path, runtime.env);
  if (result.checked.length === 0) return 0;
  if (!result.ok) {
    runtime.writeStderr(`postern: hooks do not type-check:\n${result.report}\n`);
    return 1;
  }
  runtime.writeStdout(`hooks type-check: ${result.checked.join(", ")}\n`);
  return 0;
}

/**
 * `postern user add|remove|list`: edits `domains/<domain>/users`. The
 * password comes from a prompt (no echo) or standard input, never from the
 * command line; a running server picks the change up by itself.
 */
async function userCommand(words: string[], configDir: string | undefined): Promise<number> {
  const [action, target] = words;
  if (
    configDir === undefined || target === undefined ||
    !["add", "remove", "list"].includes(action ?? "")
  ) {
    runtime.writeStderr(
      "postern: usage: postern user add|remove USER@DOMAIN --config DIR\n" +
        "                postern user list DOMAIN --config DIR\n",
    );
    return 2;
  }
  const dir = resolve(configDir);
  try {
    if (action === "list") {
      for (const user of await listUsers(dir, target)) {
        runtime.writeStdout(
          `${user.name}@${target.toLowerCase()}  ${
            user.canLogIn ? "can log in" : "mailbox only"
          }\n`,
        );
      }
      return 0;
    }
    if (action === "remove") {
      if (await removeUser(dir, target)) return 0;
      runtime.writeStderr(`postern: no user ${target}\n`);
      return 1;
    }
    splitAddress(target);
    const password = await runtime.readSecret(`Password for ${target}: `);
    if (password === "") {
      runtime.writeStderr("postern: empty password; nothing changed\n");
      return 1;
    }
    const added = await setUser(dir, target, await hashPassword(password));
    runtime.writeStdout(`${added ? "added" : "changed the password of"} ${target}\n`);
    return 0;
  } catch (err) {
    runtime.writeStderr(`postern: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/** `postern dkim keygen`: writes a key and prints the record to publish. */
async function dkimKeygen(
  domainText: string,
  values: { config?: string | undefined; selector?: string | undefined; algorithm?: string },
): Promise<number> {
  if (values.config === undefined) {
    runtime.writeStderr(
      "postern: dkim keygen needs --config DIR (keys live in the configuration)\n",
    );
    return 2;
  }
  const algorithm = values.algorithm ?? "rsa";
  if (algorithm !== "rsa" && algorithm !== "ed25519") {
    runtime.writeStderr(`postern: unknown DKIM algorithm "${algorithm}" (rsa or ed25519)\n`);
    return 2;
  }
  const domain = normalizeDomain(domainText);
  const selector = values.selector ?? defaultDkimSelector();
  if (!/^[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)*$/i.test(selector)) {
    runtime.writeStderr(`postern: "${selector}" is not a valid DKIM selector\n`);
    return 2;
  }
  try {
    const key = await generateDkimKey({
      configDir: resolve(values.config),
      dir: dkimKeyDir(resolve(values.config), domain),
      domain,
      selector,
      algorithm,
    });
    runtime.writeStdout(
      `Wrote ${key.path}\nPublish this DNS record:\n\n${key.record.zoneLine}\n\n` +
        `The key becomes active (signs ${domain}'s mail) once this record is published: ` +
        `Postern looks for it at start, on every reload and every ` +
        `outbound.dkim_check_interval; until then the previous key keeps signing. ` +
        `"postern dkim status" shows where it stands.\n`,
    );
    return 0;
  } catch (err) {
    const exists = (err as { code?: string }).code === "EEXIST";
    runtime.writeStderr(
      exists
        ? `postern: a DKIM key for selector "${selector}" of ${domain} already exists; ` +
          `choose another --selector (keys are never overwritten)\n`
        : `postern: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 1;
  }
}

/** `postern dkim status [DOMAIN]`: every key and its record, looked up now. */
async function dkimStatus(config: Config, domain: string | undefined): Promise<number> {
  const resolver = new DnsResolver({
    servers: config.dns.servers,
    timeoutMs: config.dns.timeoutMs,
  });
  const keyring = new DkimKeyring({
    resolve: () => resolver.resolve,
    logger: new Logger("error", runtime.writeStderr),
    counters: new Counters(),
  });
  const wanted = domain === undefined ? undefined : normalizeDomain(domain);
  await keyring.update(
    [...config.domains.values()].filter((d) => wanted === undefined || d.name === wanted),
  );
  const rows = keyring.status();
  if (rows.length === 0) {
    runtime.writeStdout(`no DKIM keys${wanted ? ` for ${wanted}` : ""}\n`);
    return 0;
  }
  runtime.writeStdout(formatKeyStatus(rows));
  return 0;
}

/** `postern dns [DOMAIN]`: the records to publish, each looked up now. */
async function dnsRecords(config: Config, domain: string | undefined): Promise<number> {
  const resolver = new DnsResolver({
    servers: config.dns.servers,
    timeoutMs: config.dns.timeoutMs,
  });
  const wanted = domain === undefined ? undefined : normalizeDomain(domain);
  const domains = [...config.domains.values()].filter((d) =>
    wanted === undefined || d.name === wanted
  );
  if (domains.length === 0) {
    runtime.writeStderr(`postern: ${wanted} is not a local domain\n`);
    return 1;
  }
  let bad = 0;
  for (const d of domains) {
    const checks = await checkRecords(resolver.resolve, wantedRecords(config, d));
    bad += checks.filter((c) => c.state !== "ok").length;
    runtime.writeStdout(`; ${d.name}\n${formatChecks(checks)}\n`);
  }
  return bad === 0 ? 0 : 1;
}

if (import.meta.main) {
  main(runtime.args()).then(
    (code) => runtime.exit(code),
    (err) => {
      runtime.writeStderr(
        `postern: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`,
      );
      runtime.exit(1);
    },
  );
}
