#!/bin/sh
# Installs everything Argus needs on Debian 12, as root, idempotently: Debian packages (GStreamer
# 1.22 with dev headers for the Node binding, the RTSP server, ffmpeg, the sample street video,
# Mosquitto and PostgreSQL for tests, Chromium for console tests), npm dependencies (onnxruntime-node
# CPU-only, nothing fetched from outside the npm registry), the console's build and the pretrained
# models.
# Safe to run again: it only does what is missing.
set -eu
cd "$(dirname "$0")/.."

APT_PACKAGES="
  build-essential python3 pkg-config ca-certificates
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-plugins-base-apps
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp python3-gi
  ffmpeg opencv-doc mosquitto postgresql chromium
"
SAMPLE=/usr/share/doc/opencv-doc/examples/data/vtest.avi
CACHE="${ARGUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/argus}"

say() { printf 'bootstrap: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ] && [ -z "${ARGUS_SKIP_APT:-}" ]; then
  say "run as root (it installs Debian packages), or set ARGUS_SKIP_APT=1 if they are installed"
  exit 1
fi

if [ -z "${ARGUS_SKIP_APT:-}" ]; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    say "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    say "Debian packages present"
  fi
fi

# Minimal images exclude /usr/share/doc from packages; then take the sample video out of the .deb.
if [ ! -f "$SAMPLE" ] && [ ! -f "$CACHE/samples/vtest.avi" ]; then
  say "sample video missing from $SAMPLE; extracting it from the opencv-doc package"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download opencv-doc >/dev/null 2>&1 && dpkg-deb --fsys-tarfile opencv-doc_*.deb | tar -x ".$SAMPLE")
  mkdir -p "$CACHE/samples"
  mv "$tmp$SAMPLE" "$CACHE/samples/vtest.avi"
  rm -rf "$tmp"
fi

if ! command -v node >/dev/null 2>&1; then
  say "Node.js 20 or newer is required and was not found on PATH"
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  say "Node.js $(node --version) is too old: Argus needs Node.js 20 or newer"
  exit 1
fi

# onnxruntime-node must not download CUDA providers from outside the npm registry; the CPU
# binaries ship inside the package.
export ONNXRUNTIME_NODE_INSTALL=skip
stamp=node_modules/.argus-installed
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund
  echo "$lock_hash" > "$stamp"
else
  say "npm dependencies present"
fi
# typebox's 683 modules cost every process 1.5-3.5 s of start under tsx: bundle them (idempotent)
node scripts/bundle-typebox.mjs

# the operations console: its npm packages and its build (console/dist), when missing or older
sh scripts/console.sh build

say "pretrained models"
ARGUS_LOG_LEVEL="${ARGUS_LOG_LEVEL:-warn}" node bin/argus.mjs models fetch
