"""`trackctl import` end to end (issue #18 item 4, R21): W&B transaction files
written by tests/e2e/wandb_txlog_writer.py (a writer apart from the C reader),
imported through a real agent, read back with `trackctl show/history --json`,
then uploaded by `trackctl sync` to the fake W&B backend.

Checked: every field of the imported run (identity, config, tags, notes,
group, job type, rows with their own _step/_runtime/_timestamp, summary,
console, system metrics, final state); a second import adds nothing; a file
without an exit record gives a crashed run and says so; damaged files (cut at
every chunk boundary and inside chunks, bad CRC, zeroed block, wrong header)
import exactly the intact records and report the damage by file offset."""
import itertools
import json
import os
import re
import subprocess

import pytest

from conftest import BIN, ITERATIONS, UNDER_TSAN, Agent, python_client_env, require_bins
from test_wandb import (PROJECT, fake_server, fw, local_lines, make_agent,  # noqa: F401
                        wandb_yaml)
from wandb_txlog_writer import (BLOCK, TxlogWriter, config_record, exit_record, header_record,
                                history_record, metric_record, output_raw_record, run_record,
                                stats_record, summary_record, telemetry_record)

START = 1700000000.25
CONFIG = {"lr": 0.01, "layers": [64, 32], "opt": {"name": "adam", "beta": 0.9}, "flag": None}


def build_run(run_id, rows=30, pad=0, exit_code=0, with_exit=True, entity="wbteam",
              project=PROJECT):
    """A W&B-shaped log: header, run, telemetry, metric, then per step a history
    record and its summary, console lines (one split over two records) and
    system samples; a late config update; the exit. Returns (writer, kinds,
    expected rows), kinds[i] naming record i."""
    w = TxlogWriter()
    num = itertools.count(1)
    kinds = []

    def add(kind, payload):
        kinds.append(kind)
        w.add(payload)

    add(("header",), header_record(next(num)))
    add(("run",), run_record(next(num), run_id, entity=entity, project=project,
                             display_name=f"imported-{run_id}", notes="from W&B", group="grp",
                             job_type="train", tags=("a", "b"), config=CONFIG,
                             start_time=START, host="gpu1"))
    add(("telemetry",), telemetry_record(next(num)))
    add(("metric",), metric_record(next(num), "loss", "min"))
    rows_expected = []
    t = START
    for step in range(rows):
        t = START + 0.5 + step * 0.75
        row = {"_step": step, "_runtime": t - START, "_timestamp": t, "loss": 1.0 / (step + 1),
               "acc": step / max(rows, 1), "ok": step % 2 == 0}
        if pad:
            row["pad"] = "x" * pad
        add(("history", step), history_record(next(num), step, row,
                                              nested=[(["nested", "deep"], step * 2)]))
        expected = {k: v for k, v in row.items()}
        expected["nested"] = {"deep": step * 2}
        rows_expected.append(expected)
        add(("summary", step), summary_record(next(num), {"loss": row["loss"], "acc": row["acc"],
                                                          "_step": step}))
        if step % 5 == 0:
            add(("console", step), output_raw_record(next(num), f"epoch {step}\n", t))
            add(("console-part", step), output_raw_record(next(num), "part", t))
            add(("console-rest", step), output_raw_record(next(num), "ial line\n", t))
            add(("stderr", step), output_raw_record(next(num), f"warn {step}\n", t,
                                                    stderr=True))
        if step % 10 == 0:
            add(("stats", step), stats_record(next(num), t, {"cpu": 12.5 + step,
                                                             "memory_percent": 40.0,
                                                             "gpu.0.temp": 60}))
    add(("config",), config_record(next(num), {"extra": "late"}))
    if with_exit:
        add(("exit",), exit_record(next(num), exit_code, int(t - START) + 1))
    return w, kinds, rows_expected


def write_run_dir(root, run_id, data, offline=True):
    d = root / "wandb" / f"{'offline-run' if offline else 'run'}-20231114_221320-{run_id}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "files").mkdir(exist_ok=True)
    path = d / f"run-{run_id}.wandb"
    path.write_bytes(data)
    return path


def trackctl(agent, *args, timeout=120):
    return subprocess.run([BIN["trackctl"], *map(str, args)], env=agent.env,
                          capture_output=True, text=True, timeout=timeout)


