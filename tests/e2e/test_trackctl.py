"""trackctl against a real agent: status, runs, show (the W&B footer), history,
tail, rename, and what it says when the agent or a run is not there.
Expected outputs are computed here from the agent's own JSON answers."""
import csv
import io
import json
import math
import signal
import subprocess
import time

from conftest import BIN, finish_producer

GLYPHS = "▁▂▃▄▅▆▇█"
# The upload side of a run without a wandb sink, as the typed answer's JSON has
# it: every field there, those that do not apply null (pb_json.h).
NO_UPLOAD = {"sink": "none", "state": "disabled", "run_url": None, "project_url": None,
             "last_error": None}


def trackctl(agent, *args, check=True, timeout=60):
    r = subprocess.run([BIN["trackctl"], *map(str, args)], env=agent.env, capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"trackctl {args} → {r.returncode}: {r.stderr}"
    return r


def finished_run(agent, producer_args=None, steps=None):
    """Runs the example training (or a producer) to the end; returns its RUN."""
    if producer_args:
        finish_producer(agent.producer(*producer_args))
        run_id = producer_args[0]
    else:
        r = subprocess.run([BIN["train"]] + ([str(steps)] if steps else []), env=agent.env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        runs = agent.wait_for(lambda: agent.query("runs")["runs"], what="the run")
        run_id = runs[-1]["id"]
    agent.wait_for(lambda: agent.run_state(run_id) == "finished", what="finished")
    return agent.query("run", run=run_id)["run"]


# ---- the footer, as WANDB-UPSTREAM.md specifies it (no sampling below 49 rows) ----

def sparkline(values):
    n = len(values)
    pts = values if n <= 40 else [values[(i * (n - 1)) // 39] for i in range(40)]
    finite = [x for x in pts if math.isfinite(x)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    out = ""
    for x in pts:
        if not math.isfinite(x):
            out += " "
        elif hi == lo:
            out += GLYPHS[0]
        else:
            out += GLYPHS[round((x - lo) * 7 / (hi - lo))]
    return out


def summary_value(v):
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return repr(round(v, 5)) if math.isfinite(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    return v[:20] + "..." * (len(v) >= 20)


def block(title, rows):
    shown = rows[:10]
    width = max(len(k) for k, _ in shown)
    text = title + "\n" + "".join(f"{k:>{width}} {v}\n" for k, v in shown)
    if len(rows) > 10:
        text += f"+{len(rows) - 10} ...\n"
    return text


def expected_footer(run, rows):
    series = {}
    for row in rows:
        for k, v in row.items():
            if not k.startswith("_") and isinstance(v, (int, float)) and not isinstance(v, bool):
                series.setdefault(k, []).append(float(v))
    hist = [(k, sparkline(v)) for k, v in sorted(series.items()) if sparkline(v)]
    summ = [(k, summary_value(v)) for k, v in sorted(run["summary"].items())
            if not k.startswith("_") and isinstance(v, (int, float, str))]
    return "\n".join(b for b in (hist and block("Run history:", hist),
                                 summ and block("Run summary:", summ)) if b)


# ---- tests ----

def test_status_shows_the_agent_and_its_new_counters(agent):
    agent.start()
    s = json.loads(trackctl(agent, "status", "--json").stdout)
    assert s["agent"] == "up" and s["socket"] == agent.url
    assert s["state_dir"].rstrip("/") == agent.state_dir.rstrip("/")
    for key in ("clients_connected", "runs_active", "local_sink_backlog"):
        assert isinstance(s[key], int), key
    text = trackctl(agent, "status").stdout
    for label in ("agent:", "state dir:", "clients connected:", "runs active:",
                  "local sink backlog:"):
        assert label in text, label


def test_runs_lists_and_filters(agent):
    agent.start()
    run = finished_run(agent)
    table = trackctl(agent, "runs").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "PROJECT", "STATE", "STARTED", "ROWS"]
    assert len(table) == 2
    cells = table[1].split()
    assert cells[0] == run["id"] and cells[1] == run["display_name"]
    assert cells[3] == "finished" and cells[-1] == "10"
    assert run["project"] in cells[2]
    as_json = json.loads(trackctl(agent, "runs", "--json").stdout)
    assert as_json == agent.query("runs")
    assert trackctl(agent, "runs", "--project", run["project"]).stdout.count(run["id"]) == 1
    assert trackctl(agent, "runs", "--project", "elsewhere").stdout == "No runs.\n"
    assert trackctl(agent, "runs", "--state", "running").stdout == "No runs.\n"
    assert json.loads(trackctl(agent, "runs", "--state", "finished", "--json").stdout)["runs"]


def test_show_prints_the_wandb_footer(agent):
    agent.start()
    run = finished_run(agent)
    out = trackctl(agent, "show", run["id"]).stdout
    assert out.startswith(f"Run {run['id']} ({run['display_name']})\n")
    assert "  state:     finished (exit code 0)\n" in out
    assert "Config:\n" in out and "  epochs: 10\n" in out
    rows = agent.query("history", run=run["id"])["lines"]
    footer = expected_footer(run, rows)
    assert footer.startswith("Run history:\naccuracy ")
    assert "\n" + footer + "\n" in out, f"want:\n{footer}\ngot:\n{out}"
    # Then the System section (issue #15) and, once sampled, Environment.
    full, out = out, out.split("\nSystem:", 1)[0]
    assert full[len(out):].startswith("\nSystem:")
    assert out.endswith(f"Export its rows with: trackctl history {run['path']}\n")
    # By path too, and the agent's JSON as is with --json.
    assert trackctl(agent, "show", run["path"]).stdout == full
    # No wandb sink here: the answer says so beside the run.
    assert json.loads(trackctl(agent, "show", run["id"], "--json").stdout) == \
        {"run": run, "upload": NO_UPLOAD}


def test_show_samples_long_runs_into_40_points(agent):
    agent.start()
    run = finished_run(agent, steps=300)
    out = trackctl(agent, "show", run["id"]).stdout
    lines = out.split("Run history:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[0] for line in lines] == ["accuracy", "loss"]
    for line in lines:
        spark = line.strip().split(" ", 1)[1]
        assert len(spark) == 40 and set(spark) <= set(GLYPHS)
    # The sample is seeded by the run: the same run shows the same footer.
    assert trackctl(agent, "show", run["id"]).stdout == out


def test_history_csv_jsonl_json(agent):
    agent.start()
    run = finished_run(agent, producer_args=("hist", 2500))
    rows = []
    from_line = 0
    while True:  # the agent's own pages, for comparison
        page = agent.query("history", run="hist", from_line=from_line, max_lines=700)
        rows += page["lines"]
        if not page["lines"]:
            break
        from_line = page["next_line"]
    assert len(rows) == 2500

    jsonl = trackctl(agent, "history", "hist", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in jsonl] == rows

    table = list(csv.reader(io.StringIO(trackctl(agent, "history", "hist").stdout)))
    keys = []
    for row in rows:
        keys += [k for k in row if k != "_step" and k not in keys]
    assert table[0] == ["_step"] + keys
    assert len(table) == 2501
    for line, row in zip(table[1:], rows):
        assert int(line[0]) == row["_step"]
        got = dict(zip(keys, line[1:]))
        assert float(got["value"]) == row["value"] and got["tag"] == row["tag"]

    picked = trackctl(agent, "history", run["path"], "--keys", "value,tag").stdout.splitlines()
    assert picked[0] == "_step,value,tag"
    assert picked[11] == "10,5.0,r10"

    whole = json.loads(trackctl(agent, "history", "hist", "--json").stdout)
    assert whole["lines"] == rows and whole["total_lines"] == 2500
    assert whole["run"] == run["path"]


def start_tail(args, **kw):
    """trackctl tail, with SIGINT at its default action: tail keeps a SIGINT its
    parent ignored ignored (as a background job's), and a suite started as a
    background job of a non-interactive shell would hand that down, so the
    Ctrl-C tests would test the launch, not tail."""
    return subprocess.Popen(args, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                   signal.SIG_DFL), **kw)


def test_tail_follows_a_live_run_until_it_ends(agent):
    agent.start()
    # About 4 s of logging: long enough to still run when tail starts, even in a
    # slow (sanitizer) build.
    p = agent.producer("live", 2000, "--sleep-us", 20000, "--every", 10)
    agent.wait_for(lambda: agent.run_state("live") == "running", what="running")
    t = subprocess.Popen([BIN["trackctl"], "tail", "live", "-n", "3"], env=agent.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finish_producer(p)
    out, err = t.communicate(timeout=60)
    assert t.returncode == 0, err
    steps = [json.loads(line)["_step"] for line in out.splitlines()]
    assert steps, "tail printed nothing"
    assert steps == list(range(steps[0], 2000)), "rows missed or repeated"
    assert steps[0] < 2000 - 3  # it was following, not just printing the last rows


def test_tail_stops_cleanly_on_ctrl_c(agent):
    agent.start()
    p = agent.producer("endless", 1_000_000, "--sleep-us", 1000, "--every", 10)
    agent.wait_for(lambda: agent.run_state("endless") == "running", what="running")
    t = start_tail([BIN["trackctl"], "tail", "endless"], env=agent.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    t.send_signal(signal.SIGINT)
    out, err = t.communicate(timeout=30)
    assert t.returncode == 0, err
    assert out.splitlines(), "tail printed nothing in a second of logging"
    p.kill()
    p.wait()


def test_tail_stops_on_ctrl_c_however_far_behind(agent, tmp_path):
    """Issue #12 item 11: a tail far behind its run (a slow reader, a slow build)
    stops within a bounded number of rows after Ctrl-C, not after its backlog."""
    agent.start()
    hold = tmp_path / "hold"
    p = agent.producer("backlog", 20_000, "--hold-file", hold)
    agent.wait_for(lambda: agent.query("history", run="backlog", max_lines=1)
                   .get("total_lines") == 20_000, what="the backlog")
    t = start_tail([BIN["trackctl"], "tail", "backlog", "-n", "20000"], env=agent.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Once it prints, nobody reads: the pipe fills and tail blocks in the middle
    # of its backlog (or, on a slow build, is still printing it).
    first = t.stdout.readline()
    time.sleep(1.0)
    t.send_signal(signal.SIGINT)
    out, err = t.communicate(timeout=30)
    assert t.returncode == 0, err
    rows = [first] + out.splitlines()
    # What was already in the pipe (64 KiB) and stdio's buffer, then it stops.
    assert 0 < len(rows) < 2_000, len(rows)
    hold.touch()
    finish_producer(p)


def test_tail_stops_at_once_while_the_agent_is_slow_to_answer(agent, tmp_path):
    """Ctrl-C while tail waits for an answer the agent is slow to give (a
    checkpoint holding the store's lock: TRACKD_TEST_CHECKPOINT_HOLD_MS, a hook
    of test builds) ends tail at once, exit 0, not when the answer comes."""
    hold_ms = 30000
    agent.env["TRACKD_TEST_CHECKPOINT_HOLD_MS"] = str(hold_ms)
    agent.start()
    hold = tmp_path / "hold"
    p = agent.producer("slow", 100, "--hold-file", hold)
    agent.wait_for(lambda: "holding the sink's lock" in agent.log(), timeout=30,
                   what="a checkpoint holding the lock")
    t0 = time.monotonic()
    t = start_tail([BIN["trackctl"], "tail", "slow"], env=agent.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # tail is waiting for its first answer by now
    t.send_signal(signal.SIGINT)
    out, err = t.communicate(timeout=10)
    took = time.monotonic() - t0
    assert t.returncode == 0, err
    assert took < hold_ms / 1000, f"tail waited for the answer ({took:.1f} s)"
    hold.touch()
    agent.stop()  # the hold ends with the agent; the producer then finishes or spools
    p.kill()
    p.wait()


def test_rename(agent):
    agent.start()
    run = finished_run(agent, producer_args=("named", 3))
    r = trackctl(agent, "rename", run["path"], "my best run")
    assert r.stdout == f"Renamed {run['path']} to my best run\n"
    agent.wait_for(lambda: agent.query("run", run="named")["run"]["display_name"] == "my best run",
                   what="renamed")
    assert trackctl(agent, "show", "named").stdout.startswith("Run named (my best run)\n")


def test_update_name_tags_notes_of_finished_and_running_runs(agent, tmp_path):
    agent.start()
    done = finished_run(agent, producer_args=("upd-done", 3))
    hold = tmp_path / "hold"
    live = agent.producer("upd-live", 3, "--hold-file", hold)
    agent.wait_for(lambda: agent.run_state("upd-live") == "running", what="running")
    try:
        for run in (done["path"], "upd-live"):
            r = trackctl(agent, "update", run, "--name", "better", "--tags", "a,b c",
                         "--notes", "smaller lr")
            assert r.stdout == f"Updated {run}\n", r.stdout
        for rid in ("upd-done", "upd-live"):
            info = agent.query("run", run=rid)["run"]
            assert (info["display_name"], info["tags"], info["notes"]) == (
                "better", ["a", "b c"], "smaller lr"), info
        show = trackctl(agent, "show", "upd-done").stdout
        assert "Run upd-done (better)\n" in show and "smaller lr" in show and "a, b c" in show
        # The local store's metadata.json has them too (the finished run's as well).
        for rid in ("upd-done", "upd-live"):
            path = f"{agent.query('run', run=rid)['run']['dir']}/metadata.json"
            meta = agent.wait_for(lambda: (lambda m: m if m["notes"] == "smaller lr" else None)(
                json.load(open(path))), what=f"{rid}'s metadata.json")
            assert (meta["display_name"], meta["tags"]) == ("better", ["a", "b c"]), meta
        # Only what is given changes; --tags "" and --notes "" clear.
        trackctl(agent, "update", "upd-live", "--tags", "")
        info = agent.query("run", run="upd-live")["run"]
        assert (info["display_name"], info.get("tags") or [], info["notes"]) == (
            "better", [], "smaller lr"), info
        trackctl(agent, "update", "upd-live", "--notes", "", "--tags", "x")
        info = agent.query("run", run="upd-live")["run"]
        assert (info["tags"], info.get("notes") or "") == (["x"], ""), info
    finally:
        hold.write_text("")
        finish_producer(live)
    # The live run's own end does not undo the update, nor does a restart (the
    # updates are records in the log; the run store is rebuilt from it).
    agent.wait_for(lambda: agent.run_state("upd-live") == "finished", what="finished")
    agent.kill9()
    agent.start()
    for rid, tags, notes in (("upd-done", ["a", "b c"], "smaller lr"), ("upd-live", ["x"], "")):
        info = agent.query("run", run=rid)["run"]
        assert (info["display_name"], info.get("tags") or [], info.get("notes") or "") == (
            "better", tags, notes), info
    # One RunRename record per update, in the log.
    updates = [{k: r[k] for k in ("display_name", "tags", "notes") if k in r}
               for r in agent.dump() if r["run_id"] == "upd-live" and r["type"] == "rename"]
    assert updates == [{"display_name": "better", "tags": ["a", "b c"], "notes": "smaller lr"},
                       {"tags": []}, {"tags": ["x"], "notes": ""}], updates


def test_update_limits_and_usage(tmp_path):
    from conftest import Agent, require_bins
    require_bins()
    a = Agent(tmp_path, config="limits:\n  max_string_bytes: 64\n").start()
    try:
        finished_run(a, producer_args=("lim", 2))

        def update(*args):
            return trackctl(a, "update", "lim", *args, check=False)

        for n in (63, 64, 65):
            r = update("--tags", ",".join(f"t{i}" for i in range(n)))
            if n <= 64:
                assert r.returncode == 0, r.stderr
                assert len(a.query("run", run="lim")["run"]["tags"]) == n
            else:
                assert r.returncode == 1 and "65 tags, limit 64" in r.stderr, r.stderr
        for n in (127, 128, 129):
            r = update("--tags", "x" * n)
            if n <= 128:
                assert r.returncode == 0, r.stderr
            else:
                assert r.returncode == 1 and "129 bytes, limit 128" in r.stderr, r.stderr
                assert "tags" in r.stderr
        for n in (63, 64, 65):
            r = update("--notes", "n" * n)
            if n <= 64:
                assert r.returncode == 0, r.stderr
                assert a.query("run", run="lim")["run"]["notes"] == "n" * n
            else:
                assert r.returncode == 1 and "65 bytes, limit 64" in r.stderr, r.stderr
                assert "notes" in r.stderr
        # A refused update changed nothing.
        info = a.query("run", run="lim")["run"]
        assert info["tags"] == ["x" * 128] and info["notes"] == "n" * 64
        bad = a.query("rename", run="lim", tags=["ok", b"bad\xff"])
        assert "UTF-8" in bad["error"]["message"], bad
        for args in ((), ("--name", ""), ("--bogus",)):
            r = update(*args)
            assert r.returncode == 2 and "Usage:" in r.stderr, (args, r.stderr)
        r = trackctl(a, "update", "nope", "--notes", "x", check=False)
        assert r.returncode == 1 and "run nope not found" in r.stderr
    finally:
        a.stop()


def test_errors_and_usage(agent):
    agent.start()
    for args in (("show", "nope"), ("history", "nope"), ("tail", "nope"),
                 ("rename", "nope", "x")):
        r = trackctl(agent, *args, check=False)
        assert r.returncode == 1 and "run nope not found" in r.stderr, (args, r.stderr)
    for args in ((), ("frob",), ("show",), ("runs", "--bogus"), ("history", "x", "--format",
                                                                "xml"), ("rename", "x")):
        r = trackctl(agent, *args, check=False)
        assert r.returncode == 2 and "Usage:" in r.stderr, (args, r.stderr)
    assert agent.stop() == 0
    for args in (("status",), ("runs",), ("show", "x"), ("tail", "x")):
        r = trackctl(agent, *args, check=False)
        assert r.returncode == 1, args
        assert f"no agent answers at {agent.url}" in r.stderr and "Start one with" in r.stderr


# ---- issue #12 item 10: the rough edges ---------------------------------------

COMMANDS = ("status", "runs", "show", "history", "tail", "rename", "update", "retry", "sync",
            "spool", "dump")


def test_help_of_every_command_and_version(agent):
    for cmd in COMMANDS:
        for args in ((cmd, "--help"), (cmd, "-h"), (cmd, "x", "--help")):
            if cmd == "spool":
                args = ("spool", "flush") + args[1:]
            r = trackctl(agent, *args, check=False)
            assert r.returncode == 0, (args, r.stderr)
            assert r.stdout.startswith(f"Usage:\n  trackctl {cmd}"), (args, r.stdout)
            assert "  trackctl " not in r.stdout.split("\n", 2)[2], "one command's usage only"
    r = trackctl(agent, "--version")
    assert r.stdout.startswith("trackctl ") and r.stdout.split()[1][0].isdigit(), r.stdout
    assert "trackctl --version" in trackctl(agent, "--help").stdout


def test_spool_flush_refuses_a_missing_dir(agent, tmp_path):
    r = trackctl(agent, "spool", "flush", tmp_path / "nope", check=False)
    assert r.returncode == 1 and "No such file or directory" in r.stderr, r
    assert "delivered" not in r.stdout
    r = trackctl(agent, "spool", "flush", "--bogus", check=False)
    assert r.returncode == 2, r


def test_status_json_without_an_agent_is_json(agent):
    r = trackctl(agent, "status", "--json", check=False)
    assert r.returncode == 1
    s = json.loads(r.stdout)
    assert s["agent"] == "down" and s["socket"] == agent.url and s["error"], s
    assert "no agent answers" in r.stderr


def test_status_json_names_budget_refusals(agent):
    agent.start()
    s = json.loads(trackctl(agent, "status", "--json").stdout)
    assert s["budget_refusals"] == 0 and isinstance(s["log_max_bytes"], int), s
    assert "appends refused" in trackctl(agent, "status").stdout


def test_rename_is_in_runs_at_once(agent):
    agent.start()
    run = finished_run(agent, producer_args=("renamed", 3))
    for i in range(3):
        trackctl(agent, "rename", run["path"], f"name {i}")
        (r,) = json.loads(trackctl(agent, "runs", "--json").stdout)["runs"]
        assert r["display_name"] == f"name {i}", r


def test_dump_reads_the_log_of_the_agent_it_talks_to(agent):
    agent.start()
    finished_run(agent, producer_args=("dumped", 3))
    env = dict(agent.env, HOME="/nonexistent", XDG_STATE_HOME="/nonexistent")
    r = subprocess.run([BIN["trackctl"], "dump", "--run", "dumped", "--history"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3
    agent.stop()
    r = subprocess.run([BIN["trackctl"], "dump"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "--state-dir" in r.stderr, r
