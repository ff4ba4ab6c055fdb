/**
 * The `postern` command: the daemon and its tools. The only module that
 * exits the process; the subcommands themselves live in `src/cli/`.
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

import {
  check,
  configLoader,
  dkimKeygen,
  dkimStatus,
  dnsRecords,
  hookRun,
  parseCommandLine,
  runDaemon,
  USAGE,
  userCommand,
} from "./cli/mod.ts";
import { runAdminCommand } from "./admin/client.ts";
import { ConfigError } from "./config/mod.ts";
import { describeHookRuntime, embeddedRuntime } from "./hooks/mod.ts";
import * as runtime from "./runtime/mod.ts";

export { VERSION } from "./version.ts";
import { VERSION } from "./version.ts";

/** Runs the command `argv` names; resolves to the exit status. */
async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(argv);
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

  const load = configLoader(values);
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
    return await hookRun(config, positionals[2]!, values.input!, values.message);
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
  return await runDaemon(config, load);
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
