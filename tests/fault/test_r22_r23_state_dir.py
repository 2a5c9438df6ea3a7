"""R22: a second agent started on a live agent's state dir (another socket, by
accident) refuses to start naming the holder, and changes nothing in the store;
the oracle fleet logging meanwhile loses nothing and nothing is quarantined.
R23: on-disk access: a member of the logging group reads no file of the store,
neither directly nor through trackctl dump; the agent's uid check is the only
read path. Knobs: FAULT_R22_STARTS (CI 5, long 50)."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import judge
from harness import (BIN, PROJECT, SEED, Agent, Fleet, emit, knob, status_retrying,
                     wait_local_drained)

AGENT_UID = 65532  # the service's user
NOBODY = 65534     # logging users, members of the logging group
OTHER = 65533
GROUP_GID = 29     # "audio" plays the logging group


def tree(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(d, name))
            out[os.path.relpath(os.path.join(d, name), root)] = (
                st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


def start_second(agent, sock):
    return subprocess.run([BIN["trackd"], "--config", agent.config_path, "--state-dir",
                           agent.state_dir, "--listen", f"ipc://{sock}"],
                          capture_output=True, text=True, timeout=60)


def wait_stopped(pid, timeout=30):
    """Until every thread of `pid` is stopped: kill() returns before a running
    process has stopped, and a thread still running could write meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                continue
        if states and all(s in "tT" for s in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} did not stop within {timeout} s")


def test_r22_second_agent_on_a_live_state_dir(tmp_path, agents):
    starts = knob("r22_starts", 5, 50)
    agent = Agent(tmp_path)
    agents.append(agent)
    agent.start()
    fleet = Fleet(agent, str(tmp_path / "ledgers")).start(n_c=3, n_py=1, sleep_us=2000,
                                                          every=10)
    problems = []
    t0 = time.monotonic()
    for i in range(starts):
        time.sleep(0.2)
        sock = tmp_path / f"second{i}.sock"
        frozen = i == 0
        if frozen:  # the holder writes nothing while stopped: any change is the second's
            agent.proc.send_signal(signal.SIGSTOP)
            wait_stopped(agent.proc.pid)
            before = tree(agent.state_dir)
        try:
            r = start_second(agent, sock)
            if frozen and tree(agent.state_dir) != before:
                problems.append("the refused agent changed the store")
        finally:
            if frozen:
                agent.proc.send_signal(signal.SIGCONT)
        if r.returncode != 1 or f"another agent (pid {agent.proc.pid}," not in r.stderr:
            problems.append(f"start {i}: exit {r.returncode}, {r.stderr.strip()[-300:]}")
        if sock.exists():
            problems.append(f"start {i}: the refused agent listened on {sock}")
    elapsed = time.monotonic() - t0
    fleet.stop()
    assert fleet.live() == 0, "a producer after the faults did not get through"
    ledgers = fleet.ledgers()
    problems += wait_local_drained(agent, ledgers)
    # The store as the holder left it: a restart finds nothing to repair.
    assert agent.stop() == 0
    agent.start()
    st = status_retrying(agent)
    if st["records_quarantined"]:
        problems.append(f"{st['records_quarantined']} records quarantined")
    recovered = agent.log().split("log recovered")[-1]
    if "0 quarantined, 0 bytes of torn tail cut" not in recovered:
        problems.append("recovery repaired the log: " + recovered.splitlines()[0])
    local, sink_problems = judge.local_delivery(agent.state_dir, PROJECT)
    extra = f"second_starts={starts} refused={starts} seconds={elapsed:.0f} seed={SEED}"
    emit(judge.judge("R22", "local", ledgers, local, problems + sink_problems, extra=extra))


# Opens each path it is given (files: read a byte; directories: list them).
READER = r"""
import json, os, sys
readable, refused = [], 0
for p in json.load(sys.stdin):
    try:
        if os.path.isdir(p):
            os.listdir(p)
        else:
            with open(p, "rb") as f:
                f.read(1)
        readable.append(p)
    except PermissionError:
        refused += 1
print(json.dumps({"readable": readable, "refused": refused}))
"""


