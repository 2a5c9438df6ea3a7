"""The official W&B JavaScript SDK (`@wandb/sdk` from npm, run by Node.js), as
the fake's compatibility test and the benchmark's peer scenario use it.

install() puts the pinned version into a cache directory kept between runs
($FAKE_WANDB_JS_DIR, default $TMPDIR/trackd-fake-wandb-js/<version>), one
installer at a time on the machine (a lock file), and answers the
node_modules directory — or None and the reason it cannot (no Node.js >= 18,
no npm, no registry), which callers report (a skipped test, a benchmark row
that says so)."""
import fcntl
import json
import os
import shutil
import subprocess
import tempfile

SDK_VERSION = "0.5.1"
NODE_MIN_MAJOR = 18


def _install_dir():
    base = os.environ.get("FAKE_WANDB_JS_DIR") or os.path.join(
        tempfile.gettempdir(), "trackd-fake-wandb-js")
    return os.path.join(base, SDK_VERSION)


def _installed(d):
    try:
        with open(os.path.join(d, "node_modules", "@wandb", "sdk", "package.json")) as f:
            return json.load(f).get("version") == SDK_VERSION
    except (OSError, ValueError):
        return False


def install():
    """(node_modules path, None) or (None, why not)."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node:
        return None, ("Node.js not found (install Debian's nodejs and npm to run the "
                      "W&B JS SDK)")
    out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    try:
        major = int(out.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < NODE_MIN_MAJOR:
        return None, f"Node.js {out} is too old: @wandb/sdk needs >= {NODE_MIN_MAJOR}"
    if not npm:
        return None, "npm not found (needed to install @wandb/sdk)"
    d = _install_dir()
    os.makedirs(os.path.dirname(d), exist_ok=True)
    with open(d + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time on this machine
        if not _installed(d):
            tmp = tempfile.mkdtemp(prefix="install-", dir=os.path.dirname(d))
            with open(os.path.join(tmp, "package.json"), "w") as f:
                json.dump({"name": "fake-wandb-js-check", "private": True,
                           "type": "module"}, f)
            try:
                r = subprocess.run(
                    [npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
                     "--fetch-retries=2", "--fetch-retry-mintimeout=2000",
                     "--fetch-retry-maxtimeout=10000", f"@wandb/sdk@{SDK_VERSION}"],
                    cwd=tmp, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                shutil.rmtree(tmp, ignore_errors=True)
                return None, f"npm install @wandb/sdk@{SDK_VERSION} timed out (no registry?)"
            if r.returncode != 0 or not _installed(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
                tail = (r.stderr or r.stdout).strip().splitlines()[:3]
                return None, (f"could not install @wandb/sdk@{SDK_VERSION} from npm "
                              f"(exit {r.returncode}): {' | '.join(tail)}")
            shutil.rmtree(d, ignore_errors=True)
            os.rename(tmp, d)
    return os.path.join(d, "node_modules"), None
