#!/usr/bin/env bash
# The C unit tests and the end-to-end tests under ThreadSanitizer, in a separate
# build (gcc, as the normal build; its TSan runtime comes with it).
# Usage: scripts/tsan.sh [BUILD_DIR] [-- CTEST_ARGS…]      (default build-tsan)
# Every process of ours is instrumented (agent, libtrackd, test tools); NNG is
# not, and tests/fuzz/tsan.supp silences reports whose racing accesses are both
# inside libnng only. Each process writes its reports to BUILD_DIR/tsan/; the
# script fails if any test fails or any report was written, and prints them.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/build-tsan
if [ $# -gt 0 ] && [ "$1" != -- ]; then
  dir=$1
  shift
fi
[ "${1:-}" = -- ] && shift

"$top/scripts/setup-deps.sh"
# The flags go to every target, the generated protobuf code and the client
# library included; TRACKD_SANITIZE (ASan) must stay off in this build.
tsan="-fsanitize=thread -fno-omit-frame-pointer"
cmake -S "$top" -B "$dir" -DTRACKD_SANITIZE=OFF -DTRACKD_FUZZ=OFF \
  -DCMAKE_C_FLAGS="$tsan" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
  -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread >/dev/null
cmake --build "$dir" -j "$(nproc)" >/dev/null

reports=$dir/tsan
rm -rf "$reports"
mkdir -p "$reports"
# Reports go to files, one per process: that catches races in processes whose
# exit status no test looks at (an agent stopped with SIGKILL, a forked child).
# A process with a race also exits with 66 at its end.
export TSAN_OPTIONS="suppressions=$top/tests/fuzz/tsan.supp halt_on_error=0 exitcode=66 second_deadlock_stack=1 log_path=$reports/report ${TSAN_OPTIONS:-}"
status=0
# client_python is left out: Debian's python3 is not instrumented and cannot load
# a TSan-built libtrackd (static TLS); the C client tests cover the same threads.
# The packaging tests check files and package metadata, not threads; the fault
# suite (kill loops, power cuts, a 1 GiB backlog) runs in the normal and ASan
# builds, where its time fits CI.
(cd "$dir" && ctest --output-on-failure -j 2 -LE fuzz \
   -E "client_python|^e2e$|^e2e_packaging$|^fault$" "$@") || status=$?
# End to end under TSan: the agent's threads (ingest worker, query thread, local
# and wandb sinks, log flusher) with real clients. Three tests are left to the
# normal and ASan runs: their own deadlines (a 5 s status answer while 12 clients
# push 4 MiB batches; upload deadlines of the wandb fault matrix) do not hold at
# TSan's 5–15× slowdown, which is a property of the run, not of the code.
(cd "$dir" && env TRACKD_TEST_SANITIZER=thread \
   TRACKD_BIN="$dir/agent/cmd/trackd" TRACKCTL_BIN="$dir/cli/trackctl" \
   TRAIN_BIN="$dir/examples/train" PRODUCER_BIN="$dir/tests/producer" \
   RAWCLIENT_BIN="$dir/tests/rawclient" XDG_STATE_HOME="$dir/tests/client-state" \
   /usr/bin/python3 -m pytest -q -p no:cacheprovider "$top/tests/e2e" \
   --ignore="$top/tests/e2e/test_packaging.py" \
   -k "not budget_refuses and not test_runs_upload_like_the_local_store and not test_long_outage_drops_nothing") \
  || status=$?

if compgen -G "$reports/report*" >/dev/null; then
  echo "tsan: reports written:" >&2
  for f in "$reports"/report*; do
    echo "---- $f" >&2
    cat "$f" >&2
  done
  status=1
fi
[ $status = 0 ] && echo "tsan: no races reported"
exit $status
