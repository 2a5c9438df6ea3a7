#!/usr/bin/env bash
# Configures and builds trackd. Usage: scripts/build.sh [BUILD_DIR]
# TRACKD_SANITIZE=1 builds with ASan+UBSan (default dir build-asan).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if [ "${TRACKD_SANITIZE:-0}" = 1 ]; then
  dir=${1:-$top/build-asan}
  san=ON
else
  dir=${1:-$top/build}
  san=OFF
fi
cmake -S "$top" -B "$dir" -DTRACKD_SANITIZE=$san >/dev/null
cmake --build "$dir" -j "$(nproc)" >/dev/null
echo "$dir"
