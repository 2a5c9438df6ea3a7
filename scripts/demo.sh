#!/usr/bin/env bash
# The main job, end to end: installs what is missing, builds, starts an agent on
# a temporary state dir, runs the example training against it, prints the rows
# read back from the agent's transaction log, and stops the agent.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup-deps.sh"
dir=$("$top/scripts/build.sh")

work=$(mktemp -d /tmp/trackd-demo.XXXXXX)
export TRACKD_SOCKET="ipc://$work/trackd.sock"
"$dir/agent/cmd/trackd" --state-dir "$work/state" --listen "$TRACKD_SOCKET" 2>"$work/agent.log" &
agent=$!
cleanup() { kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do
  "$dir/cli/trackctl" status >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== agent"
"$dir/cli/trackctl" status
echo
echo "== training (examples/train.c)"
"$dir/examples/train"
echo
echo "== history rows read back from the agent's transaction log ($work/state/log)"
"$dir/cli/trackctl" dump --state-dir "$work/state" --history
echo
# The local sink materialises the run a moment after the log has it.
run=""
for _ in $(seq 100); do
  run=$("$dir/cli/trackctl" runs --state finished --json 2>/dev/null |
        /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"]; print(r[-1]["path"] if r else "")' 2>/dev/null || true)
  [ -n "$run" ] && break
  sleep 0.1
done
echo "== the run in the agent's local store"
"$dir/cli/trackctl" runs
echo
"$dir/cli/trackctl" show "$run"
echo
kill -TERM "$agent"
wait "$agent" && echo "== agent stopped cleanly (state kept in $work)"
trap - EXIT
