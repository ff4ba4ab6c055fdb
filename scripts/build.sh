#!/usr/bin/env bash
# Builds dist/postern, one self-contained executable, with `bun build
# --compile` (works offline once the npm packages are installed).
#
#   bash scripts/build.sh          the release binary: carries the deno that
#                                  runs TypeScript hooks (gzipped, ~40 MB more)
#   bash scripts/build.sh --slim   without it, for packagers who provide deno
#                                  (hooks.deno, DENO_BIN or deno on PATH);
#                                  POSTERN_SLIM=1 does the same
#
# The embedded deno is the npm package @deno/<platform> at the exact version
# that package.json pins and deno.lock records, taken from node_modules (see
# scripts/pinned_deno.sh); its version, size and SHA-256 go into a manifest
# beside it in the binary.
#
# Users who are online can build a slim binary with Deno instead:
#   deno compile --allow-all --output dist/postern src/main.ts
set -euo pipefail
cd "$(dirname "$0")/.."

slim="${POSTERN_SLIM:-0}"
for arg in "$@"; do
  case "$arg" in
    --slim) slim=1 ;;
    *) echo "usage: bash scripts/build.sh [--slim]" >&2; exit 2 ;;
  esac
done

if command -v bun >/dev/null 2>&1; then BUN=(bun); else BUN=(npx -y bun@1); fi
# A compiled Bun program reads .env files and bunfig.toml from the folder it
# is started in, unless built not to: a .env there would set its variables
# (DENO_BIN, NODE_TLS_REJECT_UNAUTHORIZED, ...) and a bunfig.toml's preload
# would run code inside the server. Postern takes its settings from
# --config and its own environment only.
NO_AUTOLOAD=(--no-compile-autoload-dotenv --no-compile-autoload-bunfig
  --no-compile-autoload-tsconfig --no-compile-autoload-package-json)
if [ ! -d node_modules/smtp-server ] || { [ "$slim" != 1 ] && [ ! -d node_modules/@deno ]; }; then
  if command -v deno >/dev/null 2>&1; then deno install; else "${BUN[@]}" install; fi
fi
mkdir -p dist

# compile OUT [ENTRY...]: one bun build --compile of src/main.ts (plus
# extra entry points, embedded as files named without a content hash), with
# the bytecode laid out by $ORDER when it is set. Split into chunks (ESM;
# splitting needs it): what Postern loads on first use (mailauth, the admin
# app, ACME, the cluster client, nodemailer's client) is a chunk of its own
# whose code, and the node: modules only it imports, load with it. In one
# bundle every node: import sits at the top and loads at start. Idle
# resident memory, same config, copies written as a download writes them:
# 51.5-52.3 MiB in one bundle, 49.6-50.0 MiB split.
compile() {
  local out=$1; shift
  "${BUN[@]}" build --compile "${NO_AUTOLOAD[@]}" --minify --bytecode --format=esm --splitting --sourcemap \
    ${ORDER:+--bytecode-order="$ORDER"} --asset-naming='[name].[ext]' \
    --loader .gz:file --loader .manifest:file src/main.ts "$@" --outfile "$out"
}

# Profile-guided layout: a first build runs start-up and two messages
# (scripts/bytecode_order.ts) and records the order in which its functions
# first ran; the release build lays its bytecode out in that order, so what
# an idle server has touched sits together (resident when idle: 58.6 MB ->
# 54.7 MB). Without a training run (no loopback, say) the build goes on
# unordered, and says so.
ordered() {  # ordered [ENTRY...]
  local order=dist/.bytecode-order
  ORDER='' compile dist/.postern-training "$@"
  if "${BUN[@]}" scripts/bytecode_order.ts dist/.postern-training "$order"; then
    ORDER=$order compile dist/postern "$@"
  else
    echo "build: WARNING: no training run; the bytecode is laid out unordered" >&2
    ORDER='' compile dist/postern "$@"
  fi
  rm -f dist/.postern-training dist/.postern-training.map "$order"
  # Each chunk's source map is embedded in the binary too (stack traces are
  # mapped without these files); the copies left in dist/ only pile up.
  rm -f dist/*.js.map
}

if [ "$slim" = 1 ]; then
  ordered
  ls -l dist/postern
  exit 0
fi

deno_bin="$(bash scripts/pinned_deno.sh)"
version="$("$deno_bin" --version | head -1 | cut -d' ' -f2)"
package="$(basename "$(dirname "$deno_bin")")"
sha256="$( (sha256sum "$deno_bin" 2>/dev/null || shasum -a 256 "$deno_bin") | cut -d' ' -f1)"
size="$(wc -c <"$deno_bin" | tr -d ' ')"

# Compressing takes a few seconds: reuse the last one while the hash is the same.
embed=dist/embed
manifest="{\"version\":\"$version\",\"sha256\":\"$sha256\",\"size\":$size,\"package\":\"@deno/$package\"}"
mkdir -p "$embed"
if [ ! -f "$embed/hook-deno.gz" ] || [ "$(cat "$embed/hook-runtime.manifest" 2>/dev/null)" != "$manifest" ]; then
  rm -f "$embed/hook-runtime.manifest"
  gzip -6 -c "$deno_bin" >"$embed/hook-deno.gz.tmp"
  mv "$embed/hook-deno.gz.tmp" "$embed/hook-deno.gz"
  printf '%s' "$manifest" >"$embed/hook-runtime.manifest"
fi

# The two extra entry points are embedded as files (Bun.embeddedFiles).
ordered "$embed/hook-deno.gz" "$embed/hook-runtime.manifest"
echo "embedded hook runtime: deno $version ($size bytes, sha256 $sha256)"
rm -f dist/hook-deno.js.map dist/hook-runtime.js.map
ls -l dist/postern
