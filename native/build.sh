#!/bin/sh
# Builds the local backend's helpers into dist/native/. Static, so that they
# run after entering a sandbox whose root has no libc. Without a C compiler
# the local backend reports itself unavailable and says why.
set -eu
cd "$(dirname "$0")/.."
mkdir -p dist/native
CC=${CC:-cc}
if ! command -v "$CC" >/dev/null 2>&1; then
  echo "paddock: no C compiler ($CC); the local runner backend will be unavailable" >&2
  exit 0
fi
for helper in nsexec pause; do
  out="dist/native/paddock-$helper"
  if [ ! -x "$out" ] || [ "native/$helper.c" -nt "$out" ]; then
    "$CC" -O2 -Wall -Wextra -static -o "$out.tmp" "native/$helper.c"
    mv "$out.tmp" "$out"
  fi
done
