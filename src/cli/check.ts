/**
 * `postern check`: reports a configuration that loaded, warns about an
 * exposed admin API, and type-checks the TypeScript hooks when a deno is
 * there to do it.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { adminListenWarning } from "../admin/server.ts";
import { type Config, descriptorWarning, fitSmtpConnections } from "../config/mod.ts";
import { EmbeddedDeno, embeddedRuntime, findDeno, typeCheckHooks } from "../hooks/mod.ts";
import { HOOK_POINTS } from "../../hooks/mod.ts";
import * as runtime from "../runtime/mod.ts";

/**
 * `postern check`: the configuration loaded (or the caller already printed
 * why not); type-checks the TypeScript hooks when deno is there.
 */
export async function check(config: Config): Promise<number> {
  runtime.writeStdout(`configuration OK: ${config.domains.size} domain(s)\n`);
  const exposed = config.admin.listen && adminListenWarning(config.admin.listen);
  if (exposed) runtime.writeStderr(`postern: warning: ${exposed}\n`);
  const limit = runtime.openFileLimit();
  const open = runtime.openDescriptorCount() ?? 32;
  const short = limit && descriptorWarning(fitSmtpConnections(config, limit, open), true);
  if (short) runtime.writeStderr(`postern: warning: ${short}\n`);
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
