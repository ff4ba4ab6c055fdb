#!/usr/bin/env bash
# The whole test suite, as `deno task test` runs it:
#   1. unit and end-to-end tests on Deno (the source);
#   2. the same tests on Bun (the source);
#   3. the end-to-end tests against the compiled binary (dist/postern), and
#      test/binary/ (the binary alone: its embedded deno, no network; needs
#      root or user namespaces for unshare).
# Ends with one line, "N passed, N failed", summed over all three runs.
#
# Needs swaks on PATH for the end-to-end tests (Debian: apt-get install swaks).
set -uo pipefail
cd "$(dirname "$0")/.."

reports=.test-tmp/reports
rm -rf "$reports" && mkdir -p "$reports"
if command -v bun >/dev/null 2>&1; then BUN=(bun); else BUN=(npx -y bun@1); fi
command -v swaks >/dev/null || echo "warning: swaks is not installed; end-to-end tests will fail" >&2

deno install >/dev/null

echo "== Deno $(deno --version | head -1 | cut -d' ' -f2): unit and end-to-end tests"
deno test -A --junit-path="$reports/deno.xml" test/

echo "== Bun $("${BUN[@]}" --version): unit and end-to-end tests"
"${BUN[@]}" test --timeout 120000 --reporter=junit --reporter-outfile="$reports/bun.xml" test/ </dev/null

echo "== compiled binary: end-to-end tests"
if bash scripts/build.sh; then
  POSTERN_TARGET=binary deno test -A --junit-path="$reports/binary.xml" test/e2e/ test/binary/*.ts
else
  echo "build failed" >&2
fi

echo "== summary"
deno run --allow-read scripts/junit_summary.ts "$reports/deno.xml" "$reports/bun.xml" "$reports/binary.xml"
