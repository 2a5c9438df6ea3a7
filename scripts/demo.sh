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
echo "== rows read back from the agent's log ($work/state/log)"
"$dir/cli/trackctl" dump --state-dir "$work/state"
echo
kill -TERM "$agent"
wait "$agent" && echo "== agent stopped cleanly (state kept in $work)"
trap - EXIT
