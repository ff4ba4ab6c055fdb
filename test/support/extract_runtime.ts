/**
 * A separate process for the concurrent-extraction test: extracts the
 * gzipped file argv[3] (described by the manifest JSON in argv[4]) into the
 * folder argv[2] with `prepareRuntime`, and prints the result as JSON.
 *
 * The extraction stops half way, so that the test can hold two of them in
 * progress at once: once its source has handed over the first half of the
 * gzipped bytes (its temporary file is open by then), the process creates
 * `extracting-<pid>` in the folder argv[5], then waits for `go` to appear
 * there before it hands over the rest.
 *
 * @module
 */

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { prepareRuntime, type RuntimeManifest } from "../../src/hooks/hook_runtime.ts";

const [dir, gzPath, manifestJson, signalDir] = process.argv.slice(2);
if (!dir || !gzPath || !manifestJson || !signalDir) {
  throw new Error("usage: extract_runtime.ts DIR GZ MANIFEST_JSON SIGNAL_DIR");
}
const signals: string = signalDir;
const manifest = JSON.parse(manifestJson) as RuntimeManifest;
const gz = new Uint8Array(readFileSync(gzPath));
const half = Math.floor(gz.byteLength / 2);

/** Says this extraction is under way, then waits (bounded) for the test's go. */
async function halfway(): Promise<void> {
  writeFileSync(join(signals, `extracting-${process.pid}`), "");
  const go = join(signals, "go");
  for (let i = 0; i < 6000 && !existsSync(go); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (!existsSync(go)) throw new Error("no go within 60 s");
}

let opened = 0;
const result = await prepareRuntime(
  {
    manifest,
    open: () => {
      // Only the first extraction stops half way (a second round, after a
      // copy in place kept changing, runs straight through).
      const first = opened++ === 0;
      let step = 0;
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (step === 0) {
            controller.enqueue(gz.slice(0, half));
          } else if (step === 1) {
            if (first) await halfway();
            controller.enqueue(gz.slice(half));
          } else {
            controller.close();
          }
          step++;
        },
      });
    },
  },
  dir,
);
process.stdout.write(JSON.stringify(result) + "\n");
