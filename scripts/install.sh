#!/usr/bin/env bash
# Builds trackd and installs it under a prefix, for trying it without Debian
# packages (scripts/package.sh makes those). Usage: scripts/install.sh [PREFIX]
#
#   PREFIX (default ~/.local)   bin/trackd, bin/trackctl, lib/libtrackd.so*, headers,
#                               man pages, the systemd user unit
#   the Python package          where `python3` (the one on PATH) imports from PREFIX:
#                               its user site for ~/.local, its own site-packages for a
#                               venv given as PREFIX ("$VIRTUAL_ENV"), else
#                               PREFIX/lib/python3/dist-packages (then set PYTHONPATH:
#                               the script says so)
#
# The Python package finds the library it was installed with (trackd/_install.py,
# written here, relative to the package), so the prefix can be anywhere.
# TRACKD_BUILD_DIR=DIR installs DIR as it is built, without building (the tests
# install the build they test this way).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:-$HOME/.local}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)

if [ -n "${TRACKD_BUILD_DIR:-}" ]; then
  dir=$TRACKD_BUILD_DIR
else
  "$top/scripts/setup-deps.sh"
  dir=$("$top/scripts/build.sh")
fi
# The Python package is installed below, where this python3 reads it, not by the
# generic rule (a Debian-layout dir that only /usr's python reads).
for component in agent lib dev; do
  cmake --install "$dir" --prefix "$prefix" --component "$component" >/dev/null
done

libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$dir/CMakeCache.txt")
case $libdir in /*) ;; *) libdir=$prefix/${libdir:-lib} ;; esac
lib=$(ls "$libdir"/libtrackd.so.[0-9]* 2>/dev/null | head -n 1)
[ -n "$lib" ] || { echo "install: no libtrackd.so.N in $libdir" >&2; exit 1; }
lib=${lib%%.so.*}.so.$(basename "$lib" | sed 's/^libtrackd\.so\.\([0-9]*\).*/\1/')

pydir=$(python3 - "$prefix" <<'EOF'
import os, site, sys, sysconfig
prefix = os.path.realpath(sys.argv[1])
if site.ENABLE_USER_SITE and prefix == os.path.realpath(site.getuserbase()):
    print(site.getusersitepackages())
elif prefix == os.path.realpath(sys.prefix):
    print(sysconfig.get_path("purelib"))
else:
    print(os.path.join(prefix, "lib", "python3", "dist-packages"))
EOF
)
mkdir -p "$pydir/trackd/wandb"
cp "$top"/client-shim/python/trackd/*.py "$pydir/trackd/"
cp "$top"/client-shim/python/trackd/wandb/*.py "$pydir/trackd/wandb/"  # `trackctl run`'s wandb
rel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
  "$lib" "$pydir/trackd")
cat >"$pydir/trackd/_install.py" <<EOF
"""Written by scripts/install.sh: where the installed libtrackd is, relative to
this package's directory."""
LIBRARY = "$rel"
EOF

echo "installed under $prefix: trackd, trackctl ($prefix/bin), $lib"
echo "Python package: $pydir/trackd"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "add the commands to PATH: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
if ! python3 -c 'import sys; sys.exit(sys.argv[1] not in sys.path)' "$pydir" 2>/dev/null; then
  echo "make python3 find the package: export PYTHONPATH=\"$pydir\""
fi
