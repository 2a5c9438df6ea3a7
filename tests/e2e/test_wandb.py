"""The `wandb` sink end to end: a real agent, the fake W&B backend
(tests/fake-wandb) and real client processes, all separate processes.

The judge of every test is the same conservation check: after the faults stop,
the fake holds every row the local store holds (every acknowledged row), byte
for byte and exactly once by offset (no holes, no conflicting rewrites, no
repeated `_step`), its summary equals the local summary.json, and
complete/exitcode match the run's end. Faults come from the fake's control API
(RELIABILITY.md R7, R8); iteration counts of the kill loop from
TRACKD_TEST_ITERATIONS."""
import base64
import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import (BIN, ITERATIONS, Agent, batch_request, field_bytes, field_varint,
                      finish_producer, python_client_env, require_bins)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fake-wandb"))
from fakewandb_client import FakeWandb  # noqa: E402

PROJECT = "trackd-tests"  # the producer's


# ---- fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_server():
    fw = FakeWandb(max_hold=30).start()
    yield fw
    fw.stop()


@pytest.fixture
def fw(fake_server):
    fake_server.reset()
    yield fake_server
    fake_server.clear_faults()


def wandb_yaml(fw, key_path, **over):
    cfg = {
        "enabled": "true", "base_url": fw.base_url, "api_key_file": str(key_path),
        "transmit_interval": "100ms", "heartbeat_interval": "1s", "upsert_debounce": "100ms",
        "connect_timeout": "1s", "request_timeout": "3s", "stall_timeout": "1s",
        "retry_min": "100ms", "retry_max": "1s",
    }
    cfg.update(over)
    return "sinks:\n  wandb:\n" + "".join(f"    {k}: {v}\n" for k, v in cfg.items())


@pytest.fixture
def make_agent(tmp_path, fw):
    """make_agent(**sinks.wandb overrides) -> a started Agent uploading to the fake."""
    require_bins()
    agents = []

    def make(start=True, key_mode=0o600, extra="", **over):
        key = tmp_path / "wandb.key"
        key.write_text(fw.api_key + "\n")
        os.chmod(key, key_mode)
        a = Agent(tmp_path, config=wandb_yaml(fw, key, **over) + extra)
        agents.append(a)
        if start:
            a.start()
        return a

    yield make
    for a in agents:
        if a.proc and a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()


# ---- helpers --------------------------------------------------------------------------

def local_run(agent, run_id):
    """The local store's answer for the run, or {} while it has none (a query
    can also miss its deadline on a slow build: callers wait and compare)."""
    return agent.query("run", run=run_id).get("run", {})


