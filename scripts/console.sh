#!/bin/sh
# The operations console (console/): `deps` installs its own few npm packages (Preact, uPlot,
# esbuild) when its lock changed; `build` (the default) does that, then builds console/dist when a
# source is newer than the build. Idempotent; the bootstrap, `npm run typecheck` and the console
# tests call it.
set -eu
cd "$(dirname "$0")/.."
say() { printf 'console: %s\n' "$*"; }

stamp=console/node_modules/.argus-installed
lock_hash=$(sha256sum console/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  say "installing its npm dependencies"
  npm ci --prefix console --no-audit --no-fund >/dev/null
  echo "$lock_hash" > "$stamp"
fi
[ "${1:-build}" = deps ] && exit 0
if [ ! -f console/dist/index.html ] ||
  [ -n "$(find console/src console/build.mjs console/package-lock.json -newer console/dist/index.html | head -n 1)" ]; then
  say "building"
  node console/build.mjs
else
  say "built"
fi
