#!/usr/bin/env bash
# Installs the Debian packages trackd needs to build and test, when missing.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
  gcc make libc6-dev cmake pkg-config
  libnng-dev libprotobuf-c-dev protobuf-c-compiler libcurl4-openssl-dev libyaml-dev
  libjson-c-dev  # the wandb sink reads W&B answers with json-c
  python3 python3-pytest
  python3-yaml   # the Python package reads YAML config files with PyYAML
  python3-numpy  # tests: numpy arrays in rows become lists or histograms
  dpkg-dev file  # scripts/package.sh: dpkg-shlibdeps computes Depends, CPack needs file
  clang-format   # scripts/format-check.sh: CI checks every C file against .clang-format
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

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
