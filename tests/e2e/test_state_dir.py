"""The state dir (agent/cmd/state_dir.h): one agent at a time, and private to the
agent's user (issue #12 items 1 and 2; fault rows R22, R23)."""
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import tempfile

import pytest

from conftest import BIN, Agent, finish_producer, history_by_run, require_bins

AGENT_UID = 65532  # the service's user (as user trackd in the package)
NOBODY = 65534     # two logging users, members of the logging group
OTHER = 65533
GROUP_GID = 29     # "audio" plays the logging group (trackd in the package)


def tree(root):
    """Every path under root with what a write would change (mtimes included)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns,
                                             st.st_ctime_ns)
    st = os.lstat(root)
    out["."] = (st.st_mode, st.st_mtime_ns, st.st_ctime_ns)
    return out


def second_agent(a, tmp_path, name="second"):
    """Another agent on a's state dir, on a socket of its own; returns its result."""
    return subprocess.run(
        [BIN["trackd"], "--config", a.config_path, "--state-dir", a.state_dir, "--listen",
         f"ipc://{tmp_path}/{name}.sock"], capture_output=True, text=True, timeout=30)


def test_a_second_agent_on_the_state_dir_refuses_and_changes_nothing(agent, tmp_path):
    """Item 1 / R22: the second agent exits non-zero naming the holder; nothing in
    the store changes; the first keeps every acknowledged row."""
    a = agent.start()
    rep = finish_producer(a.producer("held", 200))
    assert rep["acked"] == rep["logged"] == 202, rep
    a.wait_for(lambda: a.run_state("held") == "finished", what="the run applied")
    with open(os.path.join(a.state_dir, "agent.lock")) as f:
        assert int(f.read()) == a.proc.pid
    # Frozen, the first agent writes nothing (its checkpoints would move mtimes):
    # whatever changes now is the second agent's doing.
    a.proc.send_signal(signal.SIGSTOP)
    try:
        before = tree(a.state_dir)
        for i in range(2):
            r = second_agent(a, tmp_path, f"second{i}")
            assert r.returncode == 1, r.stdout + r.stderr
            assert f"in use by another agent (pid {a.proc.pid}, holding " in r.stderr, r.stderr
            assert "refusing to start" in r.stderr
            assert tree(a.state_dir) == before
        assert not os.path.exists(tmp_path / "second0.sock")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    # The first one goes on; after a restart every acknowledged row is there,
    # nothing quarantined or cut.
    rep = finish_producer(a.producer("after", 50))
    assert rep["acked"] == rep["logged"] == 52, rep
    assert a.stop() == 0
    a.start()
    assert "0 quarantined, 0 bytes of torn tail cut" in a.log().split("log recovered")[-1]
    runs = history_by_run(a.dump())
    assert runs["held"] == list(range(200)) and runs["after"] == list(range(50))
    # The lock goes with the agent: once it stopped, a second one may start.
    assert a.stop() == 0
    b = subprocess.Popen([BIN["trackd"], "--config", a.config_path, "--state-dir",
                          a.state_dir, "--listen", f"ipc://{tmp_path}/b.sock"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        a.wait_for(lambda: subprocess.run(
            [BIN["trackctl"], "status"], env=dict(a.env, TRACKD_SOCKET=f"ipc://{tmp_path}/b.sock"),
            capture_output=True).returncode == 0, what="the next agent to answer")
    finally:
        b.terminate()
        b.wait(timeout=30)


def test_trackctl_dump_beside_a_live_agent_changes_nothing(agent):
    """trackctl dump reads; it never recovers, cuts or quarantines, even with a
    torn tail in the newest segment (the agent's to repair at its next start)."""
    a = agent.start()
    finish_producer(a.producer("dumped", 100))
    a.wait_for(lambda: a.run_state("dumped") == "finished", what="the run applied")
    a.proc.send_signal(signal.SIGSTOP)
    try:
        before = tree(a.state_dir)
        assert history_by_run(a.dump())["dumped"] == list(range(100))
        assert tree(a.state_dir) == before
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert a.stop() == 0
    log_dir = os.path.join(a.state_dir, "log")
    newest = sorted(f for f in os.listdir(log_dir) if f.endswith(".seg"))[-1]
    with open(os.path.join(log_dir, newest), "ab") as f:
        f.write(b"KCRT\x10\x00\x00")  # a frame cut short
    before = tree(a.state_dir)
    r = subprocess.run([BIN["trackctl"], "dump", "--state-dir", a.state_dir],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert tree(a.state_dir) == before


def walk_modes(root):
    """{path: mode} of the state dir and everything in it."""
    modes = {root: stat.S_IMODE(os.lstat(root).st_mode)}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            modes[p] = stat.S_IMODE(os.lstat(p).st_mode)
    return modes


def as_user(uid, *cmd):
    """cmd run as uid, a member of the logging group (setresuid/setresgid)."""
    return subprocess.run(list(cmd), capture_output=True, text=True, user=uid,
                          group=GROUP_GID, extra_groups=[GROUP_GID], timeout=60)


@pytest.fixture
def service_agent(tmp_path):
    """The packaged layout in miniature: the agent runs as its own user, its
    state dir left by an older version (0750, files 0640, group = the logging
    group), the socket open to the logging group."""
    require_bins()
    if os.geteuid() != 0:
        pytest.skip("needs root to act as other users")
    # Outside pytest's tmp_path, which the agent's user may not traverse.
    base = pathlib.Path(tempfile.mkdtemp(prefix="trackd-statedir-"))
    os.chmod(base, 0o755)
    sock_dir = base / "run"
    sock_dir.mkdir()
    os.chown(sock_dir, AGENT_UID, GROUP_GID)
    a = Agent(base, socket_dir=sock_dir,
              config="socket_mode: 0660\naccess:\n  group: audio\n")
    os.chmod(a.config_path, 0o644)
    a.env["HOME"] = str(base)  # the producers' spool, if they need one
    old = os.path.join(a.state_dir, "runs", "someone", "old", "run-20250101_000000-old")
    os.makedirs(old, mode=0o750)
    with open(os.path.join(old, "config.yaml"), "w") as f:
        f.write("secret: 1\n")
    for d, dirs, files in os.walk(a.state_dir):
        for name in dirs + files:
            p = os.path.join(d, name)
            os.chown(p, AGENT_UID, GROUP_GID)
            os.chmod(p, 0o750 if os.path.isdir(p) else 0o640)
    os.chown(a.state_dir, AGENT_UID, GROUP_GID)
    os.chmod(a.state_dir, 0o750)
    log = open(a.log_path, "a")
    a.proc = subprocess.Popen(
        [BIN["trackd"], "--config", a.config_path, "--state-dir", a.state_dir, "--listen",
         a.url], stdout=log, stderr=log, env=a.env, user=AGENT_UID, group=GROUP_GID,
        extra_groups=[])
    log.close()
    a.wait_ready()
    yield a
    if a.proc.poll() is None:
        a.proc.terminate()
        a.proc.wait(timeout=30)
    shutil.rmtree(base, ignore_errors=True)


def test_group_members_cannot_read_the_store_on_disk(service_agent):
    """Item 2 / R23: uid B, in the logging group, reads uid A's run neither with
    cat nor with trackctl dump; A reads it through the agent, B is refused there
    too. An older version's group-readable files were made private at start."""
    a = service_agent
    assert "an older version's modes" in a.log(), a.log()
    p = a.producer("secret-run", 20, "--uid", NOBODY, "--gid", GROUP_GID)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, out + err
    a.wait_for(lambda: a.run_state("secret-run") == "finished", what="the run applied")
    # Nothing under the state dir grants the group (or others) anything.
    modes = walk_modes(a.state_dir)
    assert {p: oct(m) for p, m in modes.items() if m & 0o077} == {}
    assert all(os.lstat(p).st_uid == AGENT_UID for p in modes)
    run_dirs = [d for d, _, files in os.walk(a.state_dir)
                if d.endswith("-secret-run") and "config.yaml" in files]
    assert len(run_dirs) == 1, run_dirs
    config = os.path.join(run_dirs[0], "config.yaml")
    old_config = os.path.join(a.state_dir, "runs", "someone", "old", "run-20250101_000000-old",
                              "config.yaml")
    for path in (config, old_config, os.path.join(a.state_dir, "log")):
        r = as_user(OTHER, "cat", path)
        assert r.returncode != 0 and "Permission denied" in r.stderr, (path, r)
    r = as_user(OTHER, BIN["trackctl"], "dump", "--state-dir", a.state_dir)
    assert r.returncode == 1 and r.stdout == "", r
    assert f"belongs to uid {AGENT_UID}: dump reads a store directly" in r.stderr, r.stderr
    # Even the run's owner reads it only through the agent, which checks the uid.
    r = as_user(NOBODY, "cat", config)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    env = dict(a.env, TRACKD_NO_AUTOSTART="1")
    r = subprocess.run([BIN["trackctl"], "show", "secret-run", "--json"], capture_output=True,
                       text=True, env=env, user=NOBODY, group=GROUP_GID,
                       extra_groups=[GROUP_GID], timeout=60)
    assert r.returncode == 0 and '"secret-run"' in r.stdout, r.stdout + r.stderr
    denied = a.query("run", run="secret-run", as_user=(OTHER, GROUP_GID))
    assert denied["error"]["code"] == 6, denied
    # Root (the administrator) may still dump the store.
    assert "secret-run" in history_by_run(a.dump())


def test_a_new_state_dir_is_private_from_the_start(agent):
    a = agent.start()
    finish_producer(a.producer("fresh", 10))
    a.wait_for(lambda: a.run_state("fresh") == "finished", what="the run applied")
    modes = walk_modes(a.state_dir)
    assert {p: oct(m) for p, m in modes.items() if m & 0o077} == {}
    assert "an older version's modes" not in a.log()
