#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test (ctest:
# unit tests beside each module, end-to-end tests in tests/).
#   TRACKD_SANITIZE=1         the same suite under ASan+UBSan
#   TRACKD_TEST_ITERATIONS=N  more iterations in the fault loops (default: small)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup-deps.sh"
dir=$("$top/scripts/build.sh")
if [ "${TRACKD_SANITIZE:-0}" = 1 ]; then
  # Leaks are checked; NNG's own objects still being reaped at exit are not ours
  # (tests/lsan.supp says why).
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$top/tests/lsan.supp:print_suppressions=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
cd "$dir"
ctest --output-on-failure -j 2 "$@"
