#!/usr/bin/env bash
# Installs the Debian packages trackd needs to build and test, when missing.
# Then installs the web UI's npm packages (ui/package.json: uPlot, which CMake
# builds into trackctl, and puppeteer-core for the browser tests) with `npm ci`
# from ui/package-lock.json. Idempotent; needs root (or sudo) only when a Debian
# package is missing.
set -euo pipefail

PACKAGES=(
  gcc make libc6-dev cmake pkg-config
  libnng-dev libprotobuf-c-dev protobuf-c-compiler libcurl4-openssl-dev libyaml-dev
  libjson-c-dev  # the wandb sink reads W&B answers with json-c
  libmicrohttpd-dev  # trackctl ui and the agent's /metrics: HTTP servers with bounded connections, timeouts, head size
  libssl-dev  # libcrypto: SHA-256 of files (agent blob store, libtrackd)
  zlib1g-dev  # libtrackd encodes raw pixels as PNG
  python3 python3-pytest
  git            # tests: real repositories for the run metadata's git facts and dirty flag
  python3-yaml   # the Python package reads YAML config files with PyYAML
  python3-numpy  # tests: numpy arrays in rows become lists or histograms
  dpkg-dev file  # scripts/package.sh: dpkg-shlibdeps computes Depends, CPack needs file
  clang-format   # scripts/format-check.sh: CI checks every C file against .clang-format
  nodejs npm     # trackctl ui: npm installs uPlot (built into trackctl) and puppeteer-core
  chromium       # tests/e2e/test_ui.py drives it headless through puppeteer-core
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ui/node_modules from ui/package-lock.json, unless already installed from it
# (npm writes node_modules/.package-lock.json last, so its being newer means a
# complete install of the current lock).
npm_ci() {
  local ui="$ROOT/ui"
  if [ -f "$ui/node_modules/.package-lock.json" ] &&
     [ "$ui/node_modules/.package-lock.json" -nt "$ui/package-lock.json" ]; then
    return 0
  fi
  echo "setup: npm ci in ui/" >&2
  (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error)
}

missing=()
for p in "${PACKAGES[@]}"; do
  # A Node.js from elsewhere (e.g. NodeSource's nodejs, which bundles npm and
  # conflicts with Debian's npm) serves as well as Debian's.
  case "$p" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  npm_ci
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  echo "setup: missing packages and no root/sudo: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
npm_ci
