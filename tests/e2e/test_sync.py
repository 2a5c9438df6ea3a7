"""`trackctl sync` end to end: offline runs from real client processes, a real
agent with its wandb sink, the fake W&B backend, all separate processes.

The judge is the one of test_wandb.py: after the sync, the fake holds every row
and console line of the local store byte for byte, exactly once by offset (no
holes, no conflicting rewrites, no repeated `_step`), the local summary, and
complete/exitcode of the run's end. An interrupted sync (trackctl killed, the
agent killed -9) resumes at its recorded offsets: at most the request that was
in flight is sent again."""
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import BIN, Agent, finish_producer, require_bins
from test_wandb import (PROJECT, fake_server, fw, local_lines, local_run,  # noqa: F401
                        local_summary, make_agent, rec_exit, rec_row, rec_start, send_batches,
                        upstream, wait_local_end, wandb_yaml)

OTHER = 65533  # a uid that is not root: another user
GROUP_GID = 29  # "audio": the group allowed to log (access.group), as in test_access.py

REQUEST = "64KiB"  # the smallest request size: many requests per run


def sync(agent, *args, timeout=120):
    return subprocess.run([BIN["trackctl"], "sync", *args], env=agent.env, capture_output=True,
                          text=True, timeout=timeout)


def offline_runs(agent, runs):
    """runs: {id: (rows, exit_code)}; all logged at once, offline, with console lines."""
    procs = [agent.producer(rid, rows, "--mode", "offline", "--console", 25, "--exit-code", code)
             for rid, (rows, code) in runs.items()]
    for p in procs:
        finish_producer(p)
    for rid in runs:
        wait_local_end(agent, rid)
        assert local_run(agent, rid)["mode"] == "offline"


def assert_synced(agent, fw, run_id, exitcode, max_duplicates=0):
    r = upstream(fw, run_id)
    assert r is not None, f"{run_id} not on the backend"
    hist = local_lines(agent, run_id, "history.jsonl")
    cons = local_lines(agent, run_id, "output.log")
    assert r["history"] == hist, f"{run_id}: backend history differs from the local store"
    assert r["console"] == cons, f"{run_id}: backend console differs from the local store"
    # System metrics: the producers' runs get a sample at their start.
    evts = local_lines(agent, run_id, "events.jsonl")
    assert (r["events"] or []) == evts, f"{run_id}: backend events differ from the local store"
    for name, f in r["files"].items():
        assert f["holes"] == 0 and f["gaps"] == 0, (name, f)
        assert f["conflicts"] == 0 or name == "wandb-summary.json", (name, f)
    a = r["history_analysis"]
    assert a["repeated_steps"] == 0 and a["decreasing_steps"] == 0 and a["unparsable"] == 0, a
    assert r["summary"] == local_summary(agent, run_id)
    assert r["complete"] is True and r["exitcode"] == exitcode, (r["complete"], r["exitcode"])
    assert r["exitcode_changes"] == 0
    assert r["duplicates"] <= max_duplicates, (run_id, r["files"])
    return r


def rows_per_s(stdout):
    m = re.search(r"\(([0-9]+) rows/s\)", stdout)
    return int(m.group(1)) if m else None


RUNS = {"sync0001": (3000, 0), "sync0002": (2500, 3), "sync0003": (2000, 0)}


