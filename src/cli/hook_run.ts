/**
 * `postern hook run`: one hook run once, as the server would run it and in
 * the same sandbox, its answer printed as JSON.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import { EmbeddedDeno, embeddedRuntime } from "../hooks/mod.ts";
import { runHookOnce } from "../hooks/run_once.ts";
import { Logger } from "../log/mod.ts";
import * as runtime from "../runtime/mod.ts";

/**
 * Runs the hook of `event` on the input in `inputPath` (and the message in
 * `messagePath`, for post-data); returns the exit status.
 */
export async function hookRun(
  config: Config,
  event: string,
  inputPath: string,
  messagePath: string | undefined,
): Promise<number> {
  const embedded = await embeddedRuntime();
  const { status, report } = await runHookOnce({
    embeddedDeno: embedded && new EmbeddedDeno(embedded, config.dataDir),
    configDir: config.configDir,
    hooks: config.hooks,
    event,
    inputPath,
    messagePath,
    logger: new Logger("debug", runtime.writeStderr),
    env: runtime.env,
    execPath: runtime.execPath(),
  });
  runtime.writeStdout(JSON.stringify(report, null, 2) + "\n");
  return status;
}
