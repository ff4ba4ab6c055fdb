// Mutation testing of the code behind Postern's promises (issue 21), with
// StrykerJS's command test runner running the fast Deno tests of one area
// at a time: `deno task mutants [area…]` (scripts/mutants.sh) sets
// MUTANTS_AREA. Not part of CI: a run takes tens of minutes.
import process from "node:process";

/** What each area mutates and which tests must notice. */
export const AREAS = {
  // Durability: atomic or sealed, synced spool files and the group-committed directory fsync.
  spool: {
    mutate: [
      "src/queue/durable_file.ts",
      "src/queue/dir_sync.ts",
      "src/queue/spool.ts",
      "src/queue/seal.ts",
      "src/queue/spare_files.ts",
    ],
    tests: ["test/unit/queue/"],
  },
  // The queue: per-recipient state, retries, expiry, removal.
  queue: {
    mutate: ["src/queue/queue.ts"],
    tests: ["test/unit/queue/"],
  },
  // Which recipients are accepted; relaying denied.
  recipient: {
    mutate: ["src/smtp/recipient.ts"],
    tests: ["test/unit/smtp/recipient_test.ts"],
  },
  // The hook sandbox: Deno permission flags from the grants.
  sandbox: {
    mutate: ["src/hooks/sandbox.ts"],
    tests: ["test/unit/hooks/sandbox_test.ts"],
  },
  // Authentication decisions: SPF verdicts, trusted networks, SMTP AUTH.
  auth: {
    mutate: ["src/auth/spf_policy.ts", "src/auth/networks.ts", "src/smtp/login.ts"],
    tests: [
      "test/unit/auth/spf_policy_test.ts",
      "test/unit/auth/networks_test.ts",
      "test/unit/smtp/login_test.ts",
    ],
  },
  // The admin API's token check (the middleware's lines; the handlers behind
  // it are tested end to end, too slow to run per mutant).
  admin: {
    mutate: ["src/admin/app.ts:102-110", "src/admin/token.ts"],
    tests: ["test/unit/admin/app_test.ts", "test/unit/admin/token_test.ts"],
  },
  // Bounces: never about the null sender or a bounce.
  bounce: {
    mutate: ["src/outbound/bounce.ts"],
    tests: ["test/unit/outbound/bounce_test.ts"],
  },
};

const name = process.env.MUTANTS_AREA ?? "bounce";
const area = AREAS[name];
if (!area) throw new Error(`Cannot find mutation area "${name}": use one of ${Object.keys(AREAS)}`);

const only = (process.env.MUTANTS_MUTATE ?? "").split(",").filter(Boolean);

export default {
  testRunner: "command",
  // --no-check: a mutant that breaks a type still runs, and is killed by a test or not.
  commandRunner: { command: `deno test -A --no-check ${area.tests.join(" ")}` },
  // MUTANTS_MUTATE=file[:lines],… narrows a run (Stryker's own "file:10-20" form).
  mutate: only.length > 0 ? only : area.mutate,
  // One mutant at a time: the machine has two cores and other work.
  concurrency: Number(process.env.MUTANTS_CONCURRENCY ?? 1),
  timeoutMS: 10_000,
  reporters: ["clear-text", "progress-append-only", "json"],
  jsonReporter: { fileName: `.test-tmp/mutants/${name}.json` },
  clearTextReporter: { allowColor: false, logTests: false },
  tempDirName: ".stryker-tmp",
  cleanTempDir: true,
  ignorePatterns: ["dist", "data", ".test-tmp", "coverage"],
  plugins: [],
  logLevel: "info",
};
