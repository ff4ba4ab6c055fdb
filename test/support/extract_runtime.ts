/**
 * A separate process for the concurrent-extraction test: extracts the
 * gzipped file argv[3] (described by the manifest JSON in argv[4]) into the
 * folder argv[2] with `prepareRuntime`, after waiting for the file argv[5]
 * to exist (so that both processes start together), and prints the result
 * as JSON.
 *
 * @module
 */

import { existsSync, readFileSync } from "node:fs";
import process from "node:process";
import { prepareRuntime, type RuntimeManifest } from "../../src/hooks/hook_runtime.ts";

const [dir, gzPath, manifestJson, goFile] = process.argv.slice(2);
if (!dir || !gzPath || !manifestJson || !goFile) {
  throw new Error("usage: extract_runtime.ts DIR GZ MANIFEST_JSON GO_FILE");
}
const manifest = JSON.parse(manifestJson) as RuntimeManifest;
const gz = readFileSync(gzPath);
for (let i = 0; i < 1000 && !existsSync(goFile); i++) {
  await new Promise((resolve) => setTimeout(resolve, 10));
}
const result = await prepareRuntime(
  { manifest, open: () => new Blob([gz]).stream() },
  dir,
);
process.stdout.write(JSON.stringify(result) + "\n");
