/**
 * A domain's DKIM keys as the loader reads them (`domains/<d>/dkim/`), and
 * the selector `postern.yaml` may pin.
 *
 * @module
 */

import { type DkimKey, DkimKeyError, loadDkimKeys } from "../auth/mod.ts";
import { ConfigError } from "./config_error.ts";

/**
 * A domain's DKIM keys and the selector the configuration names. A folder
 * or key that cannot be read is a configuration error (at start-up; on a
 * reload the last good policy stays), never a silent "no key".
 */
export function loadDkim(
  dir: string,
  domain: string,
  selector: string | undefined,
  mainFile: string,
): { dkimKeys: DkimKey[]; dkimSelector: string | undefined } {
  let dkimKeys: DkimKey[];
  try {
    // No folder: no keys. loadDkimKeys tells a missing folder from one the
    // server may not read (existsSync says false for both).
    dkimKeys = loadDkimKeys(dir, domain);
  } catch (err) {
    if (err instanceof DkimKeyError) throw new ConfigError(err.path, err.message, "dkim_key");
    throw err;
  }
  if (selector !== undefined && !dkimKeys.some((k) => k.selector === selector)) {
    throw new ConfigError(
      mainFile,
      `${mainFile}: domains.${domain}.dkim.selector names "${selector}", which has no key in ${dir}`,
      "dkim_key",
    );
  }
  return { dkimKeys, dkimSelector: selector };
}
