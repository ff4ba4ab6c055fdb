#!/usr/bin/env bash
# Mutation testing (StrykerJS, command test runner on Deno) of the code
# behind Postern's promises, one area after the other, or the areas named:
#   deno task mutants [spool|queue|recipient|sandbox|auth|admin|bounce]…
# Each area's report goes to .test-tmp/mutants/<area>.json; the last lines
# are the score per area. Not part of CI (tens of minutes).
# Stryker 10 wants Node 22; it runs on Deno as well, which the tests need anyway.
set -uo pipefail
cd "$(dirname "$0")/.."

deno install >/dev/null
areas=("$@")
[ ${#areas[@]} -gt 0 ] || areas=(spool queue recipient sandbox auth admin bounce)
mkdir -p .test-tmp/mutants
status=0
for area in "${areas[@]}"; do
  echo "== mutants: $area"
  MUTANTS_AREA="$area" deno run -A node_modules/@stryker-mutator/core/bin/stryker.js \
    run scripts/stryker.config.mjs || status=1
done
echo "== mutation scores"
deno run --allow-read scripts/mutants_summary.ts "${areas[@]}"
exit $status
