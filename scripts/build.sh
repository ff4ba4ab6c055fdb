#!/usr/bin/env bash
# Builds dist/postern, one self-contained executable, with `bun build
# --compile` (works offline once the npm packages are installed).
#
# Users who are online can build with Deno instead:
#   deno compile --allow-all --output dist/postern src/main.ts
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v bun >/dev/null 2>&1; then BUN=(bun); else BUN=(npx -y bun@1); fi
if [ ! -d node_modules/smtp-server ]; then
  if command -v deno >/dev/null 2>&1; then deno install; else "${BUN[@]}" install; fi
fi
mkdir -p dist
"${BUN[@]}" build --compile --minify --sourcemap src/main.ts --outfile dist/postern
ls -l dist/postern
