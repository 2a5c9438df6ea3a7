"""Runs as W&B users know them, end to end: the local store the agent
materialises, its queries, states and crash detection. Real processes only."""
import json
import os
import signal
import subprocess
import sys
import time

from conftest import (BIN, batch_request, field_bytes, field_varint, finish_producer,
                      history_record, python_client_env)


def run_dir(agent, run_id):
    return agent.query("run", run=run_id)["run"]["dir"]


def history_lines(agent, run_id):
    with open(os.path.join(run_dir(agent, run_id), "history.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_example_run_is_materialised(agent):
    agent.start()
    r = subprocess.run([BIN["train"]], env=agent.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    runs = agent.wait_for(lambda: agent.query("runs")["runs"], what="the run to appear")
    assert len(runs) == 1
    agent.wait_for(lambda: agent.run_state(runs[0]["id"]) == "finished", what="finished")
    run = agent.query("run", run=runs[0]["id"])["run"]
    assert run["project"] == "trackd-example" and run["exit_code"] == 0
    assert run["config"]["epochs"] == 10 and run["config"]["learning_rate"] == 0.01
    # No name given: adjective-noun-N derived from the run id (every sink agrees).
    adjective, noun, n = run["display_name"].split("-")
    assert adjective.isalpha() and noun.isalpha() and 1 <= int(n) <= 999, run["display_name"]
    hist = history_lines(agent, run["id"])
    assert [h["_step"] for h in hist] == list(range(10))
    for h in hist:
        assert {"accuracy", "loss", "_step", "_runtime", "_timestamp"} <= set(h)
    assert run["summary"]["_step"] == 9
    assert run["summary"]["loss"] == hist[-1]["loss"]
    d = run["dir"]
    assert os.path.basename(d).startswith("run-") and d.endswith("-" + run["id"])
    for name in ("metadata.json", "config.yaml", "history.jsonl", "summary.json"):
        assert os.path.exists(os.path.join(d, name)), name
    with open(os.path.join(d, "config.yaml")) as f:
        assert f.read().startswith("wandb_version: 1\n")


def test_history_query_pages_and_keys(agent):
    agent.start()
    finish_producer(agent.producer("pages", 50))
    agent.wait_for(lambda: agent.run_state("pages") == "finished", what="finished")
    h = agent.query("history", run="pages", from_line=10, max_lines=5, keys=["value"])
    assert h["from_line"] == 10 and h["next_line"] == 15 and h["total_lines"] == 50
    assert h["lines"] == [{"value": i * 0.5, "_step": i} for i in range(10, 15)]
    everything = agent.query("history", run="pages")
    assert len(everything["lines"]) == 50 and everything["lines"][3]["tag"] == "r3"


def test_history_pages_of_long_lines_cross_read_chunks(agent):
    """The history query streams the file in 64 KiB chunks without the sink's
    lock: lines longer than a chunk, and lines split across chunks, come back
    whole, page by page."""
    agent.start()
    session = os.urandom(16)
    start = field_bytes(1, "long") + field_bytes(2, field_bytes(1, "proj"))
    sizes = [10, 70000, 5, 150000, 65536, 3, 200000]

    def row(step, n):
        item = field_bytes(1, "s") + field_bytes(2, field_bytes(4, "x" * n))
        return history_record("long", step, [item])

    replies = agent.raw(batch_request(session, 1, [start]),
                        *[batch_request(session, 2 + i, [row(i, n)])
                          for i, n in enumerate(sizes)])
    assert all("ack" in r for r in replies), replies
    agent.wait_for(lambda: agent.query("history", run="long", keys=["s"]).get("total_lines")
                   == len(sizes), what="every row in the store")
    got = []
    for first in range(0, len(sizes), 2):
        page = agent.query("history", run="long", from_line=first, max_lines=2)
        assert page["from_line"] == first and page["total_lines"] == len(sizes)
        got += page["lines"]
    assert [(line["_step"], len(line["s"])) for line in got] == list(enumerate(sizes))
    assert {line["s"] for line in got} <= {"x" * n for n in sizes}


def test_records_without_their_start_are_kept_in_a_recovered_run(agent):
    """Acked records whose run start is not in the log (damaged and quarantined,
    or cut by a power loss) are kept: the run is made without its start in the
    project trackd-recovered, and the log says so."""
    agent.start()
    session = os.urandom(16)
    replies = agent.raw(*[batch_request(session, 1 + i, [history_record("nostart", i, [])])
                          for i in range(5)])
    assert all("ack" in r for r in replies), replies
    agent.wait_for(lambda: agent.run_state("nostart") == "crashed", what="the recovered run")
    run = agent.query("run", run="nostart")["run"]
    assert run["project"] == "trackd-recovered", run
    assert [h["_step"] for h in history_lines(agent, "nostart")] == list(range(5))
    assert "has no start record in the log" in agent.log()


def test_exit_codes_map_to_states(agent):
    agent.start()
    ok = agent.producer("ok", 10)
    bad = agent.producer("bad", 10, "--exit-code", 3)
    finish_producer(ok)
    finish_producer(bad)
    assert agent.wait_for(lambda: agent.run_state("ok") == "finished", what="ok finished")
    agent.wait_for(lambda: agent.run_state("bad") == "failed", what="bad failed")
    assert agent.query("run", run="bad")["run"]["exit_code"] == 3


def test_queries_show_what_was_acknowledged_before_them(agent):
    """Read-your-writes: once finish() returned (the exit acknowledged), the very
    next query shows the run finished, and a rename acknowledged before a query
    shows in it, without waiting for the local sink's next round (the README's
    Python example printed ['running'] now and then). The sink is made to lag
    as on a loaded machine: each of its rounds waits 150 ms before applying (a
    hook of test builds, TRACKD_TEST_APPLY_DELAY_MS)."""
    agent.env["TRACKD_TEST_APPLY_DELAY_MS"] = "150"
    agent.start()
    code = """
import sys, trackd
api = trackd.Api()
for i in range(5):
    with trackd.init(project="ryw", id=f"ryw{i}") as run:
        run.log({"x": i})
    states = {r.id: r.state for r in api.runs("ryw")}
    if states[f"ryw{i}"] != "finished":
        sys.exit(f"run {i}: {states[f'ryw{i}']} right after finish")
"""
    r = subprocess.run([sys.executable, "-c", code], env=python_client_env(agent.env),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([BIN["trackctl"], "rename", "ryw0", "renamed-at-once"], env=agent.env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert agent.query("run", run="ryw0")["run"]["display_name"] == "renamed-at-once"


def test_runs_query_filters_and_pages(agent):
    """RunsRequest: offset/limit page the filtered list, oldest first."""
    agent.start()
    for rid, code in (("pg1", 0), ("pg2", 3), ("pg3", 0), ("pg4", 0)):
        finish_producer(agent.producer(rid, 3, "--exit-code", code))
        # One second apart: the list is ordered by the run dirs' start times.
        time.sleep(1.1)
    agent.wait_for(lambda: agent.run_state("pg4") == "finished", what="pg4 finished")

    def ids(**kw):
        return [r["id"] for r in agent.query("runs", **kw)["runs"]]
    assert ids() == ["pg1", "pg2", "pg3", "pg4"]
    assert ids(offset=1, limit=2) == ["pg2", "pg3"]
    assert ids(offset=3) == ["pg4"] and ids(offset=9) == []
    assert ids(state="finished", offset=1) == ["pg3", "pg4"]
    assert ids(state="failed", limit=1) == ["pg2"]


def test_killed_client_is_marked_crashed_and_others_keep_running(agent):
    """R9: kill -9 of a client → crashed within seconds, while an unrelated run on the
    same agent stays running."""
    agent.start()
    victim = agent.producer("victim", 1_000_000, "--sleep-us", 1000, "--every", 10)
    other = agent.producer("other", 1_000_000, "--sleep-us", 1000, "--every", 10)
    agent.wait_for(lambda: agent.run_state("victim") == "running", what="victim running")
    agent.wait_for(lambda: agent.run_state("other") == "running", what="other running")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    t0 = time.monotonic()
    agent.wait_for(lambda: agent.run_state("victim") == "crashed", what="victim crashed")
    print(f"crash detected {time.monotonic() - t0:.2f}s after kill -9")
    assert agent.run_state("other") == "running"
    run = agent.query("run", run="victim")["run"]
    assert run["exit_code"] is None
    other.send_signal(signal.SIGKILL)
    other.wait()
    agent.wait_for(lambda: agent.run_state("other") == "crashed", what="other crashed")


def test_client_dying_while_the_agent_is_down_is_found_at_restart(agent):
    agent.start()
    p = agent.producer("orphan", 1_000_000, "--sleep-us", 1000, "--every", 10)
    agent.wait_for(lambda: agent.run_state("orphan") == "running", what="running")
    time.sleep(1.2)  # past a checkpoint: the run is in the active list on disk
    agent.kill9()
    p.send_signal(signal.SIGKILL)
    p.wait()
    agent.start()
    agent.wait_for(lambda: agent.run_state("orphan") == "crashed", what="crashed after restart")


def test_two_processes_on_one_run_end_with_the_last(agent):
    agent.start()
    a = agent.producer("shared", 100, "--first-step", 0)
    finish_producer(a)
    b = agent.producer("shared", 1_000_000, "--first-step", 100, "--sleep-us", 1000, "--every", 10)
    agent.wait_for(lambda: agent.run_state("shared") == "running", what="running again")
    b.send_signal(signal.SIGTERM)
    b.wait()
    agent.wait_for(lambda: agent.run_state("shared") in ("crashed", "killed"), what="ended")
    steps = [h["_step"] for h in history_lines(agent, "shared")]
    assert steps[:100] == list(range(100)) and steps == sorted(set(steps))


def test_agent_kill9_replays_runs_exactly_once(agent):
    """The local files after agent crashes hold every row exactly once."""
    import random
    rng = random.Random(7)
    agent.start()
    procs = [agent.producer(f"x{i}", 30000, "--sleep-us", 300, "--every", 50,
                            "--timeout-ms", 120000) for i in range(3)]
    for _ in range(3):
        time.sleep(rng.uniform(0.3, 1.5))
        agent.kill9()
        agent.start()
    for p in procs:
        finish_producer(p, timeout=300)
    for i in range(3):
        agent.wait_for(lambda: agent.run_state(f"x{i}") == "finished", what=f"x{i} finished")
        steps = [h["_step"] for h in history_lines(agent, f"x{i}")]
        assert steps == list(range(30000)), (
            f"x{i}: {len(steps)} lines, {len(steps) - len(set(steps))} duplicates")


def test_rename(agent):
    agent.start()
    finish_producer(agent.producer("named", 3))
    agent.wait_for(lambda: agent.run_state("named") == "finished", what="finished")
    assert agent.query("rename", run="named", name="my best run") == {"ok": True}
    agent.wait_for(lambda: agent.query("run", run="named")["run"]["display_name"] == "my best run",
                   what="renamed")
    assert agent.query("run", run="nope")["error"]["code"] == 7


def test_spooled_records_are_delivered_by_trackctl_spool_flush(agent, tmp_path):
    """A client whose agent never came up spools what it logged; `trackctl spool
    flush` delivers it once the agent is there, exactly once."""
    agent.env["XDG_STATE_HOME"] = str(tmp_path / "client-state")
    p = agent.producer("spooled", 200, "--timeout-ms", 1000)
    out, _ = p.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["acked"] == 0 and report["status"] != "success"
    agent.start()
    r = subprocess.run([BIN["trackctl"], "spool", "flush"], env=agent.env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("202 spooled records delivered"), r.stdout
    agent.wait_for(lambda: agent.run_state("spooled") is not None, what="the run")
    steps = [h["_step"] for h in history_lines(agent, "spooled")]
    assert steps == list(range(200))