def local_lines(agent, run_id, name):
    path = os.path.join(local_run(agent, run_id).get("dir", "/nonexistent"), name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def local_summary(agent, run_id):
    with open(os.path.join(local_run(agent, run_id)["dir"], "summary.json")) as f:
        return json.load(f)


def upstream(fw, run_id, lines=True):
    return fw.run_or_none(fw.entity, PROJECT, run_id, lines)


def cursor_file(agent, name):
    """A sink's durable txlog cursor (u64 index + crc32c)."""
    with open(os.path.join(agent.state_dir, "log", "cursors", f"{name}.cur"), "rb") as f:
        return struct.unpack("<Q", f.read()[:8])[0]


def wandb_state(agent):
    return agent.query("wandb")


def sink_run(agent, run_id):
    for r in wandb_state(agent)["runs"]:
        if r["id"] == run_id:
            return r
    return None


def wait_local_end(agent, run_id, timeout=60):
    return agent.wait_for(lambda: agent.run_state(run_id) not in (None, "running"),
                          timeout=timeout, what=f"{run_id} to end locally")


def wait_uploaded(agent, fw, run_id, complete=True, timeout=60):
    """Until the fake holds every local line of the run (and its end)."""
    wait_local_end(agent, run_id, timeout)
    want = len(local_lines(agent, run_id, "history.jsonl"))

    def done():
        r = upstream(fw, run_id, lines=False)
        return r and r["history_lines"] >= want and (r["complete"] or not complete) and \
            r["summary"] is not None
    fw.wait_for(done, timeout=timeout, what=f"{run_id} uploaded ({want} rows)")
    # And the sink knows it: nothing in flight or unacknowledged (a backend may
    # have applied a request whose answer is still lost on the way).
    agent.wait_for(lambda: (sink_run(agent, run_id) or {"state": "done"})["state"] == "done",
                   timeout=timeout, what=f"{run_id} done in the sink")


def assert_exactly_once(agent, fw, run_id, exitcode=0, complete=True, rows=None,
                        exitcode_changes=0):
    r = upstream(fw, run_id)
    assert r is not None, f"{run_id} not on the backend"
    local = local_lines(agent, run_id, "history.jsonl")
    if rows is not None:
        assert len(local) == rows
    assert r["history"] == local, "backend history differs from the local store"
    assert r["console"] == local_lines(agent, run_id, "output.log")
    for name, f in r["files"].items():
        assert f["holes"] == 0 and f["gaps"] == 0, (name, f)
        # The summary is rewritten whole at offset 0: that is its protocol.
        assert f["conflicts"] == 0 or name == "wandb-summary.json", (name, f)
    a = r["history_analysis"]
    assert a["repeated_steps"] == 0 and a["decreasing_steps"] == 0 and a["unparsable"] == 0, a
    assert r["summary"] == local_summary(agent, run_id)
    assert r["complete"] is complete, r["complete"]
    if complete:
        assert r["exitcode"] == exitcode
        assert r["exitcode_changes"] == exitcode_changes
    else:
        assert r["exitcode"] is None
    return r


# ---- hand-made records (what libtrackd would send), for console, modes, odd rows ------

def f64(num, x):
    return bytes([num << 3 | 1]) + struct.pack("<d", x)


def value(v):
    if isinstance(v, bool):
        return field_varint(3, int(v))
    if isinstance(v, int):
        return field_varint(2, v)
    if isinstance(v, float):
        return f64(1, v)
    return field_bytes(4, v)


def item(key, v):
    return field_bytes(1, key) + field_bytes(2, value(v))


def rec_start(run_id, mode=None, config=None, tags=(), notes=None, project=PROJECT):
    s = field_bytes(1, project) + field_varint(10, os.getpid())
    s += field_varint(11, int(time.time() * 1e6))
    if config:
        s += field_bytes(4, b"".join(field_bytes(1, item(k, v)) for k, v in config.items()))
    for t in tags:
        s += field_bytes(5, t)
    if notes:
        s += field_bytes(6, notes)
    if mode is not None:
        s += field_varint(12, mode)
    return field_bytes(1, run_id) + field_bytes(2, s)


def rec_row(run_id, step, **items):
    row = field_varint(1, step) + field_varint(3, int(time.time() * 1e6))
    row += b"".join(field_bytes(4, item(k, v)) for k, v in items.items())
    return field_bytes(1, run_id) + field_bytes(3, row)


def rec_console(run_id, text, stderr=False):
    c = field_varint(1, 1 if stderr else 0) + field_bytes(2, text)
    c += field_varint(3, int(time.time() * 1e6))
    return field_bytes(1, run_id) + field_bytes(6, c)


def rec_config(run_id, **items):
    return field_bytes(1, run_id) + field_bytes(5, b"".join(field_bytes(1, item(k, v))
                                                           for k, v in items.items()))


def rec_exit(run_id, code):
    return field_bytes(1, run_id) + field_bytes(7, field_varint(1, code & 0xFFFFFFFFFFFFFFFF))


def send_batches(agent, *batches):
    """Each batch (a list of records) as one request, all from one client process:
    a run's processes must not vanish between its records, or it is crashed."""
    session = os.urandom(16)
    replies = agent.raw(*[batch_request(session, i + 1, list(b)) for i, b in enumerate(batches)])
    assert all("ack" in r for r in replies), replies


# ---- the data path -------------------------------------------------------------------

def test_runs_upload_like_the_local_store(make_agent, fw):
    """Finished → complete, exit 0; failed → its exit code; same rows, same summary;
    the run's URL is reported; the key appears nowhere."""
    agent = make_agent()
    ok = agent.producer("upok", 300, "--sleep-us", 500, "--every", 50)
    bad = agent.producer("upbad", 120, "--exit-code", 3)
    finish_producer(ok)
    finish_producer(bad)
    wait_uploaded(agent, fw, "upok")
    wait_uploaded(agent, fw, "upbad")
    r = assert_exactly_once(agent, fw, "upok", exitcode=0, rows=300)
    assert r["project"] == PROJECT and r["upserts"] >= 1 and r["fields"]["host"]
    assert r["config"]["_wandb"]["value"]["t"]
    assert_exactly_once(agent, fw, "upbad", exitcode=3, rows=120)
    assert r["requests_after_complete"] == 0
    sr = sink_run(agent, "upok")
    assert sr["run_url"].endswith(f"/{fw.entity}/{PROJECT}/runs/upok"), sr
    assert sr["project_url"] == sr["run_url"][:-len("/runs/upok")]
    st = wandb_state(agent)
    assert st["counters"]["requests_ok"] >= 4 and st["counters"]["requests_failed"] == 0
    # Keep-alive: a handful of connections carry every request.
    # Keep-alive: the API requests share a connection or two; run file PUTs
    # (config.yaml, wandb-summary.json at the end) have their own slots
    # (max_parallel_uploads, 4), each at most one connection.
    fs = fw.stats()
    assert fs["connections"] <= 2 + min(4, fs.get("file_puts", 0)) < \
        2 + st["counters"]["requests_ok"], fs
    # The secret stays secret.
    status = subprocess.run([BIN["trackctl"], "status", "--json"], env=agent.env,
                            capture_output=True, text=True).stdout
    # Nor its Basic-auth form, which curl makes from it.
    basic = base64.b64encode(("api:" + fw.api_key).encode()).decode()
    for text in (agent.log(), json.dumps(st), status):
        assert fw.api_key not in text and basic not in text
    assert agent.stop() == 0
    assert fw.api_key not in agent.log() and basic not in agent.log()
    assert fw.stats()["auth_failures"] == 0


def test_console_config_tags_offline_and_long_lines(make_agent, fw):
    """Console lines (stdout, stderr → ERROR) at their offsets, config and tags via
    UpsertBucket (again after a change), an offline run never uploaded, and a line
    over the line limit skipped, counted, without a hole in the offsets."""
    # No system metrics: an events line may pass 400 bytes too, and whether a
    # run this short gets a sample is a matter of timing.
    agent = make_agent(max_line_bytes="400B", extra="system_metrics:\n  enabled: false\n")
    send_batches(
        agent,
        [rec_start("cons1", config={"lr": 0.5, "layers": 3}, tags=["a", "b"], notes="n1"),
         rec_start("off1", mode=1)],
        [rec_console("cons1", "hello\nworld\n"), rec_console("cons1", "oops", stderr=True),
         rec_row("cons1", 0, loss=1.0), rec_row("off1", 0, loss=1.0)],
        [rec_row("cons1", 1, loss=0.5, big="x" * 1000), rec_row("cons1", 2, loss=0.25),
         rec_config("cons1", lr=0.1), rec_console("cons1", "bye")],
        [rec_exit("cons1", 0), rec_exit("off1", 0)])
    wait_local_end(agent, "cons1")
    assert agent.run_state("cons1") == "finished"
    fw.wait_for(lambda: (upstream(fw, "cons1", False) or {}).get("complete"), timeout=30,
                what="cons1 complete")
    r = upstream(fw, "cons1")
    local = local_lines(agent, "cons1", "history.jsonl")
    assert len(local) == 3
    assert r["history"] == [local[0], local[2]], "the long row is skipped, the rest contiguous"
    assert r["files"]["wandb-history.jsonl"]["holes"] == 0
    cons = local_lines(agent, "cons1", "output.log")
    assert r["console"] == cons and len(cons) == 4
    assert cons[2].startswith("ERROR ") and cons[0].endswith(" hello")
    assert r["summary"] == local_summary(agent, "cons1")
    assert r["config"]["lr"]["value"] == 0.1 and r["config"]["layers"]["value"] == 3
    assert r["tags"] == ["a", "b"] and r["notes"] == "n1"
    assert r["complete"] and r["exitcode"] == 0
    assert upstream(fw, "off1") is None
    assert sink_run(agent, "off1")["state"] == "offline"
    assert wandb_state(agent)["counters"]["lines_skipped"] == 1
    assert "over the line limit" in agent.log()
    # Restarted, the offline run stays offline and nothing is sent twice.
    agent.stop()
    agent.start()
    send_batches(agent, [rec_start("off1", mode=1), rec_row("off1", 1, loss=2.0),
                         rec_exit("off1", 0)])
    time.sleep(1.0)
    assert upstream(fw, "off1") is None
    assert upstream(fw, "cons1")["requests_after_complete"] == 0


def test_lists_null_and_histograms_upload_as_stored(make_agent, fw):
    """W&B's value model from the Python package: tuples, None, nested and mixed
    lists in config, rows and summary, numpy arrays as lists or histograms; the
    backend holds what the local store holds, config values as given. A string
    with a NUL is refused at log() (never cut), so neither side sees it."""
    pytest.importorskip("numpy")
    agent = make_agent()
    script = textwrap.dedent(f"""
        import numpy as np, trackd
        run = trackd.init(project={PROJECT!r}, id="vals", console=False,
                          config={{"betas": (0.9, 0.999), "sched": None,
                                   "layers": [[1, 2], [3, None]], "opt": {{"l": []}}}})
        for step in range(3):
            run.log({{"loss": 1.0 / (step + 1), "v": [step, None, "s"],
                     "g": np.arange(40) * step, "w": np.ones(3)}})
        try:
            run.log({{"s": "a\\x00b"}})
        except trackd.InvalidValueError as e:
            print("refused:", e)
        run.summary["best"] = [1, [2]]
        run.finish()
    """)
    r = subprocess.run([sys.executable, "-c", script], env=python_client_env(agent.env),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "refused: trackd: key 's': string contains a NUL character" in r.stdout
    wait_uploaded(agent, fw, "vals")
    up = assert_exactly_once(agent, fw, "vals", rows=3)
    config = {k: v["value"] for k, v in up["config"].items() if k != "_wandb"}
    assert config == {"betas": [0.9, 0.999], "sched": None, "layers": [[1, 2], [3, None]],
                      "opt": {"l": []}}
    rows = [json.loads(line) for line in up["history"]]
    assert [row["v"] for row in rows] == [[s, None, "s"] for s in range(3)]
    assert all(row["g"]["_type"] == "histogram" and len(row["g"]["values"]) == 32 and
               len(row["g"]["bins"]) == 33 for row in rows)
    assert rows[0]["w"] == [1.0, 1.0, 1.0] and "s" not in rows[0]
    assert up["summary"]["best"] == [1, [2]]


def test_resumed_run_continues_at_its_offsets(make_agent, fw):
    """A finished run resumed by a new process: its rows continue after the old
    ones (offsets and _step), and it is completed again."""
    agent = make_agent()
    finish_producer(agent.producer("resume1", 100))
    wait_uploaded(agent, fw, "resume1")
    agent.stop()
    agent.start()  # the run comes back from the sink's state on disk
    finish_producer(agent.producer("resume1", 100, "--first-step", 100, "--exit-code", 2))
    agent.wait_for(lambda: agent.run_state("resume1") == "failed", what="failed")
    wait_uploaded(agent, fw, "resume1")
    r = assert_exactly_once(agent, fw, "resume1", exitcode=2, rows=200, exitcode_changes=1)
    assert [json.loads(h)["_step"] for h in r["history"]] == list(range(200))
    assert r["complete_requests"] == 2 and r["upserts"] >= 2


def test_idle_run_sends_heartbeats(make_agent, fw):
    agent = make_agent(heartbeat_interval="300ms", transmit_interval="50ms")
    p = agent.producer("beat", 3, "--sleep-us", 1200000)
    finish_producer(p)
    wait_uploaded(agent, fw, "beat")
    r = assert_exactly_once(agent, fw, "beat", rows=3)
    assert r["heartbeats"] >= 2, r["heartbeats"]


@pytest.mark.parametrize("complete_crashed", [False, True])
def test_crashed_run(make_agent, fw, complete_crashed):
    """A client killed with -9: every row it had acknowledged goes up; by default no
    `complete` (the backend decides), with complete_crashed: complete, exit 1."""
    agent = make_agent(complete_crashed=str(complete_crashed).lower())
    p = agent.producer("crash1", 1_000_000, "--sleep-us", 1000, "--every", 20)
    agent.wait_for(lambda: len(local_lines(agent, "crash1", "history.jsonl")) > 50
                   if agent.run_state("crash1") else False, what="rows")
    p.send_signal(signal.SIGKILL)
    p.wait()
    agent.wait_for(lambda: agent.run_state("crash1") == "crashed", what="crashed")
    wait_uploaded(agent, fw, "crash1", complete=complete_crashed)
    time.sleep(0.5)
    assert_exactly_once(agent, fw, "crash1", exitcode=1, complete=complete_crashed)


# ---- R7: every upstream fault class ---------------------------------------------------

FAULTS = {
    "500": dict(kind="status", status=500, count=3),
    "502": dict(kind="status", status=502, count=3),
    "503-retry-after": dict(kind="status", status=503, retry_after=2, count=1),
    "429-retry-after-date": dict(kind="status", status=429, retry_after=2,
                                 retry_after_date=True, count=1),
    # Refused until the sink has met it (then cleared): on a slow machine the
    # first upload may come after any fixed window.
    "connection-refused": dict(kind="refuse", duration=600),
    "reset-at-headers": dict(kind="reset", when="headers", count=3),
    "reset-mid-body": dict(kind="reset", when="body", count=3),
    "reset-after-apply": dict(kind="reset", apply=True, count=3),
    "no-response": dict(kind="hang", hold=20, count=1),
    "no-response-after-apply": dict(kind="hang", apply=True, hold=20, count=1),
    "slow-trickle": dict(kind="trickle", byte_delay=0.3, count=1),
    "upsert-500": dict(kind="status", status=500, count=2, path_prefix="/graphql"),
    "upsert-409": dict(kind="status", status=409, count=2, path_prefix="/graphql"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_retryable_fault(make_agent, fw, name):
    """R7, retryable classes: nothing lost, nothing doubled, Retry-After honoured,
    every request bounded by its timeouts."""
    agent = make_agent()
    spec = dict(FAULTS[name])
    spec.setdefault("path_prefix", "/files/")
    fid = fw.add_fault(**spec)
    t0 = time.monotonic()
    p = agent.producer(f"f{len(name)}", 200, "--sleep-us", 2000, "--every", 20)
    run_id = f"f{len(name)}"
    if spec["kind"] == "refuse":
        agent.wait_for(lambda: wandb_state(agent)["counters"]["requests_failed"] >= 1,
                       what="an upload refused")
        fw.clear_faults(fid)
    finish_producer(p)
    wait_uploaded(agent, fw, run_id, timeout=60)
    elapsed = time.monotonic() - t0
    r = assert_exactly_once(agent, fw, run_id, rows=200)
    if spec["kind"] != "refuse":  # a refusal fires when added, and was cleared above
        fault = [f for f in fw.faults()["faults"] + fw.faults()["expired"]
                 if f["id"] == fid][0]
        assert fault["fired"] >= 1, fault
    counters = wandb_state(agent)["counters"]
    assert counters["requests_failed"] >= 1, counters
    if "apply" in spec or spec["kind"] == "trickle":
        # The backend applied a request whose answer was lost: re-sent with the same
        # offsets, it replaced lines with identical ones.
        assert r["duplicates"] > 0, r["files"]
    if "retry_after" in spec:
        journal = fw.requests(path_prefix=spec["path_prefix"])
        hit = [e for e in journal if e.get("fault", {}).get("id") == fid][0]
        after = [e for e in journal if e["seq"] > hit["seq"]]
        assert after and after[0]["t"] - hit["t"] >= spec["retry_after"] - 0.5, \
            (hit, after[:1])
    if spec["kind"] in ("hang", "trickle"):
        assert elapsed < 20, f"a stuck request was not abandoned ({elapsed:.1f}s)"


# ---- R7: permanent faults park one run, not the others ----------------------------------

@pytest.mark.parametrize("how", ["404-then-retry", "400-upsert-then-restart"])
def test_parked_run_does_not_hold_back_others(make_agent, fw, how):
    agent = make_agent()
    if how.startswith("404"):
        fw.add_fault(kind="status", status=404, count=-1,
                     path_prefix=f"/files/{fw.entity}/{PROJECT}/parkme/")
    else:
        fw.add_fault(kind="status", status=400, count=1, path_prefix="/graphql",
                     body={"errors": [{"message": "bad input"}]})
    a = agent.producer("parkme" if how.startswith("404") else "runa", 150)
    b = agent.producer("healthy" if how.startswith("404") else "runb", 150)
    finish_producer(a)
    finish_producer(b)
    if how.startswith("404"):
        parked, healthy = "parkme", "healthy"
    else:
        # Whichever run's UpsertBucket met the 400 is parked.
        st = agent.wait_for(lambda: [r for r in wandb_state(agent)["runs"]
                                     if r["state"] == "parked"], what="a parked run")
        parked = st[0]["id"]
        healthy = "runb" if parked == "runa" else "runa"
    wait_uploaded(agent, fw, healthy)
    assert_exactly_once(agent, fw, healthy, rows=150)
    pr = agent.wait_for(lambda: (sink_run(agent, parked) or {}).get("state") == "parked"
                        and sink_run(agent, parked), what="parked")
    assert pr["last_status"] in (400, 404) and pr["buffered_bytes"] == 0, pr
    assert "parked" in agent.log()
    # Its rows stay in the log (its hold keeps the cursor back) until it is retried,
    # while the local sink's cursor moves on.
    time.sleep(1.5)
    up = upstream(fw, parked, False)
    assert not up or not up["complete"]
    c = wandb_state(agent)["counters"]
    assert c["committed_index"] < c["processed_index"], c
    assert cursor_file(agent, "wandb") == c["committed_index"] < cursor_file(agent, "local")
    fw.clear_faults()
    if how.startswith("404"):
        r = subprocess.run([BIN["trackctl"], "retry", parked, "--json"], env=agent.env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        reply = json.loads(r.stdout)
        assert reply == {"ok": True, "retried": [parked]}, reply
    else:
        agent.stop()
        agent.start()
    wait_uploaded(agent, fw, parked)
    assert_exactly_once(agent, fw, parked, rows=150)
    agent.wait_for(lambda: cursor_file(agent, "wandb") == cursor_file(agent, "local"),
                   what="the wandb cursor to catch up")
    if upstream(fw, healthy)["requests_after_complete"]:
        print(json.dumps(fw.requests(run=f"{fw.entity}/{PROJECT}/{healthy}"), indent=0))
        print(agent.log())
    assert upstream(fw, healthy)["requests_after_complete"] == 0


# ---- R8: an outage longer than the whole retry schedule ---------------------------------

def test_long_outage_drops_nothing(make_agent, fw):
    """The backend refuses connections for much longer than the backoff cap (many
    attempts at the cap); afterwards every row is there once. Prints the drain rate."""
    agent = make_agent(retry_min="50ms", retry_max="300ms")
    rows = 20000
    outage = 6.0
    fw.add_fault(kind="refuse", duration=outage)
    t_fault = time.monotonic()
    ps = [agent.producer(f"out{i}", rows) for i in range(2)]
    for p in ps:
        finish_producer(p)
    for i in range(2):
        wait_local_end(agent, f"out{i}")
    time.sleep(max(0.0, t_fault + outage - 1.0 - time.monotonic()))
    st = wandb_state(agent)
    assert all(upstream(fw, f"out{i}", False) is None for i in range(2))
    assert st["counters"]["requests_failed"] >= 10, st["counters"]  # far past the cap
    assert {r["state"] for r in st["runs"]} <= {"retrying", "uploading"}, st["runs"]
    fw.wait_for(lambda: not fw.health()["refusing"], timeout=outage + 5, what="outage end")
    t_end = time.monotonic()
    for i in range(2):
        wait_uploaded(agent, fw, f"out{i}", timeout=120)
    drain = time.monotonic() - t_end
    for i in range(2):
        assert_exactly_once(agent, fw, f"out{i}", rows=rows)
    print(f"\nR8: {st['counters']['requests_failed']} failed attempts during a {outage:.0f} s "
          f"outage (cap 0.3 s); drained {2 * rows} rows in {drain:.2f} s = "
          f"{2 * rows / drain:.0f} rows/s")


# ---- agent kill -9 while uploading -------------------------------------------------------

def test_agent_kill9_during_upload(make_agent, fw):
    """kill -9 the agent while requests are in flight (the backend answers slowly,
    some after applying): after restarts, no row lost, none doubled after offsets."""
    agent = make_agent()
    fw.add_fault(kind="delay", delay=0.3, count=-1, path_prefix="/files/")
    rng = random.Random(7)
    p = agent.producer("kill9", 3000, "--sleep-us", 20000, "--every", 20,
                       "--timeout-ms", 120000)
    kills = ITERATIONS or 3
    for _ in range(kills):
        time.sleep(rng.uniform(0.4, 1.0))
        agent.kill9()
        agent.start()
    finish_producer(p, timeout=180)
    wait_uploaded(agent, fw, "kill9", timeout=120)
    r = assert_exactly_once(agent, fw, "kill9", rows=3000)
    print(f"\nkill -9 x{kills}: {r['duplicates']} lines re-sent (idempotent), "
          f"{r['requests']} requests")


# ---- memory bound: a failing run is evicted, the others go on ----------------------------

def test_failing_run_evicted_under_memory_pressure(make_agent, fw):
    agent = make_agent(max_buffer_bytes="1MiB")
    fw.add_fault(kind="status", status=503, retry_after=1, duration=6,
                 path_prefix=f"/files/{fw.entity}/{PROJECT}/slowrun/")
    slow = agent.producer("slowrun", 20000)
    fast = agent.producer("fastrun", 20000)
    finish_producer(slow)
    finish_producer(fast)
    wait_uploaded(agent, fw, "fastrun", timeout=30)
    assert not (upstream(fw, "slowrun", False) or {}).get("complete"), \
        "the failing run should still be failing"
    assert wandb_state(agent)["counters"]["runs_evicted"] >= 1
    assert_exactly_once(agent, fw, "fastrun", rows=20000)
    wait_uploaded(agent, fw, "slowrun", timeout=60)
    r = assert_exactly_once(agent, fw, "slowrun", rows=20000)
    # While evicted it asked with an empty request whether the backend was back,
    # instead of re-reading the log at every retry.
    assert r["heartbeats"] >= 1


# ---- configuration ----------------------------------------------------------------------

def test_key_file_readable_by_others_is_refused(make_agent, fw):
    agent = make_agent(start=False, key_mode=0o644)
    agent.start(wait=False)
    assert agent.proc.wait(timeout=10) != 0
    log = agent.log()
    assert "accessible by group or others" in log and "chmod 600" in log, log
    assert fw.api_key not in log


def test_missing_key_is_refused(tmp_path, fw):
    require_bins()
    agent = Agent(tmp_path, config=f"sinks:\n  wandb:\n    enabled: true\n"
                                   f"    base_url: {fw.base_url}\n"
                                   f"    api_key_env: TRACKD_TEST_NO_SUCH_KEY\n")
    agent.env.pop("TRACKD_TEST_NO_SUCH_KEY", None)
    agent.start(wait=False)
    assert agent.proc.wait(timeout=10) != 0
    assert "no W&B API key" in agent.log()


# ---- issue #12 item 3: a run whose last records were spooled ------------------------------

@pytest.mark.parametrize("complete_crashed,restart", [(False, False), (True, False),
                                                      (False, True)])
def test_spooled_exit_settles_a_crashed_run(make_agent, fw, tmp_path, complete_crashed, restart):
    """The agent is killed mid-run; the client finishes without it and spools
    (promptly: no agent can answer, none can be started); the restarted agent
    marks the run crashed (its process is gone); `trackctl spool flush` delivers
    the exit record, which settles the run: finished locally, and upstream
    complete with exit code 0 — also when the crash was already completed
    upstream (complete_crashed: the exit code changes once, 1 → 0), and when
    the sinks had put the ended run away (restart: both read it back from disk)."""
    agent = make_agent(complete_crashed=str(complete_crashed).lower())
    agent.env["XDG_STATE_HOME"] = str(tmp_path / "client-state")
    hold = tmp_path / "hold"
    p = agent.producer("late", 50, "--hold-file", hold)
    agent.wait_for(lambda: len(local_lines(agent, "late", "history.jsonl")) == 50
                   if agent.run_state("late") else False, what="rows")
    agent.kill9()
    hold.touch()
    t0 = time.monotonic()
    out, err = p.communicate(timeout=60)
    finish_s = time.monotonic() - t0
    report = json.loads(out.strip().splitlines()[-1])
    print(f"\nfinish without an agent: {finish_s:.2f}s, {report}")
    assert report["unacked"] >= 1 and report["status"] != "success", (report, err)
    assert finish_s < 10, f"td_finish waited {finish_s:.1f}s with no agent to wait for"

    # Nothing is lost, and the user is told where it waits, agent or not.
    st = subprocess.run([BIN["trackctl"], "status"], env=agent.env, capture_output=True,
                        text=True, timeout=30)
    assert "waiting in spool" in st.stdout + st.stderr and "trackctl spool flush" in \
        st.stdout + st.stderr, (st.stdout, st.stderr)
    st = subprocess.run([BIN["trackctl"], "status", "--json"], env=agent.env,
                        capture_output=True, text=True, timeout=30)
    down = json.loads(st.stdout)
    assert st.returncode != 0 and down["agent"] == "down", down
    assert down["spool"]["records"] == report["unacked"], down

    agent.start()
    agent.wait_for(lambda: agent.run_state("late") == "crashed", what="crash mark")
    st = json.loads(subprocess.run([BIN["trackctl"], "status", "--json"], env=agent.env,
                                   capture_output=True, text=True, timeout=30).stdout)
    assert st["spool"]["records"] == report["unacked"] and st["spool"]["bytes"] > 0, st
    wait_uploaded(agent, fw, "late", complete=complete_crashed)
    if restart:
        assert agent.stop() == 0
        agent.start()
    r = subprocess.run([BIN["trackctl"], "spool", "flush"], env=agent.env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    agent.wait_for(lambda: agent.run_state("late") == "finished", what="settled to finished")
    assert local_run(agent, "late")["exit_code"] == 0
    wait_uploaded(agent, fw, "late")
    assert_exactly_once(agent, fw, "late", exitcode=0, rows=50,
                        exitcode_changes=1 if complete_crashed else 0)
    st = json.loads(subprocess.run([BIN["trackctl"], "status", "--json"], env=agent.env,
                                   capture_output=True, text=True, timeout=30).stdout)
    assert st["spool"]["records"] == 0, st
