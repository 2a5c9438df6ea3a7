"""Harness for the trackd Python package's tests.

What crosses a process boundary is tested with separate processes: a test
writes a small script, runs it with this interpreter against a real agent
(tests/e2e's Agent, reused from tests/e2e/conftest.py), and checks what the
agent stored (`trackctl dump --state-dir`, JSON lines) or answers (trackd.Api).

Environment (set by ctest, see client-shim/CMakeLists.txt): TRACKD_LIB (the
built libtrackd.so), TRACKD_BIN and TRACKCTL_BIN (agent and CLI).
"""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PKG_DIR = Path(__file__).resolve().parent.parent
REPO = PKG_DIR.parent.parent
sys.path.insert(0, str(PKG_DIR))

_spec = importlib.util.spec_from_file_location("trackd_e2e_harness",
                                               REPO / "tests" / "e2e" / "conftest.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

STORE_SKIP = "agent run store not available yet"


def require(*names):
    missing = [n for n in names if not os.environ.get(n) or not os.path.exists(os.environ[n])]
    if missing:
        pytest.fail(f"not set or not found (run through ctest): {missing}")


class Env:
    """Runs Python scripts as separate processes with the package importable,
    the test's libtrackd, and a private spool dir (XDG_STATE_HOME)."""

    def __init__(self, tmp_path: Path):
        require("TRACKD_LIB")
        self.dir = tmp_path
        self.vars = dict(os.environ)
        self.vars.pop("TRACKD_SOCKET", None)
        self.vars.pop("PYTHONUNBUFFERED", None)  # ordinary buffering, as users have
        self.vars.update(PYTHONPATH=str(PKG_DIR), XDG_STATE_HOME=str(tmp_path / "xdg"))
        self.count = 0

    def script(self, body: str) -> Path:
        self.count += 1
        path = self.dir / f"script{self.count}.py"
        path.write_text(textwrap.dedent(body))
        return path

    def popen(self, body: str, **extra_env) -> subprocess.Popen:
        env = dict(self.vars, **extra_env)
        return subprocess.Popen([sys.executable, str(self.script(body))], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, body: str, timeout: float = 60, check: bool = True,
            **extra_env) -> subprocess.CompletedProcess:
        env = dict(self.vars, **extra_env)
        r = subprocess.run([sys.executable, str(self.script(body))], env=env,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"script failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def spool_files(self):
        return sorted((self.dir / "xdg" / "trackd" / "spool").glob("*/*.spool"))


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


@pytest.fixture
def agent(tmp_path):
    require("TRACKD_BIN", "TRACKCTL_BIN")
    a = harness.Agent(tmp_path)
    yield a
    if a.proc and a.proc.poll() is None:
        a.proc.kill()
        a.proc.wait()


# The agent's own records for a run (its system-metrics samples and the run's
# environment): not what the client sent, left out unless asked for by kind.
AGENT_RECORDS = ("stats", "metadata")


def records(agent, run_id=None, kind=None):
    """What the agent stored, in log order, as trackctl dump prints it."""
    out = agent.dump()
    return [r for r in out if (run_id is None or r["run_id"] == run_id)
            and (r["type"] == kind if kind else r["type"] not in AGENT_RECORDS)]


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def probe_run_store(agent):
    """Skips the test (visibly) when the agent cannot answer run queries yet."""
    import trackd
    try:
        trackd.Api(socket=agent.url, timeout=5).runs()
    except trackd.AgentError as e:
        if "unknown query kind" in str(e):
            pytest.skip(STORE_SKIP)
        raise
    except trackd.AgentUnavailableError:
        if agent.proc.poll() is not None:  # an agent that cannot parse queries at all
            pytest.skip(STORE_SKIP)
        raise


@pytest.fixture
def store(agent):
    """A started agent with a run store (else the test is skipped)."""
    agent.start()
    probe_run_store(agent)
    return agent


def api_run(agent, path, timeout=10.0, until=None):
    """trackd.Api().run(path), waiting for the agent to have materialised it
    (and for until(run) to hold, if given)."""
    import trackd
    api = trackd.Api(socket=agent.url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = api.run(path)
            if until is None or until(r):
                return r
        except trackd.NotFoundError:
            pass
        if time.monotonic() >= deadline:
            return api.run(path)
        time.sleep(0.05)


def dump_json(obj):
    return json.dumps(obj, sort_keys=True)
