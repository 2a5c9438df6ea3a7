"""Shared harness of the fault suite: the e2e Agent (tests/e2e/conftest.py, loaded
under another module name so it does not clash with this folder's conftest), the
fake W&B backend's client, a fleet of oracle producers, drain waits, and the
knobs that size each scenario (CI by default, `FAULT_LONG=1` / `run --long` for
the big runs, FAULT_<NAME> to set one knob)."""
import importlib.util
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "e2e_harness", os.path.join(HERE, "..", "e2e", "conftest.py"))
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)
Agent, BIN = e2e.Agent, e2e.BIN

sys.path.insert(0, os.path.join(HERE, "..", "fake-wandb"))
from fakewandb_client import FakeWandb  # noqa: E402,F401

import judge  # noqa: E402

PROJECT = "trackd-fault"
ORACLE = os.environ.get("ORACLE_PRODUCER_BIN")
ORACLE_PY = os.path.join(HERE, "oracle_producer.py")
FSYNC_SHIM = os.environ.get("FSYNC_SHIM")
# ASan builds: the sanitizer runtime must be loaded first into processes that
# were not linked with it (Python) or that get another preload (the shim).
ASAN_RUNTIME = os.environ.get("FAULT_ASAN_RUNTIME") or ""


def preload(*libs):
    return " ".join(x for x in (ASAN_RUNTIME, *libs) if x)
LONG = os.environ.get("FAULT_LONG") == "1"
SEED = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(1 << 30))


def knob(name, ci, long):
    """FAULT_<NAME> if set, else the long or the CI value."""
    v = os.environ.get(f"FAULT_{name.upper()}")
    return type(ci)(v) if v else (long if LONG else ci)


def require_tools():
    e2e.require_bins()
    missing = [n for n, v in [("ORACLE_PRODUCER_BIN", ORACLE), ("FSYNC_SHIM", FSYNC_SHIM),
                              ("TRACKD_LIB", os.environ.get("TRACKD_LIB"))]
               if not v or not os.path.exists(v)]
    if missing:
        raise AssertionError(f"not found (run through ctest or tests/fault/run): {missing}")


def emit(verdict):
    """Prints the verdict line (and appends it to FAULT_VERDICTS if set), then
    fails the test with the exact keys if a rule was broken."""
    print(verdict.report(), flush=True)
    path = os.environ.get("FAULT_VERDICTS")
    if path:
        with open(path, "a") as f:
            f.write(verdict.line + "\n")
    assert verdict.ok, verdict.report()


LIVE_FLEETS = []  # killed by the `agents` fixture when a test ends early


