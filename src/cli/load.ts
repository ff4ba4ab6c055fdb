/**
 * The configuration as the command line asks for it: the directories
 * `--config` and `--data` name, with `--listen` and `--admin-listen` laid
 * over what `postern.yaml` says. The daemon loads it the same way again on
 * every reload, so the overrides outlive a reload.
 *
 * @module
 */

import { type Config, ConfigError, listenAddressProblem, loadConfig } from "../config/mod.ts";
import type { CommandOptions } from "./args.ts";

/** A function that loads the configuration with the command line's overrides. */
export function configLoader(values: CommandOptions): () => Promise<Config> {
  // The same command-line overrides apply to every reload.
  return async () => {
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
}
