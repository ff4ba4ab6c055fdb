/**
 * Prints the mutation score of each area from Stryker's JSON reports
 * (.test-tmp/mutants/<area>.json): killed and timed-out mutants over all
 * that were tested (survived and without coverage included).
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import process from "node:process";
import * as v from "valibot";

const ReportSchema = v.object({
  files: v.record(
    v.string(),
    v.object({ mutants: v.array(v.object({ status: v.string(), mutatorName: v.string() })) }),
  ),
});

const DETECTED = new Set(["Killed", "Timeout"]);
const UNDETECTED = new Set(["Survived", "NoCoverage"]);

let allDetected = 0;
let allValid = 0;
for (const area of process.argv.slice(2)) {
  let report: v.InferOutput<typeof ReportSchema>;
  try {
    report = v.parse(
      ReportSchema,
      JSON.parse(await readFile(`.test-tmp/mutants/${area}.json`, "utf8")),
    );
  } catch (err) {
    console.log(`${area}: no report (${err instanceof Error ? err.message : err})`);
    continue;
  }
  let detected = 0;
  let valid = 0;
  const survivors: string[] = [];
  for (const [file, { mutants }] of Object.entries(report.files)) {
    for (const m of mutants) {
      if (DETECTED.has(m.status)) detected++;
      if (DETECTED.has(m.status) || UNDETECTED.has(m.status)) valid++;
      if (UNDETECTED.has(m.status)) survivors.push(`${file} ${m.mutatorName}`);
    }
  }
  allDetected += detected;
  allValid += valid;
  const score = valid === 0 ? 0 : (100 * detected) / valid;
  console.log(`${area}: ${score.toFixed(1)}% (${detected} of ${valid} mutants detected)`);
}
if (allValid > 0) {
  console.log(
    `all: ${(100 * allDetected / allValid).toFixed(1)}% (${allDetected} of ${allValid})`,
  );
}