def as_user(uid, cmd, env=None, stdin=None):
    return subprocess.run(cmd, capture_output=True, text=True, user=uid, group=GROUP_GID,
                          extra_groups=[GROUP_GID], env=env, input=stdin, timeout=120)


def test_r23_group_members_read_no_store_file(agents):
    if os.geteuid() != 0:
        import pytest
        pytest.skip("needs root to act as other users")
    base = pathlib.Path(tempfile.mkdtemp(prefix="trackd-r23-"))
    try:
        os.chmod(base, 0o755)
        run_dir = base / "run"
        run_dir.mkdir()
        os.chown(run_dir, AGENT_UID, GROUP_GID)
        agent = Agent(base, socket_dir=run_dir,
                      config="socket_mode: 0660\naccess:\n  group: audio\n")
        agents.append(agent)
        os.chmod(agent.config_path, 0o644)
        agent.env["HOME"] = str(base)
        os.makedirs(agent.state_dir)
        os.chown(agent.state_dir, AGENT_UID, GROUP_GID)
        log = open(agent.log_path, "a")
        agent.proc = subprocess.Popen(
            [BIN["trackd"], "--config", agent.config_path, "--state-dir", agent.state_dir,
             "--listen", agent.url], stdout=log, stderr=log, env=agent.env, user=AGENT_UID,
            group=GROUP_GID, extra_groups=[])
        log.close()
        agent.wait_ready()
        for uid, run_id in ((NOBODY, "r23-a"), (OTHER, "r23-b")):
            p = agent.producer(run_id, 100, "--uid", uid, "--gid", GROUP_GID)
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, out + err
        agent.wait_for(lambda: agent.run_state("r23-a") == agent.run_state("r23-b") ==
                       "finished", what="both runs applied")
        paths = [agent.state_dir] + [os.path.join(d, n) for d, dirs, fs in
                                     os.walk(agent.state_dir) for n in dirs + fs]
        files = len(paths)
        # Directly: every file and directory of the store (found by root), as
        # the other logging user.
        r = as_user(OTHER, ["/usr/bin/python3", "-c", READER], stdin=json.dumps(paths))
        assert r.returncode == 0, r.stderr
        direct = json.loads(r.stdout)
        # Through the tool that reads the store.
        dump = as_user(OTHER, [BIN["trackctl"], "dump", "--state-dir", agent.state_dir])
        # Through the agent: its uid check.
        env = dict(agent.env, TRACKD_NO_AUTOSTART="1")
        theirs = as_user(OTHER, [BIN["trackctl"], "show", "r23-a", "--json"], env=env)
        own = as_user(OTHER, [BIN["trackctl"], "show", "r23-b", "--json"], env=env)
        problems = []
        if direct["readable"]:
            problems.append(f"readable by uid {OTHER}: {direct['readable'][:5]}")
        if dump.returncode == 0 or dump.stdout:
            problems.append(f"trackctl dump as uid {OTHER} read the store")
        if theirs.returncode == 0:
            problems.append(f"the agent showed uid {NOBODY}'s run to uid {OTHER}")
        if own.returncode != 0:
            problems.append(f"the agent refused uid {OTHER} its own run: {own.stderr}")
        line = (f"VERDICT R23 local {'FAIL' if problems else 'PASS'} files={files} "
                f"direct_refused={direct['refused']} direct_readable={len(direct['readable'])} "
                f"dump_refused={int(dump.returncode != 0)} "
                f"agent_refused_other={int(theirs.returncode != 0)} "
                f"agent_served_own={int(own.returncode == 0)}")
        print(line, flush=True)
        path = os.environ.get("FAULT_VERDICTS")
        if path:
            with open(path, "a") as f:
                f.write(line + "\n")
        assert not problems, problems
        assert direct["refused"] == files
    finally:
        shutil.rmtree(base, ignore_errors=True)
