"""System metrics (issue #15): the agent's one sampler writes a sample per live
run into the log, the local sink materialises it as events.jsonl (W&B's
wandb-events.jsonl lines). GPUs come from a fake NVML built by the tests
(tests/fake-nvml), selected by system_metrics.nvml_library."""
import glob
import json
import os
import pathlib
import platform
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import BIN, Agent, python_client_env, require_bins

BUILD = None


def build_dir():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(BIN["trackd"]))))


def fake_nvml(variant="full"):
    return os.path.join(build_dir(), "tests", "fake-nvml", f"libfakenvml_{variant}.so")


# A training process: starts a run, optionally a busy child (a dataloader
# worker burning CPU), writes its pids, logs until told to stop, finishes.
TRAIN = r"""
import os, subprocess, sys, time
import trackd
run_id, busy, stop = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
run = trackd.init(project="sysm", id=run_id)
child = None
if busy:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
with open(stop + ".pids", "w") as f:
    f.write(f"{os.getpid()} {child.pid if child else 0}\n")
step = 0
while not os.path.exists(stop):
    run.log({"x": step})
    step += 1
    time.sleep(0.2)
if child:
    child.kill()
    child.wait()
run.finish()
"""


class Training:
    def __init__(self, agent, tmp_path, run_id, busy=False, cwd=None, env=None):
        self.stop_path = str(tmp_path / f"stop-{run_id}")
        script = tmp_path / "train_sm.py"
        script.write_text(TRAIN)
        self.proc = subprocess.Popen([sys.executable, str(script), run_id, "1" if busy else "0",
                                      self.stop_path],
                                     env=dict(python_client_env(agent.env), **(env or {})),
                                     cwd=cwd)
        self.run_id = run_id
        deadline = time.monotonic() + 30
        while not os.path.exists(self.stop_path + ".pids"):
            assert self.proc.poll() is None, "training process exited early"
            assert time.monotonic() < deadline, "training process did not start"
            time.sleep(0.05)
        time.sleep(0.05)
        with open(self.stop_path + ".pids") as f:
            self.pid, self.child = map(int, f.read().split())

    def finish(self):
        open(self.stop_path, "w").close()
        assert self.proc.wait(timeout=60) == 0


