#!/usr/bin/env bash
# Builds the Debian packages (trackd, libtrackd, libtrackd-dev, python3-trackd)
# into OUT_DIR and prints their paths.
#   scripts/package.sh OUT_DIR [BUILD_DIR]
# BUILD_DIR (default: a temporary directory, removed afterwards) is configured
# for packaging: prefix /usr, no tests, no sanitizers. Keep it to rebuild
# incrementally. cmake/Packaging.cmake describes the packages.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 OUT_DIR [BUILD_DIR]" >&2
  exit 2
fi
mkdir -p "$1"
out=$(cd "$1" && pwd)
if [ $# -eq 2 ]; then
  build=$2
else
  build=$(mktemp -d "${TMPDIR:-/tmp}/trackd-package.XXXXXX")
  trap 'rm -rf "$build"' EXIT
fi
"$top/scripts/setup-deps.sh"
mkdir -p "$build"
log=$build/package.log
# Quiet when it works; the whole log when a step fails.
step() { "$@" >>"$log" 2>&1 || { cat "$log" >&2; echo "package: failed: $*" >&2; exit 1; }; }
: >"$log"
step cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
  -DTRACKD_TESTS=OFF -DTRACKD_SANITIZE=OFF
step cmake --build "$build" -j "$(nproc)"
# cpack stages under $build/_CPack_Packages; only the .deb files go to OUT_DIR.
rm -f "$build"/*.deb
step cpack --config "$build/CPackConfig.cmake" -B "$build"
for deb in "$build"/*.deb; do
  mv -f "$deb" "$out/"
  echo "$out/$(basename "$deb")"
done