class Fleet:
    """Oracle producers (C and Python) logging until told to stop, each with its
    own ledger in `dir`."""

    def __init__(self, agent, directory):
        LIVE_FLEETS.append(self)
        self.agent = agent
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.stop_file = os.path.join(directory, "STOP")
        self.procs = {}
        self.pad_bytes = 0
        self.killed = set()  # run ids of producers killed on purpose

    def _spawn(self, run_id, python, args):
        ledger = os.path.join(self.dir, f"{run_id}.ledger")
        env = dict(self.agent.env)
        env.pop("LD_PRELOAD", None)  # the agent's (fsync shim), not the clients'
        if python:
            cmd = [sys.executable, ORACLE_PY]
            if ASAN_RUNTIME:
                env.update(LD_PRELOAD=ASAN_RUNTIME, ASAN_OPTIONS="detect_leaks=0")
        else:
            cmd = [ORACLE]
        cmd += ["--run-id", run_id, "--ledger", ledger, "--project", PROJECT, *map(str, args)]
        err = open(os.path.join(self.dir, f"{run_id}.stderr"), "w")
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        err.close()
        self.procs[run_id] = p
        return p

    def start(self, n_c=4, n_py=1, sleep_us=200, every=20, pad_bytes=0, rows=None,
              prefix="p", timeout_ms=900000, files_every=0, file_max_bytes=None,
              py_file_max_bytes=None, max_buffer_bytes=None, py_max_spool_bytes=None):
        """files_every K: each producer also saves a file after every K-th row
        (R17), of at most file_max_bytes (Python: py_file_max_bytes)."""
        self.pad_bytes = pad_bytes
        limit = ["--rows", rows] if rows is not None else ["--stop-file", self.stop_file]
        files = ["--files-every", files_every] if files_every else []
        c_files = files + (["--file-max-bytes", file_max_bytes] if files and file_max_bytes
                           else [])
        py_files = files + (["--file-max-bytes", py_file_max_bytes or file_max_bytes]
                            if files and (py_file_max_bytes or file_max_bytes) else [])
        buf = ["--max-buffer-bytes", max_buffer_bytes] if max_buffer_bytes else []
        if py_max_spool_bytes:
            py_files = py_files + ["--max-spool-bytes", py_max_spool_bytes]
        for i in range(n_c):
            self._spawn(f"{prefix}c{i}", False, [*limit, "--sleep-us", sleep_us, "--every",
                                                 every, "--pad-bytes", pad_bytes,
                                                 "--timeout-ms", timeout_ms, *c_files, *buf])
        for i in range(n_py):
            self._spawn(f"{prefix}py{i}", True, [*limit, "--sleep-us", sleep_us, "--every",
                                                 every, "--timeout-ms", timeout_ms, *py_files])
        return self

    def stop(self, timeout=900):
        """Tells the producers to stop logging and waits until they finished."""
        open(self.stop_file, "w").close()
        return self.wait(timeout)

    def wait(self, timeout=900):
        deadline = time.monotonic() + timeout
        for run_id, p in self.procs.items():
            try:
                p.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise AssertionError(f"producer {run_id} did not finish in {timeout}s")
        return {r: p.returncode for r, p in self.procs.items()}

    def live(self, rows=200, files_every=0):
        """Rule 5: a fresh producer after the faults; it must get everything
        through (with files_every, its files too)."""
        files = ["--files-every", files_every] if files_every else []
        p = self._spawn(f"live{len(self.procs)}", False,
                        ["--rows", rows, "--timeout-ms", 60000, *files])
        p.wait(timeout=120)
        return p.returncode

    def kill(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    def victim(self, run_id, args):
        """A C producer that will be killed on purpose (kill_victim): its ledger
        is written line by line."""
        return self._spawn(run_id, False, [*map(str, args), "--line-buffered"])

    def kill_victim(self, run_id):
        p = self.procs.pop(run_id)
        p.kill()
        p.wait()
        self.killed.add(run_id)

    def ledgers(self):
        return judge.read_ledgers(self.dir, self.pad_bytes, self.killed)


def status_or_none(agent):
    """trackctl status, or None when it timed out: the agent answers status on
    the same worker as the batches queued before it, which on a loaded machine
    (an ASan build draining a kill loop's resends) can take longer than
    trackctl's timeout. Callers wait and ask again."""
    try:
        return agent.status()
    except subprocess.CalledProcessError:
        return None


def status_retrying(agent, timeout=120):
    return agent.wait_for(lambda: status_or_none(agent), timeout=timeout, what="status")


def wait_local_drained(agent, ledgers, timeout=300, end_timeout=60):
    """Until the local sink applied every record in the log, then (up to
    end_timeout in all) until every run has ended locally. Returns the problems
    (runs that never ended) for the verdict."""
    agent.wait_for(lambda: (status_or_none(agent) or {}).get("local_sink_backlog") == 0,
                   timeout=timeout, what="local sink to drain")
    deadline = time.monotonic() + end_timeout
    problems = []
    for lg in ledgers:
        while agent.run_state(lg.run_id) in (None, "running"):
            if time.monotonic() > deadline:
                problems.append(f"run {lg.run_id} never ended locally (state "
                                f"{agent.run_state(lg.run_id)})")
                break
            time.sleep(0.05)
    return problems


def local_history_count(agent, run_id):
    r = agent.query("run", run=run_id)
    path = os.path.join(r["run"]["dir"], "history.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def wait_uploaded(agent, fw, run_ids, timeout=300):
    """Until the fake holds, for every run, as many history lines as the local
    store and the run's end, and the wandb sink has nothing in flight."""
    for run_id in run_ids:
        want = local_history_count(agent, run_id)

        def done():
            r = fw.run_or_none(fw.entity, PROJECT, run_id, False)
            return r and r["history_lines"] >= want and r["complete"]
        fw.wait_for(done, timeout=timeout, what=f"{run_id} uploaded ({want} rows)")

    def sink_idle():
        runs = agent.query("wandb").get("runs", [])
        return all(r["state"] == "done" for r in runs if r["id"] in run_ids)
    agent.wait_for(sink_idle, timeout=timeout, what="wandb sink idle")


def wait_files_uploaded(agent, fw, run_ids, timeout=300):
    """Until the fake holds every file of each run's local files/ (but the
    agent's own), with the same SHA-256, and the wandb sink has no upload in
    flight."""
    for run_id in run_ids:
        def done():
            local = judge.local_files_delivery(agent.state_dir, PROJECT).get(run_id, {})
            r = fw.run_or_none(fw.entity, PROJECT, run_id, False)
            if r is None:
                return not local
            up = fw.run_files(fw.entity, PROJECT, run_id, content=False)["files"]
            return all(n in up and up[n]["sha256"] == d["sha256"] for n, d in local.items())
        fw.wait_for(done, timeout=timeout, interval=0.2, what=f"{run_id}'s files uploaded")
    agent.wait_for(lambda: agent.query("wandb")["counters"].get("uploads_in_flight", 0) == 0,
                   timeout=timeout, what="no upload in flight")


def file_journal_recorded(agent, run_id):
    """The names the wandb sink's file journal (file_journal.h) records as PUT
    (event 2), read from disk (while the agent is down: as the next one reads it)."""
    path = os.path.join(agent.state_dir, "sinks", "wandb", "runs", f"{run_id}.files")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return set()
    out, off = set(), 8
    if data[:8] != b"TRKDWF01":
        return out
    while off + 8 <= len(data):
        n = int.from_bytes(data[off:off + 4], "little")
        p = data[off + 8:off + 8 + n]
        if len(p) < n:
            break
        nl = int.from_bytes(p[2:4], "little")
        if p[0] in (2, 3):  # PUT, or LISTED (compaction keeps the latest fact)
            out.add(p[4:4 + nl].decode())
        off += 8 + n
    return out


def end_faults_and_read_fake(agent, fw, fleet, timeout=300):
    """After an upstream fault scenario: stops the fleet and the faults, checks a
    fresh producer got through, waits until both sinks drained, and reads the
    fake's delivery. Returns (ledgers, delivered, problems, resent)."""
    fleet.stop()
    fw.clear_faults()
    assert fleet.live() == 0, "a producer after the faults did not get through"
    ledgers = fleet.ledgers()
    ended = wait_local_drained(agent, ledgers)
    assert not ended, ended
    run_ids = [lg.run_id for lg in ledgers]
    wait_uploaded(agent, fw, run_ids, timeout=timeout)
    return (ledgers, *judge.fake_delivery(fw, PROJECT, run_ids))


def wandb_config(fw, key_path, **over):
    cfg = {
        "enabled": "true", "base_url": fw.base_url, "api_key_file": str(key_path),
        "transmit_interval": "100ms", "heartbeat_interval": "1s", "upsert_debounce": "100ms",
        "connect_timeout": "1s", "request_timeout": "3s", "stall_timeout": "1s",
        "retry_min": "100ms", "retry_max": "1s",
    }
    cfg.update(over)
    return "sinks:\n  wandb:\n" + "".join(f"    {k}: {v}\n" for k, v in cfg.items())


def make_wandb_agent(tmp_path, fw, extra="", **over):
    key = tmp_path / "wandb.key"
    key.write_text(fw.api_key + "\n")
    os.chmod(key, 0o600)
    return Agent(tmp_path, config=wandb_config(fw, key, **over) + extra)


def rss_kib(pid):
    """(VmRSS, VmHWM) of a live process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def to_json(obj):
    return json.dumps(obj, sort_keys=True)
