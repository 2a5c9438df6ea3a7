#!/usr/bin/env bash
# Fuzzes trackd (R11) with libFuzzer under ASan+UBSan, in a separate clang build.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]        (default 60)
#   TRACKD_FUZZ_TARGETS="fuzz_config ..."  only these targets
#   TRACKD_FUZZ_BUILD_DIR=DIR              build dir (default build-fuzz)
# First every committed seed and regression input runs once (ctest -L fuzz), so a
# known crash fails fast. Then the targets fuzz side by side for the given time
# each, starting from the committed seeds, the regression inputs and the corpus
# grown by earlier runs (kept in the build dir). Any crash, leak, timeout or
# out-of-memory input is copied to tests/fuzz/regressions/<target>/ and the
# script fails: commit the input with the fix, it then runs in every build.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
dir=${TRACKD_FUZZ_BUILD_DIR:-$top/build-fuzz}
read -r -a targets <<<"${TRACKD_FUZZ_TARGETS:-fuzz_validate fuzz_txlog_reader fuzz_config fuzz_wandb_import}"

"$top/scripts/setup-deps.sh"
# clang and its sanitizer/libFuzzer runtimes: only this build needs them.
missing=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz: installing ${missing[*]}" >&2
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S "$top" -B "$dir" -DCMAKE_C_COMPILER=clang -DTRACKD_SANITIZE=ON -DTRACKD_FUZZ=ON >/dev/null
if [ ! -f "$dir/tests/fuzz/CTestTestfile.cmake" ]; then
  echo "fuzz: tests/fuzz is not part of the build (add_subdirectory(fuzz) in tests/CMakeLists.txt)" >&2
  exit 1
fi
cmake --build "$dir" -j "$(nproc)" --target "${targets[@]}" >/dev/null

echo "== fuzz: committed seeds and regression inputs"
labels=$(printf '%s_inputs|' "${targets[@]}")
(cd "$dir" && ctest -L fuzz -R "^(${labels%|})\$" --output-on-failure)

echo "== fuzz: ${secs}s per target: ${targets[*]}"
pids=()
for t in "${targets[@]}"; do
  work=$dir/fuzz-work/$t
  rm -f "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*
  mkdir -p "$work/corpus"
  args=(-max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$work/")
  [ -f "$top/tests/fuzz/$t.dict" ] && args+=(-dict="$top/tests/fuzz/$t.dict")
  # New inputs go to the first directory only: the committed ones stay as they are.
  dirs=("$work/corpus" "$top/tests/fuzz/corpus/$t")
  [ -d "$top/tests/fuzz/regressions/$t" ] && dirs+=("$top/tests/fuzz/regressions/$t")
  "$dir/tests/fuzz/$t" "${args[@]}" "${dirs[@]}" >"$work/log" 2>&1 &
  pids+=($!)
done

failed=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  work=$dir/fuzz-work/$t
  rc=0
  wait "${pids[$i]}" || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log")
  last=$(grep -E '^#[0-9]+' "$work/log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
  echo "$t: ${execs:-?} runs, ${speed:-?} exec/s, ${last:-no stats}"
  found=0
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -e "$f" ] || continue
    mkdir -p "$top/tests/fuzz/regressions/$t"
    cp "$f" "$top/tests/fuzz/regressions/$t/"
    echo "$t: FOUND $(basename "$f") -> tests/fuzz/regressions/$t/$(basename "$f")" >&2
    found=1
  done
  if [ $found = 1 ] || [ $rc != 0 ]; then
    failed=1
    # The report: from the sanitizer's or the harness's first line to the summary.
    sed -n '/contract broken\|ERROR: \|runtime error\|==ERROR/,/^SUMMARY/p' "$work/log" | head -n 60 >&2
    [ $found = 1 ] || { echo "$t: exited with $rc; see $work/log" >&2; tail -n 20 "$work/log" >&2; }
  fi
done
[ $failed = 0 ] && echo "fuzz: no findings"
exit $failed
