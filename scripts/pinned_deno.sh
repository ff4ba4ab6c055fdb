#!/usr/bin/env bash
# Prints the path of the deno executable pinned for this platform: the npm
# package @deno/<platform> in node_modules, at the exact version package.json
# pins and deno.lock records. Fails when it is missing or disagrees.
#
# The platform packages are pinned directly rather than through the package
# "deno": that one puts a Node shim (bin.cjs) in node_modules/.bin, which
# `deno task` puts first on PATH and which hands deno only descriptors 0-2.
set -euo pipefail
cd "$(dirname "$0")/.."

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) echo "pinned_deno.sh: no pinned deno for $(uname -s)" >&2; exit 1 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "pinned_deno.sh: no pinned deno for $(uname -m)" >&2; exit 1 ;;
esac
platform="$os-$arch"
[ "$os" = linux ] && platform="$platform-glibc"

dir="node_modules/@deno/$platform"
if [ ! -x "$dir/deno" ]; then
  echo "pinned_deno.sh: $dir/deno is missing; run deno install" >&2
  exit 1
fi
version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$dir/package.json" | head -1)"
if ! grep -q "\"@deno/$platform@$version\"" deno.lock; then
  echo "pinned_deno.sh: node_modules has @deno/$platform $version, which deno.lock does not record; run deno install" >&2
  exit 1
fi
found="$(cd "$dir" && pwd -P)/deno"
reported="$("$found" --version | head -1 | cut -d' ' -f2)"
if [ "$reported" != "$version" ]; then
  echo "pinned_deno.sh: $found reports deno $reported, not $version" >&2
  exit 1
fi
echo "$found"