def test_sync_all_once_then_skip_then_force(make_agent, fw):
    agent = make_agent(max_request_bytes=REQUEST)
    offline_runs(agent, RUNS)
    # Offline: nothing reached the backend.
    assert fw.runs() == [] and fw.stats()["file_stream_requests"] == 0

    r = sync(agent, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    for rid, (rows, code) in RUNS.items():
        assert re.search(rf"^synced .*/{PROJECT}/{rid}: {rows} rows", r.stdout, re.M), r.stdout
        up = assert_synced(agent, fw, rid, code)
        assert up["complete_requests"] == 1 and up["requests_after_complete"] == 0
        assert len(up["history"]) == rows and len(up["console"]) == rows // 25
        # Many requests per run: the request size bound holds.
        assert up["requests"] > 3 and up["bytes_max"] <= 64 * 1024, up["bytes_max"]
    assert "3 synced, 0 already synced, 0 failed; 7500 rows" in r.stdout, r.stdout
    print("sync rate:", rows_per_s(r.stdout), "rows/s")
    # The agent's log names the synced runs, never the key.
    assert "synced: 3000 rows" in agent.log() and fw.api_key not in agent.log() + r.stdout

    # A second sync skips them: no request at all.
    before = fw.stats()["file_stream_requests"]
    r = sync(agent, "--all", "--project", PROJECT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("already synced (--force") == 3, r.stdout
    assert fw.stats()["file_stream_requests"] == before

    # --force sends one run again from offset 0: the same lines at the same
    # offsets, which the backend counts as duplicates, nothing else changes.
    r = sync(agent, "--force", "sync0002")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "synced trackd" in r.stdout or "synced " in r.stdout
    rows = RUNS["sync0002"][0]
    # The run's system-metrics samples, if the sampler caught it running,
    # are sent again too.
    samples = len(local_lines(agent, "sync0002", "events.jsonl"))
    up = assert_synced(agent, fw, "sync0002", 3, max_duplicates=rows + rows // 25 + samples)
    assert up["files"]["wandb-history.jsonl"]["duplicates"] == rows
    assert up["files"]["output.log"]["duplicates"] == rows // 25
    assert up["complete_requests"] == 2
    # And the others were not touched.
    assert upstream(fw, "sync0001")["complete_requests"] == 1
    # A clean stop (under ASan: no leak, no error).
    assert agent.stop() == 0, agent.log()[-3000:]


def test_progress_bar_on_a_terminal(make_agent, fw):
    """On a terminal: one updating line (carriage returns), runs/rows/rate/ETA."""
    agent = make_agent(max_request_bytes=REQUEST)
    offline_runs(agent, {"ttyrun01": (4000, 0)})
    fw.add_fault(kind="delay", delay=0.15, path_prefix="/files/", count=-1, duration=60)
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN["trackctl"], "sync", "ttyrun01"], env=agent.env,
                         stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    tty = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        tty += chunk
    out, _ = p.communicate(timeout=60)
    os.close(master)
    fw.clear_faults()
    assert p.returncode == 0, out
    text = tty.decode(errors="replace")
    assert text.count("\r") >= 3, text
    assert "0/1 runs" in text and "/4000 rows" in text and "ETA" in text and "/s" in text, text
    assert "syncing " not in out  # the plain lines are for pipes
    assert_synced(agent, fw, "ttyrun01", 0)


@pytest.mark.parametrize("how", ["trackctl-killed", "agent-killed"])
def test_interrupted_sync_resumes_without_duplicates(make_agent, fw, how):
    agent = make_agent(max_request_bytes=REQUEST)
    runs = {"int00001": (4000, 0), "int00002": (4000, 1), "int00003": (4000, 0)}
    offline_runs(agent, runs)
    # Slow enough to stop it halfway: every file_stream request takes 0.2 s.
    fw.add_fault(kind="delay", delay=0.2, path_prefix="/files/", count=-1, duration=120)
    p = subprocess.Popen([BIN["trackctl"], "sync", "--all"], env=agent.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def halfway():
        held = [upstream(fw, rid, lines=False) for rid in runs]
        lines = sum(h["history_lines"] for h in held if h)
        return lines >= 4000 and not any(h and h["complete"] for h in held)
    fw.wait_for(halfway, timeout=60, what="the sync halfway")
    p.send_signal(signal.SIGKILL)
    p.wait()
    if how == "agent-killed":
        agent.kill9()
    held = sum((upstream(fw, rid, lines=False) or {"history_lines": 0})["history_lines"]
               for rid in runs)
    assert 0 < held < 12000, held
    fw.clear_faults()
    if how == "agent-killed":
        agent.start()
    r = sync(agent, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 failed" not in r.stdout and "0 failed" in r.stdout, r.stdout
    for rid, (rows, code) in runs.items():
        # Killing trackctl does not stop the agent's job: nothing is sent twice.
        # Killing the agent loses at most the request in flight (64 KiB of lines).
        limit = 0 if how == "trackctl-killed" else 64 * 1024 // 60
        up = assert_synced(agent, fw, rid, code, max_duplicates=limit)
        assert len(up["history"]) == rows
    # Synced now: skipped next time.
    r = sync(agent, "--all")
    assert r.returncode == 0 and r.stdout.count("already synced (--force") == 3, r.stdout
    assert agent.stop() == 0, agent.log()[-3000:]


def test_sync_errors(make_agent, fw):
    agent = make_agent(max_request_bytes=REQUEST)
    offline_runs(agent, {"offerr01": (300, 0)})
    finish_producer(agent.producer("online01", 50))
    wait_local_end(agent, "online01")

    r = sync(agent, "nosuchrun")
    assert r.returncode == 1 and "nosuchrun" in r.stderr and "no such run" in r.stderr, r.stderr
    r = sync(agent, "online01")
    assert r.returncode == 1 and "not an offline run" in r.stderr, r.stderr
    # One bad run does not stop the others; the exit code says it. Retried
    # errors are reported (once each) and survived.
    fw.add_fault(kind="status", status=500, count=2, path_prefix="/files/")
    r = sync(agent, "nosuchrun", "offerr01")
    assert r.returncode == 1 and re.search(r"^synced .*offerr01", r.stdout, re.M), r.stdout
    assert re.search(r"^retrying .*offerr01: file_stream: HTTP 500", r.stdout, re.M), r.stdout
    assert_synced(agent, fw, "offerr01", 0)
    # Usage.
    assert sync(agent).returncode == 2
    assert sync(agent, "--all", "offerr01").returncode == 2



def test_running_then_crashed_offline_run(make_agent, fw):
    """A running run is not synced (explicitly: an error; with --all: skipped);
    once it crashed, it is synced as failed with exit code 1 (an offline run
    has no heartbeats the backend could see stop)."""
    agent = make_agent(max_request_bytes=REQUEST)
    p = agent.producer("crsh0001", 1_000_000, "--mode", "offline", "--sleep-us", 1000,
                       "--every", 20)
    agent.wait_for(lambda: len(local_lines(agent, "crsh0001", "history.jsonl")) > 100
                   if agent.run_state("crsh0001") else False, what="rows")
    r = sync(agent, "crsh0001")
    assert r.returncode == 1 and "still running" in r.stderr, r.stderr
    r = sync(agent, "--all")
    assert r.returncode == 0 and "skipped " in r.stdout and "still running" in r.stdout, r.stdout
    p.send_signal(signal.SIGKILL)
    p.wait()
    agent.wait_for(lambda: agent.run_state("crsh0001") == "crashed", what="crashed")
    r = sync(agent, "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_synced(agent, fw, "crsh0001", 1)


def test_parked_sync_reports_and_resumes(make_agent, fw):
    """A permanent error stops the run's sync (exit 1, the reason); the next sync
    resumes it."""
    agent = make_agent(max_request_bytes=REQUEST)
    offline_runs(agent, {"park0001": (2000, 0)})
    fw.add_fault(kind="status", status=404, count=-1, after=3,
                 path_prefix=f"/files/{fw.entity}/{PROJECT}/park0001/")
    r = sync(agent, "park0001")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "HTTP 404" in r.stderr and "run `trackctl sync` again" in r.stderr, r.stderr
    fw.clear_faults()
    r = sync(agent, "park0001")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_synced(agent, fw, "park0001", 0)
    assert agent.stop() == 0, agent.log()[-3000:]


def test_only_the_owner_or_root_syncs(tmp_path, fw):
    """A user syncs only their own runs; root (and the admin group) any."""
    require_bins()
    if os.geteuid() != 0:
        pytest.skip("needs root to act as other users")
    sock_dir = tempfile.mkdtemp(prefix="trackd-sync-")  # reachable by other users
    os.chmod(sock_dir, 0o755)
    key = tmp_path / "wandb.key"
    key.write_text(fw.api_key + "\n")
    os.chmod(key, 0o600)
    a = Agent(tmp_path, socket_dir=sock_dir, config="socket_mode: 0666\naccess:\n  group: audio\n" + wandb_yaml(fw, key))
    a.env["HOME"] = sock_dir  # the other user's client keeps its spool there
    a.start()
    try:
        finish_producer(a.producer("their001", 40, "--mode", "offline", "--uid", OTHER,
                                   "--gid", GROUP_GID))
        finish_producer(a.producer("root0001", 40, "--mode", "offline"))
        for rid in ("their001", "root0001"):
            wait_local_end(a, rid)
        denied = a.query("sync", run="root0001", as_user=(OTHER, GROUP_GID))
        assert denied["error"]["code"] == 6, denied  # PERMISSION_DENIED
        denied = a.query("sync_status", run="root0001", as_user=(OTHER, GROUP_GID))
        assert denied["error"]["code"] == 6, denied
        mine = a.query("sync", run="their001", as_user=(OTHER, GROUP_GID))
        assert mine["id"] == "their001" and mine["state"] in ("waiting", "uploading",
                                                              "synced"), mine
        a.wait_for(lambda: a.query("sync_status", run="their001",
                                   as_user=(OTHER, GROUP_GID))["state"] == "synced",
                   what="their001 synced by its owner")
        r = sync(a, "root0001")  # root: any run
        assert r.returncode == 0, r.stdout + r.stderr
        assert_synced(a, fw, "root0001", 0)
        assert_synced(a, fw, "their001", 0)
    finally:
        a.proc.kill()
        a.proc.wait()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_at_most_64_sync_jobs_at_once(make_agent, fw):
    """WB_SYNC_MAX_JOBS: the 64th job starts, the 65th is refused (try again
    later), and once jobs finish there is room again."""
    agent = make_agent()
    ids = [f"lim{i:05d}" for i in range(66)]
    send_batches(agent, [rec for rid in ids for rec in
                         (rec_start(rid, mode=1), rec_row(rid, 0, loss=1.0), rec_exit(rid, 0))])
    agent.wait_for(lambda: len([r for r in agent.query("runs")["runs"]
                                if r["state"] == "finished"]) == len(ids), what="66 runs ended")
    # Every UpsertBucket fails (and is retried): the jobs stay in progress.
    fid = fw.add_fault(kind="status", status=500, path_prefix="/graphql", count=-1, duration=60)
    replies = [r.get("query", r) for r in agent.raw(*[query("sync", rid) for rid in ids[:65]])]
    assert all("state" in r for r in replies[:63]), replies[:63]
    assert "state" in replies[63], replies[63]  # the 64th: at the limit
    assert replies[64]["error"]["code"] == 5 and "64 syncs" in replies[64]["error"]["message"]
    fw.clear_faults(fid)
    fw.wait_for(lambda: sum(1 for r in fw.runs() if r.get("complete")) == 64, timeout=90,
                what="64 runs synced")
    r = sync(agent, ids[64], ids[65])
    assert r.returncode == 0, r.stdout + r.stderr
    assert sum(1 for r in fw.runs() if r.get("complete")) == 66
    for rid in (ids[0], ids[63], ids[64]):
        assert_synced(agent, fw, rid, 0)


def test_no_wandb_sink(tmp_path):
    require_bins()
    agent = Agent(tmp_path).start()
    try:
        finish_producer(agent.producer("nowb0001", 20, "--mode", "offline"))
        wait_local_end(agent, "nowb0001")
        r = sync(agent, "--all")
        assert r.returncode == 1 and "no wandb sink is configured" in r.stderr, r.stderr
        r = sync(agent, "nowb0001")
        assert r.returncode == 1 and "no wandb sink is configured" in r.stderr, r.stderr
    finally:
        agent.proc.kill()
        agent.proc.wait()


def query(kind, run):
    from conftest import query_request
    return query_request(kind, run=run)
