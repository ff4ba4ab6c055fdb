/**
 * The `postern` command line: its options and help text, the
 * configuration with the command line's overrides, and one module per
 * subcommand. `src/main.ts` dispatches to these and exits with what they
 * return; none of them exits.
 *
 * @module
 */

export { parseCommandLine, USAGE } from "./args.ts";
export type { CommandOptions } from "./args.ts";
export { check } from "./check.ts";
export { runDaemon } from "./daemon.ts";
export { dkimKeygen, dkimStatus } from "./dkim.ts";
export { dnsRecords } from "./dns.ts";
export { hookRun } from "./hook_run.ts";
export { configLoader } from "./load.ts";
export { userCommand } from "./user.ts";