def cpu_seconds(*pids):
    """User + system CPU seconds of the processes so far (/proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def events(agent, run_id):
    paths = glob.glob(os.path.join(agent.state_dir, "runs", "*", "*", f"run-*-{run_id}",
                                   "events.jsonl"))
    if not paths:
        return []
    with open(paths[0]) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def wait_events(agent, run_id, n, timeout=30):
    return agent.wait_for(lambda: len(events(agent, run_id)) >= n and events(agent, run_id),
                          timeout=timeout, what=f"{n} events lines of {run_id}")


def config(nvml, interval="1s", extra=""):
    return (f"system_metrics:\n  interval: {interval}\n  nvml_library: \"{nvml}\"\n" + extra)


def gpu_line(util=50, used=1 << 30, lost=0):
    return f"gpu {util} 20 {16 << 30} {used} 60 150000 300000 1400 5000 30 0 0 {lost}\n"


@pytest.fixture
def agent_factory(tmp_path):
    require_bins()
    agents = []

    def make(cfg, env=None):
        a = Agent(tmp_path, cfg)
        if env:
            a.env.update(env)
        agents.append(a)
        return a.start()
    yield make
    for a in agents:
        a.stop()


def test_events_shape_without_nvml(agent_factory, tmp_path):
    agent = agent_factory(config("/nonexistent/libnvidia-ml.so.1"))
    t = Training(agent, tmp_path, "smnolib1")
    lines = wait_events(agent, "smnolib1", 3)
    t.finish()
    for line in lines:
        assert line["_wandb"] is True
        assert isinstance(line["_timestamp"], float) and line["_runtime"] >= 0
        for key in ("cpu", "proc.cpu.threads", "proc.memory.rssMB", "proc.memory.percent",
                    "proc.memory.availableMB", "memory_percent", "network.sent",
                    "network.recv"):
            assert "system." + key in line, (key, line)
        assert not any(k.startswith("system.gpu") for k in line)
        assert 0 < line["system.memory_percent"] <= 100
        assert line["system.proc.memory.rssMB"] > 1  # a Python interpreter
        assert any(k.startswith("system.disk.") and k.endswith(".usagePercent") for k in line)
    stamps = [line["_timestamp"] for line in lines]
    assert stamps == sorted(stamps)
    assert "no GPU metrics" in agent.log()
    # The run ended: no sample is added after its end.
    n = len(events(agent, "smnolib1"))
    time.sleep(2.5)
    assert len(events(agent, "smnolib1")) == n


def test_library_without_gpus(agent_factory, tmp_path):
    agent = agent_factory(config(fake_nvml()),
                          env={"FAKE_NVML_STATE": str(tmp_path / "absent")})
    t = Training(agent, tmp_path, "smnogpu1")
    lines = wait_events(agent, "smnogpu1", 2)
    t.finish()
    assert all("system.cpu" in l and not any(k.startswith("system.gpu") for k in l)
               for l in lines)
    assert "0 GPUs" in agent.log()


def test_two_gpus_two_runs_attribution_and_lost_gpu(agent_factory, tmp_path):
    state = tmp_path / "nvml-state"
    state.write_text(gpu_line() + gpu_line(util=70))
    agent = agent_factory(config(fake_nvml()), env={"FAKE_NVML_STATE": str(state)})
    a = Training(agent, tmp_path, "smgpua01")
    b = Training(agent, tmp_path, "smgpub01")
    # Run a on GPU 0, run b on GPU 1, and a process of neither on GPU 0.
    state.write_text(gpu_line() + gpu_line(util=70) +
                     f"proc 0 {a.pid} 1000\nproc 1 {b.pid} 2000\nproc 0 1 5000\n")
    time.sleep(0.1)
    n0 = len(events(agent, "smgpua01"))
    la = wait_events(agent, "smgpua01", n0 + 3)[n0 + 1:]
    lb = events(agent, "smgpub01")[-2:]
    for line in la:
        assert line["system.gpu.0.gpu"] == 50 and line["system.gpu.1.gpu"] == 70
        assert line["system.gpu.0.memoryAllocatedBytes"] == 1 << 30
        assert line["system.gpu.0.memoryAllocated"] == pytest.approx(100 / 16)
        assert line["system.gpu.0.powerWatts"] == 150
        assert line["system.gpu.0.enforcedPowerLimitWatts"] == 300
        assert line["system.gpu.0.powerPercent"] == 50
        for key in ("temp", "smClock", "memoryClock", "fanSpeed", "correctedMemoryErrors",
                    "uncorrectedMemoryErrors", "memory"):
            assert f"system.gpu.0.{key}" in line
        assert line["system.gpu.process.0.memoryAllocatedBytes"] == 1000
        assert "system.gpu.process.1.memoryAllocatedBytes" not in line
    for line in lb:
        assert line["system.gpu.process.1.memoryAllocatedBytes"] == 2000
        assert "system.gpu.process.0.memoryAllocatedBytes" not in line
    # One pass serves both runs: the same sample times in both files.
    assert {l["_timestamp"] for l in events(agent, "smgpua01")} & \
        {l["_timestamp"] for l in events(agent, "smgpub01")}

    # GPU 1 is lost mid-run: its keys stop, GPU 0's and the CPU's go on.
    state.write_text(gpu_line() + gpu_line(lost=1) + f"proc 0 {a.pid} 1000\n")
    time.sleep(0.1)
    n1 = len(events(agent, "smgpua01"))
    later = wait_events(agent, "smgpua01", n1 + 3)[n1 + 1:]
    for line in later:
        assert "system.gpu.0.gpu" in line and "system.cpu" in line
        assert not any(k.startswith("system.gpu.1.") for k in line)
    a.finish()
    b.finish()
    log = agent.log()
    assert log.count("GPU 1 is lost") == 1, log


@pytest.mark.parametrize("variant", ["omit_required", "omit_optional"])
def test_library_missing_a_symbol(agent_factory, tmp_path, variant):
    state = tmp_path / "nvml-state"
    state.write_text(gpu_line())
    agent = agent_factory(config(fake_nvml(variant)), env={"FAKE_NVML_STATE": str(state)})
    t = Training(agent, tmp_path, "smsym001")
    lines = wait_events(agent, "smsym001", 2)
    t.finish()
    for line in lines:
        assert "system.cpu" in line
        if variant == "omit_required":
            assert not any(k.startswith("system.gpu") for k in line)
        else:
            assert line["system.gpu.0.gpu"] == 50
            assert "system.gpu.0.powerWatts" not in line
            assert "system.gpu.0.powerPercent" not in line
    missing = "nvmlDeviceGetCount_v2" if variant == "omit_required" else "nvmlDeviceGetPowerUsage"
    assert f"does not export {missing}" in agent.log()


def test_busy_child_counts_in_its_run_only(agent_factory, tmp_path):
    agent = agent_factory(config(""))
    busy = Training(agent, tmp_path, "smbusy01", busy=True)
    idle = Training(agent, tmp_path, "smidle01")
    n = len(events(agent, "smbusy01"))
    lb = wait_events(agent, "smbusy01", n + 4)[-2:]
    li = events(agent, "smidle01")[-2:]
    busy.finish()
    idle.finish()
    cores = os.cpu_count()
    # One core of `cores` is 100/cores %; the child is the busy one. How much
    # of a core a spinning child gets depends on the machine's load (a loaded
    # CI machine gave it under half a core), so the check is the contrast:
    # the busy run's samples count its child's CPU, the idle run's do not.
    idle_most = max(line["system.cpu"] for line in li)
    for line in lb:
        assert line["system.cpu"] > 5 / cores, line
        assert line["system.cpu"] > 4 * idle_most, (line, li)
        assert line["system.proc.cpu.threads"] >= 2
    for line in li:
        assert line["system.cpu"] < 25 / cores, line


def test_cgroup_cpu_limit_is_the_capacity(agent_factory, tmp_path):
    """A fake cgroup v2 root (the machine's own may not be v2 or writable):
    cpu.max of half a CPU makes one busy core 200 %."""
    root = tmp_path / "cgroup"
    with open("/proc/self/cgroup") as f:
        rel = next((l.split("::", 1)[1].strip() for l in f if l.startswith("0::")), "/")
    leaf = root / rel.lstrip("/")
    leaf.mkdir(parents=True, exist_ok=True)
    (leaf / "cpu.max").write_text("50000 100000\n")
    (leaf / "memory.max").write_text(f"{1 << 30}\n")
    (leaf / "memory.current").write_text(f"{256 << 20}\n")
    agent = agent_factory(config("", extra=f"  cgroup_root: {root}\n"))
    t = Training(agent, tmp_path, "smcgrp01", busy=True)
    n = len(events(agent, "smcgrp01"))
    # The cores the run's processes really used meanwhile (how much of one the
    # spinning child gets depends on the machine's load, not on the agent).
    cpu0, wall0 = cpu_seconds(t.pid, t.child), time.monotonic()
    lines = wait_events(agent, "smcgrp01", n + 4)[-3:]
    used = (cpu_seconds(t.pid, t.child) - cpu0) / (time.monotonic() - wall0)
    t.finish()
    cores = os.cpu_count()
    # system.cpu is the processes' share of the capacity: against cpu.max's
    # half CPU it is used / 0.5 * 100, against the machine's cores only
    # used / cores * 100 (4x less on 2 cores). Above the geometric middle of the
    # two shows the capacity is the cgroup's, whatever the load.
    middle = (used / 0.5 * 100 * used / cores * 100) ** 0.5
    mean = sum(line["system.cpu"] for line in lines) / len(lines)
    assert mean > middle, (mean, used, lines)
    for line in lines:
        assert line["system.proc.memory.availableMB"] == pytest.approx(768)
        assert line["system.proc.memory.percent"] == pytest.approx(
            line["system.proc.memory.rssMB"] / 1024 * 100, rel=1e-6)


def test_disabled_writes_no_events(agent_factory, tmp_path):
    agent = agent_factory("system_metrics:\n  enabled: false\n  interval: 1s\n")
    t = Training(agent, tmp_path, "smoff001")
    time.sleep(2.5)
    t.finish()
    assert events(agent, "smoff001") == []


@pytest.mark.parametrize("value,ok", [("999ms", False), ("1s", True), ("1001ms", True),
                                      ("3599999ms", True), ("1h", True), ("3600001ms", False)])
def test_interval_bounds(tmp_path, value, ok):
    require_bins()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"system_metrics:\n  interval: {value}\n")
    r = subprocess.run([BIN["trackd"], "--config", str(cfg), "--check-config", "--state-dir",
                        str(tmp_path / "s"), "--listen", f"ipc://{tmp_path}/s.sock"],
                       capture_output=True, text=True)
    assert (r.returncode == 0) == ok, r.stderr
    if not ok:
        assert "system_metrics.interval" in r.stderr


# ---- upload: the events reach the W&B backend as wandb-events.jsonl -----------------

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fake-wandb"))
from fakewandb_client import FakeWandb  # noqa: E402


def test_events_uploaded_with_wandb_keys(agent_factory, tmp_path):
    fw = FakeWandb(max_hold=30).start()
    try:
        key = tmp_path / "wandb.key"
        key.write_text(fw.api_key + "\n")
        os.chmod(key, 0o600)
        state = tmp_path / "nvml-state"
        state.write_text(gpu_line())
        wandb = ("sinks:\n  wandb:\n    enabled: true\n"
                 f"    base_url: {fw.base_url}\n    api_key_file: {key}\n"
                 "    transmit_interval: 100ms\n    heartbeat_interval: 1s\n"
                 "    upsert_debounce: 100ms\n    retry_min: 100ms\n    retry_max: 1s\n")
        agent = agent_factory(config(fake_nvml()) + wandb,
                              env={"FAKE_NVML_STATE": str(state)})
        t = Training(agent, tmp_path, "smupld01")
        state.write_text(gpu_line() + f"proc 0 {t.pid} 4096\n")
        wait_events(agent, "smupld01", 4)
        t.finish()
        local = [json.dumps(l) for l in events(agent, "smupld01")]

        def uploaded():
            r = fw.run_or_none(fw.entity, "sysm", "smupld01")
            return r if r and len(r["events"] or []) >= len(local) else None
        r = agent.wait_for(uploaded, timeout=60, what="the events upstream")
        up = [json.loads(l) for l in r["events"]]
        assert len(up) == len(events(agent, "smupld01")), "each sample once"
        assert up == events(agent, "smupld01"), "the backend holds the local lines"
        assert r["files"]["wandb-events.jsonl"]["holes"] == 0
        assert r["duplicates"] == 0 and r["conflicts"] == 0
        for line in up:
            assert line["_wandb"] is True and "_timestamp" in line and "_runtime" in line
            assert "system.cpu" in line and "system.memory_percent" in line
            assert line["system.gpu.0.gpu"] == 50
        assert any(l.get("system.gpu.process.0.memoryAllocatedBytes") == 4096 for l in up)
    finally:
        fw.stop()


def test_sync_uploads_the_events_of_an_offline_run(agent_factory, tmp_path):
    """trackctl sync sends wandb-events.jsonl with the history: each sample
    once, at its own offsets; a second sync sends nothing again."""
    fw = FakeWandb(max_hold=30).start()
    try:
        key = tmp_path / "wandb.key"
        key.write_text(fw.api_key + "\n")
        os.chmod(key, 0o600)
        wandb = ("sinks:\n  wandb:\n    enabled: true\n"
                 f"    base_url: {fw.base_url}\n    api_key_file: {key}\n"
                 "    transmit_interval: 100ms\n    max_request_bytes: 64KiB\n"
                 "    retry_min: 100ms\n    retry_max: 1s\n")
        agent = agent_factory(config("") + wandb)
        t = Training(agent, tmp_path, "smsync01", env={"TRACKD_MODE": "offline"})
        wait_events(agent, "smsync01", 4)
        t.finish()
        agent.wait_for(lambda: agent.run_state("smsync01") not in (None, "running"),
                       what="the run's end")
        assert fw.run_or_none(fw.entity, "sysm", "smsync01") is None, "offline: not uploaded"
        r = subprocess.run([BIN["trackctl"], "sync", "smsync01"], env=agent.env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        up = fw.run_or_none(fw.entity, "sysm", "smsync01")
        local = events(agent, "smsync01")
        assert len(local) >= 4
        assert [json.loads(l) for l in up["events"]] == local, "each sample once, in order"
        f = up["files"]["wandb-events.jsonl"]
        assert f["holes"] == 0 and f["gaps"] == 0 and f["conflicts"] == 0, f
        assert up["duplicates"] == 0 and up["complete"] is True
        # Synced: nothing is sent again, the events neither.
        r = subprocess.run([BIN["trackctl"], "sync", "smsync01"], env=agent.env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "already synced" in r.stdout, r.stdout
        again = fw.run_or_none(fw.entity, "sysm", "smsync01")
        assert again["events"] == up["events"] and again["duplicates"] == 0
    finally:
        fw.stop()


# ---- where users see it: trackctl show and history --stream events --------------------

def test_trackctl_show_and_history_events(agent_factory, tmp_path):
    agent = agent_factory(config(""))
    t = Training(agent, tmp_path, "smcli001", busy=True)
    wait_events(agent, "smcli001", 3)
    t.finish()
    ctl = lambda *a: subprocess.run([BIN["trackctl"], *a], env=agent.env, capture_output=True,
                                    text=True)
    r = ctl("show", "smcli001")
    assert r.returncode == 0, r.stderr
    system = r.stdout.split("\nSystem:", 1)[1]
    assert "samples over" in system
    for key in ("cpu", "proc.memory.rssMB", "memory_percent"):
        assert any(l.strip().startswith(key + " ") for l in system.splitlines()), system
    r = ctl("history", "smcli001", "--stream", "events", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert rows == events(agent, "smcli001")
    r = ctl("history", "smcli001", "--stream", "events")
    header = r.stdout.splitlines()[0].split(",")
    assert header[:3] == ["_wandb", "_timestamp", "_runtime"] and "system.cpu" in header
    assert len(r.stdout.splitlines()) == len(rows) + 1
    r = ctl("history", "smcli001", "--stream", "nope")
    assert r.returncode == 2 and "--stream" in r.stderr


def test_a_run_shorter_than_the_interval_gets_a_sample(agent_factory, tmp_path):
    """The sampler is woken by a new run: at the default 15 s interval a run of a
    second still has its first sample (taken while it lived)."""
    agent = agent_factory("")
    t = Training(agent, tmp_path, "smshort1")
    time.sleep(1)
    t.finish()
    lines = wait_events(agent, "smshort1", 1, timeout=10)
    assert len(lines) == 1 and lines[0]["system.proc.memory.rssMB"] > 1


# ---- run metadata: wandb-metadata.json -------------------------------------------------

def test_run_metadata(agent_factory, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True,
                                    capture_output=True, text=True).stdout.strip()
    git("init", "-q", "-b", "exp")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x")
    git("remote", "add", "origin", "https://someone:s3cret@example.com/team/repo.git")
    git("pack-refs", "--all")  # the commit read from packed-refs
    commit = git("rev-parse", "HEAD")
    state = tmp_path / "nvml-state"
    state.write_text(gpu_line() + gpu_line())
    agent = agent_factory(config(fake_nvml()), env={"FAKE_NVML_STATE": str(state)})
    t = Training(agent, tmp_path, "smmeta01", cwd=str(repo))
    wait_events(agent, "smmeta01", 1)
    t.finish()
    (path,) = glob.glob(os.path.join(agent.state_dir, "runs", "*", "*", "run-*-smmeta01",
                                     "wandb-metadata.json"))
    with open(path) as f:
        md = json.load(f)
    assert md["program"].endswith("train_sm.py")
    assert md["args"] == ["smmeta01", "0", t.stop_path]
    assert md["root"] == str(repo)
    assert md["git"] == {"remote": "https://example.com/team/repo.git", "commit": commit,
                         "branch": "exp", "dirty": False}
    assert md["python"] == platform.python_version()
    assert "s3cret" not in open(path).read()
    assert md["host"] == os.uname().nodename and md["os"].startswith("Linux-")
    assert md["cpu_count_logical"] == os.cpu_count() and md["memory"]["total"] > 0
    assert md["gpu_count"] == 2 and md["gpu"] == "Fake GPU 0"
    assert md["gpu_nvidia"] == [{"name": "Fake GPU 0", "memoryTotal": 16 << 30},
                                {"name": "Fake GPU 1", "memoryTotal": 16 << 30}]
    assert md["driverVersion"] == "550.54.15" and md["cudaVersion"] == "12.4"
    r = subprocess.run([BIN["trackctl"], "show", "smmeta01"], env=agent.env,
                       capture_output=True, text=True)
    env = r.stdout.split("\nEnvironment:", 1)[1]
    assert commit in env and "Fake GPU 0" in env
    assert "git dirty false" in env and f"python {platform.python_version()}" in env


# ---- run metadata from the client --------------------------------------------------

def make_repo(path, remote="https://someone:s3cret@example.com/team/repo.git"):
    path.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(path), *a], check=True,
                                    capture_output=True, text=True).stdout.strip()
    git("init", "-q", "-b", "main")
    (path / "model.py").write_text("lr = 0.1\n")
    git("add", "model.py")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "x")
    git("remote", "add", "origin", remote)
    return git("rev-parse", "HEAD")


def metadata(agent, run_id):
    paths = glob.glob(os.path.join(agent.state_dir, "runs", "*", "*", f"run-*-{run_id}",
                                   "wandb-metadata.json"))
    if not paths:
        return None
    with open(paths[0]) as f:
        text = f.read()
    return json.loads(text) if text.endswith("\n") else None


class OtherUserAgent(Agent):
    """The agent as the systemd service runs it: another user than the
    training's, so /proc/<pid>/cwd and /proc/<pid>/exe of the client are
    closed to it."""

    def start(self, wait=True):
        nobody = pwd.getpwnam("nobody")
        os.makedirs(self.state_dir, exist_ok=True)
        for d in (self.dir, self.state_dir):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
            os.chmod(d, 0o755)
        log = open(self.log_path, "a")
        os.chown(self.log_path, nobody.pw_uid, nobody.pw_gid)
        self.proc = subprocess.Popen(
            [BIN["trackd"], "--config", self.config_path, "--state-dir", self.state_dir,
             "--listen", self.url], stdout=log, stderr=log, env=self.env,
            user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
        log.close()
        if wait:
            self.wait_ready()
        return self


def test_client_metadata_with_the_agent_as_another_user(tmp_path):
    """The agent (nobody) cannot read the training's cwd or exe: the client's
    own facts fill them in; the dirty flag follows the work tree."""
    require_bins()
    if os.geteuid() != 0:
        pytest.skip("needs root to run the agent as another user")
    repo = tmp_path / "repo"
    commit = make_repo(repo)
    # Not under tmp_path: pytest's base dir is closed to other users.
    base = tempfile.mkdtemp(prefix="trackd-sm-user-")
    os.chmod(base, 0o755)
    agent = OtherUserAgent(pathlib.Path(base), config("", extra="socket_mode: 0666\n"))
    try:
        agent.start()
        t = Training(agent, tmp_path, "smusr001", cwd=str(repo))
        # What the agent's user may read of the training process: not these.
        nobody = pwd.getpwnam("nobody")
        for link in ("cwd", "exe"):
            r = subprocess.run(["readlink", f"/proc/{t.pid}/{link}"], capture_output=True,
                               user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
            assert r.returncode != 0 and not r.stdout, link
        md = agent.wait_for(lambda: (m := metadata(agent, "smusr001")) and "root" in m and "host" in m and m,
                            what="the client's facts")
        t.finish()
        # Without the client's record the agent would have had none of these.
        assert md["root"] == str(repo)
        assert md["executable"] == os.path.realpath(sys.executable)
        assert md["program"].endswith("train_sm.py")
        assert md["args"] == ["smusr001", "0", t.stop_path]
        assert md["python"] == platform.python_version()
        assert md["git"] == {"remote": "https://example.com/team/repo.git", "commit": commit,
                             "branch": "main", "dirty": False}
        assert md["host"] == os.uname().nodename  # the agent's facts are still there
        assert md["cpu_count_logical"] == os.cpu_count()
        assert md["username"] == "root"

        (repo / "model.py").write_text("lr = 0.2\n")  # a tracked file changed
        (repo / "notes.txt").write_text("untracked files do not count\n")
        t = Training(agent, tmp_path, "smusr002", cwd=str(repo))
        md = agent.wait_for(lambda: (m := metadata(agent, "smusr002")) and "git" in m and "host" in m and m,
                            what="the client's facts")
        t.finish()
        assert md["git"]["dirty"] is True and md["git"]["commit"] == commit
        # What the client sent is kept apart, and every key of it is in the
        # merged file.
        (client_path,) = glob.glob(os.path.join(agent.state_dir, "runs", "*", "*",
                                                "run-*-smusr002", "client-environment.json"))
        with open(client_path) as f:
            client = json.load(f)
        assert set(client) == {"program", "args", "executable", "root", "python", "git"}
        assert all(md[k] == v for k, v in client.items())

        # The run's disk.<working dir>.* keys come from the directory the
        # client reported (the agent cannot read its /proc/<pid>/cwd), when
        # the agent's user may reach it; before and after an agent restart.
        work = os.path.join(base, "work")
        os.mkdir(work, 0o755)
        key = f"system.disk.{work}.usagePercent"
        t = Training(agent, tmp_path, "smusr003", cwd=work)
        agent.wait_for(lambda: any(key in e for e in events(agent, "smusr003")),
                       what=f"{key} in the run's events")
        agent.stop()
        n = len(events(agent, "smusr003"))
        agent.start()
        agent.wait_for(lambda: any(key in e for e in events(agent, "smusr003")[n:]),
                       what=f"{key} after the restart")
        t.finish()
    finally:
        agent.stop()
        shutil.rmtree(base, ignore_errors=True)


FAKE_GIT = """#!/bin/sh
# git status that hangs, as on a slow network file system
exec sleep 29.517
"""


def test_a_hanging_git_status_is_cut_and_never_delays_init(agent_factory, tmp_path):
    repo = tmp_path / "repo"
    commit = make_repo(repo)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(FAKE_GIT)
    (bin_dir / "git").chmod(0o755)
    agent = agent_factory(config(""))
    env = python_client_env(agent.env)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    script = tmp_path / "quick.py"
    script.write_text("import sys, time, trackd\n"
                      "t0 = time.monotonic()\n"
                      "run = trackd.init(project='sysm', id=sys.argv[1])\n"
                      "print(time.monotonic() - t0)\n"
                      "time.sleep(float(sys.argv[2]))\n"
                      "t1 = time.monotonic()\n"
                      "run.finish()\n"
                      "print(time.monotonic() - t1)\n")
    # Long enough for the 2 s bound: the facts go without "dirty".
    r = subprocess.run([sys.executable, str(script), "smgit001", "3"], env=env, cwd=str(repo),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    init_s, finish_s = map(float, r.stdout.split()[:2])
    assert init_s < 1.5, "init waited"
    md = agent.wait_for(lambda: (m := metadata(agent, "smgit001")) and "git" in m and m,
                        what="the client's facts")
    assert md["git"] == {"remote": "https://example.com/team/repo.git", "commit": commit,
                         "branch": "main"}
    # Finished while git still hangs: cut at once, facts sent without it.
    r = subprocess.run([sys.executable, str(script), "smgit002", "0"], env=env, cwd=str(repo),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    init_s, finish_s = map(float, r.stdout.split()[:2])
    assert finish_s < 1.5, "finish waited for git"
    md = agent.wait_for(lambda: (m := metadata(agent, "smgit002")) and "git" in m and m,
                        what="the client's facts")
    assert "dirty" not in md["git"] and md["root"] == str(repo)
    assert not subprocess.run(["pgrep", "-f", "^sleep 29.517"],
                              capture_output=True).stdout, "git left running"


def test_no_repository_no_git(agent_factory, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    agent = agent_factory(config(""))
    t = Training(agent, tmp_path, "smnogit1", cwd=str(plain))
    md = agent.wait_for(lambda: (m := metadata(agent, "smnogit1")) and "python" in m and m,
                        what="the client's facts")
    t.finish()
    assert md["root"] == str(plain) and "git" not in md


# ---- counters since the run started: through an agent restart -----------------------

def sent_traffic(nbytes):
    """Sends nbytes of UDP to TEST-NET-3 (RFC 5737: nothing answers): they
    leave through the default route's interface and count as sent in
    /proc/net/dev (the loopback does not count). Skips without a route."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s_:
        try:
            for _ in range(nbytes // 1400 + 1):
                s_.sendto(b"x" * 1400, ("203.0.113.1", 9))
        except OSError as e:
            pytest.skip(f"no route for UDP traffic: {e}")


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_network_counts_continue_through_an_agent_restart(agent_factory, tmp_path, how):
    agent = agent_factory(config(""))
    t = Training(agent, tmp_path, "smbase01")
    n = len(wait_events(agent, "smbase01", 2))
    sent_traffic(2 << 20)
    lines = wait_events(agent, "smbase01", n + 2)
    before = lines[-1]["system.network.sent"]
    assert before >= 2 << 20, before  # since the run started, the traffic included
    if how == "sigkill":
        agent.kill9()
    else:
        assert agent.stop() == 0
    agent.start()
    lines = wait_events(agent, "smbase01", len(lines) + 2)
    t.finish()
    after = [l["system.network.sent"] for l in lines[-2:]]
    # Continued from the run's own start, not from the restart.
    assert all(a >= before for a in after), (before, after)


# ---- the Python Api ------------------------------------------------------------------

API = r"""
import json, sys
import trackd
run = trackd.Api().run(sys.argv[1])
print(json.dumps({"events": run.history(stream="events"), "system": run.system_metrics,
                  "cpu": run.history(keys=["system.cpu"], stream="events"),
                  "rows": run.history(), "metadata": run.metadata}))
"""


def test_python_api_system_metrics(agent_factory, tmp_path):
    agent = agent_factory(config(""))
    t = Training(agent, tmp_path, "smpyapi1")
    wait_events(agent, "smpyapi1", 2)
    t.finish()
    r = subprocess.run([sys.executable, "-c", API, "smpyapi1"], env=python_client_env(agent.env),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    local = events(agent, "smpyapi1")
    assert got["events"] == local and got["system"] == local
    assert got["cpu"] == [{k: l[k] for k in ("_timestamp", "_runtime", "system.cpu")}
                          for l in local]
    assert got["rows"] and all("system.cpu" not in row for row in got["rows"])
    assert got["metadata"]["program"].endswith("train_sm.py")


# ---- counters: one pass for several runs, failures counted ---------------------------

def test_counters_one_pass_serves_every_run(agent_factory, tmp_path):
    import socket
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = agent_factory(config("/nonexistent/libnvidia-ml.so.1") +
                          f"metrics_listen: 127.0.0.1:{port}\n")
    runs = [Training(agent, tmp_path, f"smcnt00{k}") for k in range(3)]
    for t in runs:
        wait_events(agent, t.run_id, 3)

    def counters():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return {l.split()[0]: int(l.split()[1]) for l in text.splitlines()
                if l.startswith("trackd_sysmetrics_")}
    c = counters()
    for t in runs:
        t.finish()
    # Three runs, one pass each time: three samples per pass once all attached.
    assert c["trackd_sysmetrics_samples_total"] >= 3
    assert c["trackd_sysmetrics_passes_total"] < c["trackd_sysmetrics_samples_total"]
    n = min(len(events(agent, t.run_id)) for t in runs)
    assert c["trackd_sysmetrics_passes_total"] <= n + 3  # + the wake-ups of 3 starts
    assert c["trackd_sysmetrics_source_failures_total"] == 1  # the missing NVML, once
    assert c["trackd_sysmetrics_gpus"] == 0 and c["trackd_sysmetrics_submit_failures_total"] == 0
    assert c["trackd_sysmetrics_cpu_microseconds_total"] > 0