def show(agent, run_id):
    r = trackctl(agent, "show", run_id, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["run"]


def history(agent, run_id, *extra):
    r = trackctl(agent, "history", run_id, "--format", "jsonl", *extra)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def console_texts(agent, run_id):
    """output.log lines without their timestamp: (stderr?, text)."""
    out = []
    for line in local_lines(agent, run_id, "output.log"):
        err = line.startswith("ERROR ")
        rest = line[6:] if err else line
        out.append((err, rest.split(" ", 1)[1] if " " in rest else ""))
    return out


@pytest.fixture
def agent(tmp_path):
    require_bins()
    a = Agent(tmp_path, config="system_metrics:\n  enabled: false\n").start()
    yield a
    a.stop()


def damage_offsets(stderr):
    return [int(m) for m in re.findall(r"damaged at offset (\d+)", stderr)]


# ---- every field ------------------------------------------------------------------------

def test_import_every_field_then_again_adds_nothing(agent, tmp_path):
    w, kinds, rows = build_run("imp00001", rows=40, pad=1500)  # ~80 KiB: records over blocks
    assert len(w.bytes()) > 2 * BLOCK
    assert any(len(chunks) > 1 for chunks in w.records)
    write_run_dir(tmp_path / "src", "imp00001", w.bytes())
    r = trackctl(agent, "import", tmp_path / "src" / "wandb")
    assert r.returncode == 0, r.stderr
    assert "imported" in r.stdout and "run imp00001" in r.stdout, r.stdout
    assert "damaged" not in r.stderr, r.stderr

    run = show(agent, "imp00001")
    assert run["id"] == "imp00001"
    assert run["project"] == PROJECT and run["entity"] == "wbteam"
    assert run["display_name"] == "imported-imp00001"
    assert run["notes"] == "from W&B" and run["tags"] == ["a", "b"]
    assert run["group"] == "grp" and run["job_type"] == "train" and run["host"] == "gpu1"
    assert run["state"] == "finished" and run["exit_code"] == 0
    assert run["mode"] == "offline" and run["imported"] is True
    assert run["start_time"] == START
    assert run["config"] == dict(CONFIG, extra="late")
    assert run["history_lines"] == 40
    summary = run["summary"]
    assert summary["loss"] == rows[-1]["loss"] and summary["acc"] == rows[-1]["acc"]
    assert summary["_step"] == 39

    got = history(agent, "imp00001")
    assert got == rows  # _step, _runtime, _timestamp as the file has them, values exact

    console = console_texts(agent, "imp00001")
    want = []
    for step in range(0, 40, 5):
        want += [(False, f"epoch {step}"), (False, "partial line"), (True, f"warn {step}")]
    assert sorted(console) == sorted(want) and len(console) == len(want)

    events = history(agent, "imp00001", "--stream", "events")
    assert [e["system.cpu"] for e in events] == [12.5 + s for s in range(0, 40, 10)]
    assert [e["_timestamp"] for e in events] == [START + 0.5 + s * 0.75 for s in range(0, 40, 10)]
    assert all(e["system.gpu.0.temp"] == 60 and e["system.memory_percent"] == 40 for e in events)

    # The Python Api sees the same run.
    code = ("import json, trackd; r = trackd.Api().run('imp00001'); "
            "print(json.dumps([r.imported, r.state, r.name, r.tags, r.config, r.mode, "
            "r.history()]))")
    r = subprocess.run(["/usr/bin/python3", "-c", code], env=python_client_env(agent.env),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    imported, state, name, tags, config, mode, api_rows = json.loads(r.stdout)
    assert (imported, state, name, tags, mode) == (True, "finished", "imported-imp00001",
                                                   ["a", "b"], "offline")
    assert config == dict(CONFIG, extra="late")
    assert api_rows == rows

    # Again: skipped, nothing appended.
    before = agent.status()
    r = trackctl(agent, "import", tmp_path / "src" / "wandb")
    assert r.returncode == 0, r.stderr
    assert "already imported" in r.stdout, r.stdout
    after = agent.status()
    assert after["records_appended"] == before["records_appended"]
    assert history(agent, "imp00001") == rows


def test_without_exit_record_the_run_is_crashed(agent, tmp_path):
    w, _, rows = build_run("imp00002", rows=5, with_exit=False)
    path = write_run_dir(tmp_path, "imp00002", w.bytes())
    r = trackctl(agent, "import", path)
    assert r.returncode == 0, r.stderr
    assert "no exit record" in r.stderr and "crashed" in r.stderr, r.stderr
    run = show(agent, "imp00002")
    assert run["state"] == "crashed"
    assert run["end_time"] == rows[-1]["_timestamp"]
    assert history(agent, "imp00002") == rows


def test_failed_run_keeps_its_exit_code(agent, tmp_path):
    w, _, _ = build_run("imp00003", rows=3, exit_code=7)
    r = trackctl(agent, "import", write_run_dir(tmp_path, "imp00003", w.bytes()).parent)
    assert r.returncode == 0, r.stderr
    run = show(agent, "imp00003")
    assert run["state"] == "failed" and run["exit_code"] == 7


def test_an_id_of_another_run_is_not_imported_over(agent, tmp_path):
    p = agent.producer("imp00004", 3)
    p.wait(timeout=60)
    agent.wait_for(lambda: show(agent, "imp00004")["state"] != "running", what="producer end")
    w, _, _ = build_run("imp00004", rows=3)
    r = trackctl(agent, "import", write_run_dir(tmp_path, "imp00004", w.bytes()))
    assert r.returncode == 1
    assert "exists already" in r.stderr, r.stderr
    assert show(agent, "imp00004")["imported"] is None


# ---- damage (R21) -------------------------------------------------------------------------

def rows_of(kinds, survivors, rows):
    return [rows[kinds[i][1]] for i in survivors if kinds[i][0] == "history"]


def check_damaged(agent, tmp_path, run_id, data, w, kinds, rows, lost, expect_damage=True):
    """Imports `data` (a damaged copy of w's file) and checks that exactly the
    records outside the `lost` byte ranges arrived."""
    path = write_run_dir(tmp_path / run_id, run_id, data)
    r = trackctl(agent, "import", path)
    survivors = w.surviving(lost)
    assert r.returncode == 0, (run_id, r.stderr)
    offsets = damage_offsets(r.stderr)
    if expect_damage:
        assert offsets, (run_id, r.stderr)
        first_lost = min(off for i, chunks in enumerate(w.records) if i not in survivors
                         for off, _ in chunks[:1])
        assert all(first_lost <= o <= max(e for _, e in lost) for o in offsets), \
            (run_id, offsets, first_lost, lost)
    else:
        assert not offsets, (run_id, r.stderr)
    assert history(agent, run_id) == rows_of(kinds, survivors, rows), run_id
    exited = any(kinds[i][0] == "exit" for i in survivors)
    assert show(agent, run_id)["state"] == ("finished" if exited else "crashed"), run_id


def test_cut_at_every_chunk_boundary_and_inside_chunks(agent, tmp_path):
    w, kinds, rows = build_run("cutbase1", rows=12, pad=6000)
    data = w.bytes()
    run_end = w.records[1][-1][0] + w.records[1][-1][1]
    cuts = []
    for off in w.chunk_offsets():
        if off >= run_end:
            cuts.append((off, False))
    for chunks in w.records[2:]:
        for off, n in chunks:
            cuts.append((off + 3, True))          # inside the chunk header
            cuts.append((off + n // 2 + 4, True))  # inside the payload
    assert len(cuts) > 40
    # Each cut is an import and two queries: under TSan (minutes), every
    # fifth cut and the last, unless TRACKD_TEST_ITERATIONS asks for all.
    picked = [i for i in range(len(cuts))
              if not UNDER_TSAN or ITERATIONS or i % 5 == 0 or i == len(cuts) - 1]
    for i, (cut, inside) in ((i, cuts[i]) for i in picked):
        run_id = f"cut{i:05d}"
        # The file is the same but for the run id: rebuilt with this id.
        wi, ki, ri = build_run(run_id, rows=12, pad=6000)
        assert len(wi.bytes()) == len(data)
        # A cut at a chunk boundary inside a multi-chunk record is damage too.
        torn = inside or any(off < cut < off + n or (cut == off and j > 0)
                             for chunks in wi.records for j, (off, n) in enumerate(chunks))
        check_damaged(agent, tmp_path, run_id, wi.bytes()[:cut], wi, ki, ri,
                      [(cut, len(data) + 1)], expect_damage=torn)


def test_cut_inside_the_run_record_imports_nothing(agent, tmp_path):
    w, _, _ = build_run("cutrun01", rows=3)
    path = write_run_dir(tmp_path, "cutrun01", w.bytes()[:w.records[1][0][0] + 20])
    r = trackctl(agent, "import", path)
    assert r.returncode == 1
    assert "no run in it" in r.stderr and "damaged at offset" in r.stderr, r.stderr
    assert trackctl(agent, "show", "cutrun01").returncode == 1


@pytest.mark.parametrize("which", ["first-block", "middle-block"])
def test_bad_crc_skips_the_rest_of_its_block(agent, tmp_path, which):
    run_id = f"crc{which[:3]}01"
    w, kinds, rows = build_run(run_id, rows=12, pad=6000)
    data = bytearray(w.bytes())
    # A chunk in block 0 after the run record, or one starting in block 1.
    if which == "first-block":
        off = w.records[5][0][0]
    else:
        off = min(o for o in w.chunk_offsets() if o >= BLOCK + 100)
    data[off + 9] ^= 0x55  # a payload byte: the CRC no longer matches
    block_end = (off // BLOCK + 1) * BLOCK
    check_damaged(agent, tmp_path, run_id, bytes(data), w, kinds, rows, [(off, block_end)])


def test_zeroed_block(agent, tmp_path):
    w, kinds, rows = build_run("zeroed01", rows=12, pad=6000)
    data = bytearray(w.bytes())
    data[BLOCK:2 * BLOCK] = bytes(BLOCK)
    check_damaged(agent, tmp_path, "zeroed01", bytes(data), w, kinds, rows,
                  [(BLOCK, 2 * BLOCK)])


@pytest.mark.parametrize("header", [b"XW&B\xe1\xbe\x00", b":W&B\x00\x00\x00",
                                    b":W&B\xe1\xbe\x01", b":W&"])
def test_wrong_header_imports_nothing(agent, tmp_path, header):
    w, _, _ = build_run("badhead1", rows=3)
    data = header + w.bytes()[7:] if len(header) == 7 else header
    r = trackctl(agent, "import", write_run_dir(tmp_path, "badhead1", data))
    assert r.returncode == 1
    assert "nothing imported" in r.stderr, r.stderr
    assert trackctl(agent, "show", "badhead1").returncode == 1


# ---- upload -----------------------------------------------------------------------------

def test_imported_run_uploads_with_trackctl_sync(make_agent, fw, tmp_path):
    agent = make_agent(extra="system_metrics:\n  enabled: false\n")
    w, _, rows = build_run("impsync1", rows=25, pad=200, entity=fw.entity)
    r = trackctl(agent, "import", write_run_dir(tmp_path, "impsync1", w.bytes()))
    assert r.returncode == 0, r.stderr
    assert fw.run_or_none(fw.entity, PROJECT, "impsync1", True) is None  # offline: not sent
    r = trackctl(agent, "sync", "impsync1")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "synced" in r.stdout
    up = fw.run_or_none(fw.entity, PROJECT, "impsync1", True)
    assert up is not None
    assert [json.loads(line) for line in up["history"]] == rows
    assert up["history"] == local_lines(agent, "impsync1", "history.jsonl")
    assert up["console"] == local_lines(agent, "impsync1", "output.log")
    assert up["complete"] is True and up["exitcode"] == 0
    # The file's system-metrics samples go up too, as wandb-events.jsonl.
    local_events = local_lines(agent, "impsync1", "events.jsonl")
    assert local_events and up["events"] == local_events


def test_readme_import_block_runs_as_written(make_agent, fw, tmp_path):
    """The README's "Importing W&B offline runs" commands, line for line, with
    a project directory at ~/project holding two W&B runs."""
    agent = make_agent(extra="system_metrics:\n  enabled: false\n")
    home = tmp_path / "home"
    for run_id in ("readme01", "readme02"):
        w, _, _ = build_run(run_id, rows=5, entity=fw.entity)
        write_run_dir(home / "project", run_id, w.bytes())
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = open(os.path.join(top, "README.md")).read()
    start = text.index("\n### Importing W&B offline runs\n")
    body = text[start:text.find("\n## ", start + 1)]
    (sh,) = [b for lang, b in re.findall(r"```(\w*)\n(.*?)```", body, re.S) if lang == "sh"]
    env = dict(agent.env, HOME=str(home))
    env["PATH"] = os.path.dirname(BIN["trackctl"]) + ":" + env.get("PATH", "/usr/bin:/bin")
    r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + sh], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (sh, r.stdout, r.stderr)
    for run_id in ("readme01", "readme02"):
        assert f"run {run_id}" in r.stdout, r.stdout
        up = fw.run_or_none(fw.entity, PROJECT, run_id, True)
        assert up is not None and len(up["history"]) == 5 and up["complete"] is True


def test_progress_on_a_terminal(agent, tmp_path):
    """On a terminal: sync's updating line (carriage returns) with files as
    runs, rows and bytes read; each file's outcome on stdout."""
    import pty
    import select
    for i in range(3):
        w, _, _ = build_run(f"tty0000{i}", rows=300, pad=2000)
        write_run_dir(tmp_path / "src", f"tty0000{i}", w.bytes())
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN["trackctl"], "import", str(tmp_path / "src" / "wandb")],
                         env=agent.env, stdout=subprocess.PIPE, stderr=slave, text=True)
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
    out, _ = p.communicate(timeout=120)
    os.close(master)
    assert p.returncode == 0, out
    text = tty.decode(errors="replace")
    assert text.count("\r") >= 3, text
    assert "/3 runs" in text and "rows" in text and "MiB" in text, text
    assert out.count("imported ") == 3 and "import: 3 imported" in out, out
    for i in range(3):
        assert show(agent, f"tty0000{i}")["history_lines"] == 300


def test_a_run_imported_from_less_of_the_file_is_reported(agent, tmp_path):
    """An earlier import of part of the file (cut short, or stopped halfway)
    holds fewer rows: the full file is reported, nothing is added."""
    w, _, rows = build_run("imppart1", rows=20)
    full = w.bytes()
    r = trackctl(agent, "import", write_run_dir(tmp_path / "a", "imppart1",
                                                full[:w.records[30][0][0]]))
    assert r.returncode == 0, r.stderr
    part = len(history(agent, "imppart1"))
    assert 0 < part < 20
    r = trackctl(agent, "import", write_run_dir(tmp_path / "b", "imppart1", full))
    assert r.returncode == 1
    assert f"imported before with {part} rows, the file has 20" in r.stderr, r.stderr
    assert len(history(agent, "imppart1")) == part


def test_a_record_the_agent_refuses_is_reported_and_skipped(agent, tmp_path):
    """A row with a key over the agent's limit (256 bytes): its batch is sent
    again record by record; that record is reported by offset, the rest
    arrive. The project directory itself is a PATH too (its wandb/)."""
    w, kinds, rows = build_run("imprefus", rows=6)
    bad = w.add(history_record(999, 6, {"_step": 6, "_runtime": 9.0,
                                         "_timestamp": START + 9, "k" * 300: 1}))
    w.add(history_record(1000, 7, {"_step": 7, "_runtime": 10.0, "_timestamp": START + 10,
                                   "loss": 0.5}))
    write_run_dir(tmp_path / "proj", "imprefus", w.bytes())
    r = trackctl(agent, "import", tmp_path / "proj")
    assert r.returncode == 0, r.stderr
    assert f"the record at offset {w.records[bad][0][0]} was refused by the agent" in r.stderr, \
        r.stderr
    got = history(agent, "imprefus")
    assert got[:6] == rows and len(got) == 7
    assert got[6] == {"_step": 7, "_runtime": 10.0, "_timestamp": START + 10, "loss": 0.5}
    assert show(agent, "imprefus")["state"] == "finished"


def test_the_agents_sampler_leaves_an_imported_run_alone(tmp_path):
    """With system metrics on, an imported run's samples are the file's only:
    the run is live while the import replays it, but it is not this
    machine's."""
    require_bins()
    a = Agent(tmp_path, config="system_metrics:\n  interval: 1s\n").start()
    try:
        w, _, _ = build_run("impsamp1", rows=40, pad=3000)
        r = trackctl(a, "import", write_run_dir(tmp_path, "impsamp1", w.bytes()))
        assert r.returncode == 0, r.stderr
        # A live run of the same agent is sampled meanwhile: the sampler runs.
        p = a.producer("live0001", 50, "--sleep-us", 40000)
        p.wait(timeout=60)
        a.wait_for(lambda: history(a, "live0001", "--stream", "events"), what="a sample")
        events = history(a, "impsamp1", "--stream", "events")
        assert [e["system.cpu"] for e in events] == [12.5 + s for s in range(0, 40, 10)]
    finally:
        a.stop()
