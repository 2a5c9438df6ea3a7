"""The README's "Using it", as a newcomer runs it: the first shell block, line by
line as written (then the one of "Coming from W&B", with what it installed), in
a clean environment (a new HOME, a standard PATH, Debian's python3, nothing of
this checkout's build on any path), then the Python block with the package it
installed. Only what must differ differs: RUN becomes a run id (the README says
where to get one), and the install uses the build under test (TRACKD_BUILD_DIR,
the switch scripts/install.sh documents) instead of building another.

Also: the installed package finds its library from a venv (a copy of the
package that was not installed with it) and when moved."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN

TOP = Path(__file__).resolve().parents[2]
README = TOP / "README.md"
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_DIR = Path(BIN["trackd"]).resolve().parents[2] if BIN.get("trackd") else None


def blocks(section):
    """The fenced code blocks of a README section: [(language, text)]."""
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end > 0 else None]
    return re.findall(r"```(\w*)\n(.*?)```", body, re.S)


def sanitizer_env():
    """What Debian's python3 needs to load an instrumented libtrackd (as the
    client_python tests do); pytest.skip under TSan, which needs more."""
    lib = BUILD_DIR / "client-shim" / "libtrackd.so"
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    if "libtsan" in ldd:
        pytest.skip("a ThreadSanitizer libtrackd does not load into an uninstrumented python3")
    m = re.search(r"(\S*libasan\.so\S*) => (\S+)", ldd)
    if m:
        return {"LD_PRELOAD": m.group(2), "ASAN_OPTIONS": "detect_leaks=0"}
    return {}


@pytest.fixture
def newcomer(tmp_path):
    if not BUILD_DIR or not (BUILD_DIR / "CMakeCache.txt").exists():
        pytest.skip("needs the build dir of the binaries under test")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": STANDARD_PATH, "LANG": "C.UTF-8",
           "TRACKD_BUILD_DIR": str(BUILD_DIR)}
    env.update(sanitizer_env())
    return home, env


def run_lines(lines, env, timeout=300):
    """Runs the lines as one bash script from the checkout (set -e: every line
    must succeed); a background agent the lines leave is stopped at the end."""
    script = ("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
              + "\n".join(lines) + "\n")
    r = subprocess.run(["bash", "-c", script], cwd=TOP, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{script}\n→ {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


# A run of the store for RUN (the 10-epoch one, the last listed), once the
# example's two runs are there: the README leaves picking it to the reader.
WAIT_FOR_RUNS = """for _ in $(seq 100); do
  [ "$(trackctl runs --state finished --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["runs"]))')" = 2 ] && break
  sleep 0.1
done"""
A_RUN = ('"$(trackctl runs --json | python3 -c '
         "'import json, sys; print(json.load(sys.stdin)[\"runs\"][-1][\"path\"])')\"")


def test_using_it_works_as_written(newcomer):
    home, env = newcomer
    (lang, first), *_ = blocks("Using it")
    assert lang == "sh"
    lines = first.splitlines()
    needs_run = [i for i, line in enumerate(lines) if re.search(r"\bRUN\b", line.split("#")[0])]
    assert needs_run, "the block shows the commands that take a RUN"
    script = list(lines)
    for i in needs_run:
        script[i] = re.sub(r"\bRUN\b", lambda m: A_RUN, script[i], count=1)
    script.insert(needs_run[0], WAIT_FOR_RUNS)
    r = run_lines(script, env)
    assert "Run summary:" in r.stderr  # examples/train.py's footers
    assert re.search(r"^Run \w+", r.stdout, re.M) and "_step" in r.stdout, r.stdout
    assert (home / "trackd-state").is_dir()
    # The Python block, with the package the block installed, against the agent
    # the block starts.
    python = [text for lang, text in blocks("Using it") if lang == "python"]
    assert python, "the README shows the Python API"
    agent = [line.split("#")[0].rstrip() for line in lines
             if line.startswith(("trackd ", "export "))]
    (home / "readme_example.py").write_text(python[0])
    r = run_lines([*agent, "python3 ~/readme_example.py", "kill %1"], env)
    assert "'finished'" in r.stdout, r.stdout
    # "Coming from W&B" with what the block installed: `trackctl run` gives the
    # docs' unchanged W&B script the installed package's wandb module.
    (sh,) = [text for lang, text in blocks("Coming from W&B")
             if lang == "sh" and "trackctl run" in text]
    r = run_lines([*agent, *sh.splitlines(), "kill %1"], env)
    assert "lr: 0.01" in r.stdout and "wandb: Find logs at: " in r.stderr, r.stderr


def test_installed_package_finds_its_library_anywhere(newcomer, tmp_path):
    home, env = newcomer
    prefix = tmp_path / "prefix"
    r = run_lines([f"scripts/install.sh {prefix}"], env)
    pydir = prefix / "lib" / "python3" / "dist-packages"
    assert f'export PYTHONPATH="{pydir}"' in r.stdout, r.stdout
    assert f'export PATH="{prefix}/bin:$PATH"' in r.stdout, r.stdout
    probe = "import trackd._lib as l; print(l.lib()._name)"
    # Where the install put it.
    r = run_lines([f"python3 -c '{probe}'"], dict(env, PYTHONPATH=str(pydir)))
    assert r.stdout.strip().startswith(str(prefix / "lib")), r.stdout
    # Moved, library and all.
    moved = tmp_path / "moved"
    shutil.move(prefix, moved)
    r = run_lines([f"python3 -c '{probe}'"],
                  dict(env, PYTHONPATH=str(moved / "lib" / "python3" / "dist-packages")))
    assert r.stdout.strip().startswith(str(moved / "lib")), r.stdout
    # A bare copy of the package in a venv, the library installed elsewhere: the
    # prefix of the trackd on PATH; then the venv itself as the prefix.
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python3"), "-c",
                           "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    shutil.copytree(TOP / "client-shim" / "python" / "trackd", Path(site) / "trackd")
    r = run_lines([f"{venv}/bin/python3 -c '{probe}'"],
                  dict(env, PATH=f"{moved}/bin:{STANDARD_PATH}"))
    assert r.stdout.strip().startswith(str(moved / "lib")), r.stdout
    shutil.rmtree(Path(site) / "trackd")
    r = run_lines([f". {venv}/bin/activate", f"scripts/install.sh \"$VIRTUAL_ENV\"",
                   f"cd / && python3 -c '{probe}'"], env)
    assert "PYTHONPATH" not in r.stdout, r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith(str(venv / "lib")), r.stdout
