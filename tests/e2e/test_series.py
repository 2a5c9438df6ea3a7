"""The agent side of `trackctl ui` (issue #14): the series query, served from
the local sink's series index, against what history.jsonl holds; live rows;
access; the index across a kill -9 of the agent; the console query."""
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import Agent, finish_producer, python_client_env, require_bins

FANOUT, LEVELS = 4, 8  # series.h: SERIES_FANOUT, SERIES_LEVELS
INVALID, PERMISSION_DENIED = 3, 6
NOBODY, OTHER, GROUP_GID = 65534, 65533, 29


def history_rows(agent, run):
    """Every row of the run, as the history query gives history.jsonl."""
    rows, line = [], 0
    while True:
        page = agent.query("history", run=run, from_line=line, max_lines=5000)
        assert "error" not in page, page
        lines = page.get("lines", [])
        rows += [x if isinstance(x, dict) else json.loads(x) for x in lines]
        line = page["next_line"]
        if not lines or line >= page["total_lines"]:
            return rows


def expected_series(rows, key, nb, lo=None, hi=None, x="_step"):
    """series.h's definition, computed from the history rows: equal-width
    buckets over [lo, hi]; at most nb points in range: the points; else the
    coarsest level with >= nb whole blocks, each counted at its last point's
    x, the points before the first and after the last whole block one by one."""
    pts = [(r[x], r[key]) for r in rows
           if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    lo = rows[0][x] if lo is None else lo
    hi = rows[-1][x] if hi is None else hi
    i0 = next((i for i, p in enumerate(pts) if p[0] >= lo), len(pts))
    i1 = next((i for i, p in enumerate(pts) if p[0] > hi), len(pts))
    n = max(i1 - i0, 0)
    if n <= nb:
        sel = pts[i0:i1]
        return {"total_points": len(pts), "exact": True, "x": [float(p[0]) for p in sel],
                "min": [float(p[1]) for p in sel], "max": [float(p[1]) for p in sel],
                "last": [float(p[1]) for p in sel], "count": [1] * len(sel)}
    g = next((FANOUT ** l for l in range(LEVELS, 0, -1) if n // FANOUT ** l >= nb), 1)
    buckets = {}

    def add(xv, mn, mx, last, count):
        i = 0
        if hi > lo:
            f = (xv - lo) * (nb / (hi - lo))
            i = 0 if f <= 0 else nb - 1 if f >= nb else int(f)
        b = buckets.get(i)
        if b is None:
            buckets[i] = [xv, mn, mx, last, count]
        else:
            buckets[i] = [xv, min(b[1], mn), max(b[2], mx), last, b[4] + count]

    m0 = m1 = i1
    if g > 1:
        b0, b1 = -(-i0 // g), max(i1 // g, -(-i0 // g))
        if b1 > b0:
            m0, m1 = b0 * g, b1 * g
    for p in pts[i0:m0]:
        add(p[0], p[1], p[1], p[1], 1)
    for b in range(m0, m1, g):
        blk = pts[b:b + g]
        vals = [p[1] for p in blk]
        add(blk[-1][0], min(vals), max(vals), blk[-1][1], g)
    for p in pts[m1:i1]:
        add(p[0], p[1], p[1], p[1], 1)
    order = sorted(buckets)
    return {"total_points": len(pts), "exact": False,
            "x": [float(buckets[i][0]) for i in order],
            "min": [float(buckets[i][1]) for i in order],
            "max": [float(buckets[i][2]) for i in order],
            "last": [float(buckets[i][3]) for i in order],
            "count": [buckets[i][4] for i in order]}


def got_series(s):
    return {k: s.get(k, [] if k in ("x", "min", "max", "last", "count") else None)
            for k in ("total_points", "exact", "x", "min", "max", "last", "count")}


LOG_RANDOM = """
import random, trackd
rng = random.Random(7)
with trackd.init(project="series", id="rnd") as run:
    for i in range(ROWS):
        row = {"loss": rng.uniform(-5, 5), "k": rng.randrange(1000)}
        if i % 3 == 0:
            row["acc"] = rng.random()
        if i % 7 == 0:
            row["text"] = "not a number"
        run.log(row)
"""


def test_series_equals_history(agent):
    """A run logged by the real Python client: every series, bucketed or exact,
    over the whole run and sub-ranges, equals what its history.jsonl holds."""
    agent.start()
    rows_n = 5000
    r = subprocess.run([sys.executable, "-c", LOG_RANDOM.replace("ROWS", str(rows_n))],
                       env=python_client_env(agent.env), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = history_rows(agent, "rnd")
    assert len(rows) == rows_n
    reply = agent.query("series", run="rnd")
    assert reply["x"] == "_step" and reply["rows"] == rows_n
    assert [s["key"] for s in reply["series"]] == ["acc", "k", "loss"]  # numbers, sorted
    for nb in (1, 10, 100, 313, 1000, 4999, 5000, 5001, 9999, 10000):
        reply = agent.query("series", run="rnd", keys=["loss", "acc", "k"], buckets=nb)
        assert "error" not in reply, reply
        for s in reply["series"]:
            assert got_series(s) == expected_series(rows, s["key"], nb), (s["key"], nb)
    for lo, hi, nb in ((100, 900, 50), (0, 0, 10), (4000, 10**9, 200), (1234.5, 3333.3, 1000)):
        reply = agent.query("series", run="rnd", keys=["loss"], x_min=lo, x_max=hi, buckets=nb)
        assert got_series(reply["series"][0]) == expected_series(rows, "loss", nb, lo, hi)
    for x in ("_runtime", "_timestamp"):
        reply = agent.query("series", run="rnd", keys=["loss"], x=x, buckets=100)
        assert got_series(reply["series"][0]) == expected_series(rows, "loss", 100, x=x)
    # a key as x: pairs by row
    reply = agent.query("series", run="rnd", keys=["loss"], x="k", x_min=10, x_max=12)
    s = reply["series"][0]
    want = [(float(r["k"]), r["loss"]) for r in rows if 10 <= r["k"] <= 12]
    assert s["exact"] and list(zip(s["x"], s["last"])) == want
    # the limits and bad input
    assert "error" not in agent.query("series", run="rnd", keys=["loss"], buckets=9999)
    assert "error" not in agent.query("series", run="rnd", keys=["loss"], buckets=10000)
    err = agent.query("series", run="rnd", keys=["loss"], buckets=10001)["error"]
    assert err["code"] == INVALID and "10000" in err["message"]
    err = agent.query("series", run="rnd", x="nope")["error"]
    assert err["code"] == INVALID and "nope" in err["message"]
    err = agent.query("series", run="rnd", x_min=5, x_max=4)["error"]
    assert err["code"] == INVALID
    s = agent.query("series", run="rnd", keys=["absent"])["series"][0]
    assert s["key"] == "absent" and s["total_points"] == 0 and not s.get("x")
    assert agent.query("series", run="nosuchrun")["error"]["code"] == 7  # NOT_FOUND


def test_index_rebuilt_from_history_when_missing(agent):
    """A run whose series/ is gone (as one stored by an agent without the index)
    is indexed from history.jsonl when first asked, and answers the same."""
    agent.start()
    finish_producer(agent.producer("old", 3000))
    agent.wait_for(lambda: agent.run_state("old") == "finished", what="finished")
    want = agent.query("series", run="old", buckets=100)
    run_dir = agent.query("run", run="old")["run"]["dir"]
    agent.stop()
    shutil.rmtree(os.path.join(run_dir, "series"))
    agent.start()
    assert agent.query("series", run="old", buckets=100) == want
    assert os.path.exists(os.path.join(run_dir, "series", "rows"))


def test_live_rows_appear(agent):
    """Rows of a running run are in its series as the sink applies them."""
    agent.start()
    hold = agent.dir / "hold"
    p = agent.producer("live", 300, "--hold-file", hold)
    try:
        def points():
            reply = agent.query("series", run="live", keys=["i"])
            return reply["series"][0].get("total_points") if "series" in reply else None
        agent.wait_for(lambda: points() == 300, what="300 live points")
        assert agent.run_state("live") == "running"
        s = agent.query("series", run="live", keys=["i"], buckets=1000)["series"][0]
        assert s["exact"] and s["x"] == [float(i) for i in range(300)]
        assert s["last"] == [float(i) for i in range(300)]
    finally:
        hold.write_text("")
        finish_producer(p)


def test_console_pages_and_grep(agent):
    agent.start()
    finish_producer(agent.producer("con", 1000, "--console", 10))
    run_dir = agent.query("run", run="con")["run"]["dir"]
    with open(os.path.join(run_dir, "output.log")) as f:
        lines = f.read().splitlines()
    assert len(lines) == 100
    page = agent.query("console", run="con", from_line=10, max_lines=25)
    assert page["lines"] == lines[10:35] and page["line_numbers"] == list(range(10, 35))
    assert page["next_line"] == 35 and page["total_lines"] == 100
    everything = agent.query("console", run="con")
    assert everything["lines"] == lines and everything["next_line"] == 100
    page = agent.query("console", run="con", grep="row 99", max_lines=3)
    want = [(i, l) for i, l in enumerate(lines) if "row 99" in l]
    assert list(zip(page["line_numbers"], page["lines"])) == want[:3]
    page = agent.query("console", run="con", from_line=100)
    assert not page.get("lines") and page["next_line"] == 100


@pytest.fixture
def shared_agent(tmp_path):
    require_bins()
    if os.geteuid() != 0:
        pytest.skip("needs root to act as other users")
    sock_dir = tempfile.mkdtemp(prefix="trackd-series-")
    os.chmod(sock_dir, 0o755)
    os.chmod(tmp_path, 0o755)
    a = Agent(tmp_path, socket_dir=sock_dir,
              config="socket_mode: 0666\naccess:\n  group: audio\n")
    a.env["HOME"] = sock_dir
    yield a
    if a.proc and a.proc.poll() is None:
        a.proc.kill()
        a.proc.wait()
    shutil.rmtree(sock_dir, ignore_errors=True)


def test_another_users_run_is_refused(shared_agent):
    a = shared_agent.start()
    mine = a.producer("mine", 20, "--uid", NOBODY, "--gid", GROUP_GID, "--console", 5)
    out, err = mine.communicate(timeout=60)
    assert mine.returncode == 0, out + err
    a.wait_for(lambda: a.run_state("mine") == "finished", what="finished")
    for kind in ("series", "console"):
        reply = a.query(kind, run="mine", as_user=(OTHER, GROUP_GID))
        assert reply["error"]["code"] == PERMISSION_DENIED, reply
        assert "error" not in a.query(kind, run="mine", as_user=(NOBODY, GROUP_GID))
    s = a.query("series", run="mine", keys=["i"], as_user=(NOBODY, GROUP_GID))["series"][0]
    assert s["total_points"] == 20


def test_kill9_during_logging_gives_one_point_per_row(agent):
    """The agent killed with SIGKILL while a run logs, and restarted: the index
    holds exactly one point per committed row (its files cut back to the last
    checkpoint and the rows after it applied again from the log)."""
    rng = random.Random(int(os.environ.get("TRACKD_TEST_SEED", "1234")))
    rows = 20000
    agent.start()
    p = agent.producer("k9", rows, "--sleep-us", 2000, "--every", 10, "--timeout-ms", 120000)
    for _ in range(3):
        time.sleep(rng.uniform(0.3, 1.0))
        agent.kill9()
        time.sleep(rng.uniform(0.0, 0.3))
        agent.start()
    rep = finish_producer(p, timeout=300)
    assert rep["acked"] == rep["logged"]
    agent.wait_for(lambda: agent.run_state("k9") == "finished", what="finished")
    for key in ("i", "value"):
        for lo in (0, 10000):
            s = agent.query("series", run="k9", keys=[key], x_min=lo, x_max=lo + 9999,
                            buckets=10000)["series"][0]
            assert s["total_points"] == rows and s["exact"]
            assert s["x"] == [float(i) for i in range(lo, lo + 10000)]
            f = 1.0 if key == "i" else 0.5
            assert s["last"] == [i * f for i in range(lo, lo + 10000)]
    run_dir = agent.query("run", run="k9")["run"]["dir"]
    series = os.path.join(run_dir, "series")
    assert os.path.getsize(os.path.join(series, "rows")) == rows * 24
    for c in ("c0.p", "c1.p"):
        assert os.path.getsize(os.path.join(series, c)) == rows * 16
    # the pyramid agrees too
    hist = history_rows(agent, "k9")
    s = agent.query("series", run="k9", keys=["value"], buckets=1000)["series"][0]
    assert got_series(s) == expected_series(hist, "value", 1000)
    assert math.isclose(sum(s["count"]), rows)


def test_replies_stay_within_the_reply_limit(tmp_path):
    """A console page ends early, at next_line, when the next line would pass
    the reply limit (4 x limits.max_message_bytes); the pages together are the
    whole file. A series answer over the limit is refused, naming it."""
    require_bins()
    a = Agent(tmp_path, config="limits:\n  max_message_bytes: 64KiB\n").start()
    try:
        # spread out: the client's batches before its first ack assume the default limit
        finish_producer(a.producer("big", 8000, "--console", 1, "--sleep-us", 1000, "--every", 20))
        run_dir = a.query("run", run="big")["run"]["dir"]
        with open(os.path.join(run_dir, "output.log")) as f:
            lines = f.read().splitlines()
        assert len(lines) == 8000
        got, line, pages = [], 0, 0
        while line < len(lines):
            page = a.query("console", run="big", from_line=line)
            assert "error" not in page, page
            assert page["total_lines"] == 8000
            got += page["lines"]
            assert page["next_line"] == line + len(page["lines"])
            line = page["next_line"]
            pages += 1
        assert got == lines and pages > 1
        err = a.query("series", run="big", buckets=10000)["error"]
        assert err["code"] == 4 and "fewer keys or buckets" in err["message"]  # TOO_LARGE
        assert "error" not in a.query("series", run="big", keys=["i"], buckets=100)
    finally:
        a.stop()
