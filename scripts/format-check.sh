#!/usr/bin/env bash
# Checks that every hand-written C file follows .clang-format (clang-format 14,
# Debian 12's). Usage: scripts/format-check.sh        (lists the files that do not)
#                      scripts/format-check.sh --fix  (formats them in place)
# Generated code (protobuf-c output, in the build dirs) is not in git, so not here.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || {
  echo "format-check: clang-format missing (scripts/setup-deps.sh installs it)" >&2
  exit 1
}
mapfile -t files < <(git ls-files '*.c' '*.h')
if [ "${1:-}" = --fix ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  printf 'format-check: not clang-format clean (scripts/format-check.sh --fix):\n' >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format-check: ${#files[@]} C files clang-format clean"
