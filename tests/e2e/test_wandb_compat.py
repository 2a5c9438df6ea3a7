"""Existing W&B scripts on trackd (issue #18, part 1), end to end: real agents,
real processes, scripts run unchanged under `trackctl run` (which puts a
`wandb` shim first on their PYTHONPATH) or with `import trackd.wandb as wandb`.

- the W&B docs' "Runs overview" snippets and a quickstart-style script (config,
  log, summary, define_metric, Api().runs()) give the same runs as the
  equivalent `import trackd` script;
- W&B's environment variables, explicit arguments winning; the C library reads
  them too;
- unknown parameters warn once; unsupported features say which;
- wandb.Api() filters, run(), history, scan_history, update;
- a real `wandb` is never shadowed by `import trackd`;
- the init lines: W&B's "Syncing run" and URLs with a wandb sink, the local
  store otherwise; WANDB_SILENT silences them."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import BIN, python_client_env, require_bins
from test_wandb import fake_server, fw, make_agent  # noqa: F401 (fixtures)

# The W&B docs' "Runs overview" snippets, as written there (the entity and
# project the docs use).
OVERVIEW_LOG = """\
import wandb

entity = "nico"  # Replace with your W&B entity
project = "awesome-project"

with wandb.init(entity=entity, project=project) as run:
    run.log({"accuracy": 0.9, "loss": 0.1})
"""

OVERVIEW_LOOP = """\
import wandb
import random

entity = "nico"
project = "awesome-project"

config = {
    "epochs": 10,
    "learning_rate": 0.01,
}

with wandb.init(entity=entity, project=project, config=config) as run:
    offset = random.random() / 5
    print(f"lr: {config['learning_rate']}")

    # Simulate a training run
    for epoch in range(2, config["epochs"]):
        acc = 1 - 2**-epoch - random.random() / epoch - offset
        loss = 2**-epoch + random.random() / epoch + offset
        print(f"epoch={epoch}, accuracy={acc}, loss={loss}")
        run.log({"accuracy": acc, "loss": loss})
"""

# A quickstart-style script using the module-level surface, and the same run
# written against trackd's own API.
QUICKSTART = """\
import json
import wandb

wandb.init(project="quickstart", config={"learning_rate": 0.02, "epochs": 5, "arch": "cnn"},
           tags=["baseline"], notes="first try", group="g1", job_type="train")
wandb.define_metric("loss", summary="min")
wandb.config.update({"batch_size": 32})
wandb.config.dropout = 0.1
for epoch in range(wandb.config.epochs):
    loss = 1.0 / (epoch + 1) + (0.5 if epoch == 3 else 0.0)
    wandb.log({"epoch": epoch, "loss": loss, "acc": 1 - loss / 2})
wandb.summary["best_acc"] = 0.9
wandb.summary.update({"final": "done"})
run_id = wandb.run.id
wandb.finish()
assert wandb.run is None
runs = wandb.Api().runs("quickstart", filters={"config.arch": "cnn", "state": "finished"})
print(json.dumps({"id": run_id, "listed": [r.id for r in runs]}))
"""

QUICKSTART_TRACKD = """\
import json
import trackd

run = trackd.init(project="quickstart-td",
                  config={"learning_rate": 0.02, "epochs": 5, "arch": "cnn"},
                  tags=["baseline"], notes="first try", group="g1", job_type="train")
run.define_metric("loss", summary="min")
run.config.update({"batch_size": 32})
run.config.dropout = 0.1
for epoch in range(run.config["epochs"]):
    loss = 1.0 / (epoch + 1) + (0.5 if epoch == 3 else 0.0)
    run.log({"epoch": epoch, "loss": loss, "acc": 1 - loss / 2})
run.summary["best_acc"] = 0.9
run.summary.update({"final": "done"})
run.finish()
print(json.dumps({"id": run.id}))
"""

VOLATILE = ("_runtime", "_timestamp")


def client_env(agent, tmp_path, **extra):
    env = python_client_env(agent.env)
    env.update(XDG_RUNTIME_DIR=str(tmp_path / "rt"), XDG_STATE_HOME=str(tmp_path / "xdg"))
    for k in list(env):
        if k.startswith("WANDB_"):
            del env[k]
    env.update(extra)
    os.makedirs(tmp_path / "rt", mode=0o700, exist_ok=True)
    return env


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def run_wandb(agent, tmp_path, body, name="train.py", check=True, **extra):
    """`trackctl run -- python3 train.py`, the script as given."""
    path = script(tmp_path, name, body)
    r = subprocess.run([BIN["trackctl"], "run", "--", sys.executable, str(path)],
                       env=client_env(agent, tmp_path, **extra), cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, (r.stdout, r.stderr)
    return r


def run_python(agent, tmp_path, body, name="plain.py", check=True, **extra):
    path = script(tmp_path, name, body)
    r = subprocess.run([sys.executable, str(path)], env=client_env(agent, tmp_path, **extra),
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, (r.stdout, r.stderr)
    return r


def stored(agent, path, until_done=True):
    """The run as the agent answers it, once it has ended."""
    def get():
        r = agent.query("run", run=path)
        run = r.get("run")
        if run and (not until_done or run["state"] != "running"):
            return run
        return None
    return agent.wait_for(get, what=f"run {path}")


def history(agent, path):
    r = agent.query("history", run=path)
    return [json.loads(line) if isinstance(line, str) else line for line in r["lines"]]


def strip(d):
    return {k: v for k, v in d.items() if k not in VOLATILE}


@pytest.fixture
def store(agent):
    require_bins()
    agent.start()
    return agent


# ---- the docs' snippets and the quickstart, unchanged ------------------------------

def test_runs_overview_snippets_run_unchanged(store, tmp_path):
    first = run_wandb(store, tmp_path, OVERVIEW_LOG, name="basic.py")
    assert "Traceback" not in first.stderr, first.stderr
    loop = run_wandb(store, tmp_path, OVERVIEW_LOOP, name="loop.py")
    assert "lr: 0.01" in loop.stdout
    runs = store.query("runs", project="nico/awesome-project")["runs"]
    assert len(runs) == 2, runs
    by_rows = sorted(runs, key=lambda r: r["history_lines"])
    basic, trained = (stored(store, r["path"]) for r in by_rows)
    assert basic["state"] == trained["state"] == "finished"
    assert basic["entity"] == "nico" and basic["project"] == "awesome-project"
    assert [strip(r) for r in history(store, basic["path"])] == \
        [{"_step": 0, "accuracy": 0.9, "loss": 0.1}]
    assert basic["summary"]["accuracy"] == 0.9 and basic["summary"]["loss"] == 0.1
    assert trained["config"] == {"epochs": 10, "learning_rate": 0.01}
    rows = history(store, trained["path"])
    assert [r["_step"] for r in rows] == list(range(8))
    assert all(set(strip(r)) == {"_step", "accuracy", "loss"} for r in rows)
    # The summary is the last row's, as W&B keeps it.
    assert trained["summary"]["loss"] == rows[-1]["loss"]
    # W&B's output lines around the footer.
    assert f"Tracking run {basic['display_name']}" in first.stderr, first.stderr
    assert "wandb: Find logs at: " + basic["dir"] in first.stderr, first.stderr
    assert "Run summary:" in first.stderr


def test_quickstart_under_trackctl_run_matches_the_trackd_script(store, tmp_path):
    w = run_wandb(store, tmp_path, QUICKSTART)
    out = json.loads(w.stdout.strip().splitlines()[-1])
    assert out["listed"] == [out["id"]], out  # wandb.Api().runs() with filters, in the script
    t = run_python(store, tmp_path, QUICKSTART_TRACKD)
    tid = json.loads(t.stdout.strip().splitlines()[-1])["id"]
    a, b = stored(store, out["id"]), stored(store, tid)
    assert a["project"] == "quickstart" and b["project"] == "quickstart-td"
    for key in ("state", "config", "tags", "notes", "group", "job_type", "exit_code",
                "history_lines"):
        assert a[key] == b[key], (key, a[key], b[key])
    assert a["state"] == "finished"
    assert a["config"] == {"learning_rate": 0.02, "epochs": 5, "arch": "cnn",
                           "batch_size": 32, "dropout": 0.1}
    assert strip(a["summary"]) == strip(b["summary"])
    assert a["summary"]["loss"] == 0.2 and a["summary"]["best_acc"] == 0.9  # define_metric min
    assert [strip(r) for r in history(store, a["path"])] == \
        [strip(r) for r in history(store, b["path"])]


def test_one_line_switch_and_failures(store, tmp_path):
    """`import trackd.wandb as wandb` is the same module; an exception in
    `with wandb.init()` fails the run; the unsupported features say which."""
    r = run_python(store, tmp_path, """
        import trackd.wandb as wandb
        for name, call in [("wandb.Audio", lambda: wandb.Audio("x.wav")),
                           ("wandb.Video", lambda: wandb.Video("x.mp4")),
                           ("use_model", lambda: wandb.use_model("m:latest")),
                           ("restore", lambda: wandb.restore("model.pt"))]:
            try:
                call()
            except NotImplementedError as e:
                print("refused:", e)
        try:
            wandb.log({"a": 1})
        except wandb.Error as e:
            print("before init:", e)
        with wandb.init(project="switch", id="fails1") as run:
            run.log({"a": 1})
            raise RuntimeError("boom")
        """, check=False)
    assert r.returncode == 1 and "RuntimeError: boom" in r.stderr
    assert r.stdout.count("refused:") == 4
    assert "this kind of media" in r.stdout and "artifacts" in r.stdout
    assert "before init: You must call wandb.init() before wandb.log()" in r.stdout
    assert stored(store, "fails1")["state"] == "failed"


# ---- environment ---------------------------------------------------------------------

WANDB_ENV = dict(WANDB_PROJECT="envproj", WANDB_ENTITY="envteam", WANDB_NAME="env-name",
                 WANDB_NOTES="env notes", WANDB_TAGS="a, b", WANDB_RUN_GROUP="envgroup",
                 WANDB_JOB_TYPE="envjob")


def test_environment_variables_and_explicit_arguments(store, tmp_path):
    body = """
        import wandb
        run = wandb.init(%s)
        run.log({"x": 1})
        print(run.path)
        """
    r = run_wandb(store, tmp_path, body % "", WANDB_RUN_ID="envid1", **WANDB_ENV)
    run = stored(store, r.stdout.strip())
    assert run["path"] == "envteam/envproj/envid1"
    assert (run["display_name"], run["notes"], run["tags"], run["group"], run["job_type"]) == \
        ("env-name", "env notes", ["a", "b"], "envgroup", "envjob")
    # Explicit arguments win, the rest still comes from the environment.
    r = run_wandb(store, tmp_path, body % 'project="mine", name="my-name", tags=["t"], id="ex1"',
                  WANDB_RUN_ID="envid2", **WANDB_ENV)
    run = stored(store, r.stdout.strip())
    assert run["path"] == "envteam/mine/ex1"
    assert (run["display_name"], run["tags"], run["notes"]) == ("my-name", ["t"], "env notes")
    # WANDB_MODE: offline is kept for a later sync; disabled records nothing.
    r = run_wandb(store, tmp_path, body % 'id="off1"', WANDB_MODE="offline")
    assert stored(store, "off1")["mode"] == "offline"
    assert "trackctl sync off1" in r.stderr, r.stderr
    r = run_wandb(store, tmp_path, body % 'id="dis1"', WANDB_DISABLED="true")
    r = run_wandb(store, tmp_path, body % 'id="dis2", mode="disabled"', WANDB_MODE="online")
    for disabled in ("dis1", "dis2"):
        assert "error" in store.query("run", run=disabled), disabled
    # WANDB_SILENT: no wandb lines, no footer; WANDB_CONSOLE=off: no output.log capture.
    r = run_wandb(store, tmp_path, body % 'id="quiet1"' + 'print("to stdout")\n',
                  WANDB_SILENT="true", WANDB_CONSOLE="off")
    assert "wandb:" not in r.stderr and "Run summary" not in r.stderr, r.stderr
    run = stored(store, "quiet1")
    assert not os.path.exists(os.path.join(run["dir"], "output.log")) or \
        "to stdout" not in open(os.path.join(run["dir"], "output.log")).read()


def test_trackd_init_reads_the_wandb_variables_after_its_own(store, tmp_path):
    body = """
        import trackd
        run = trackd.init(id="plain1")
        run.log({"x": 1})
        run.finish()
        """
    r = run_python(store, tmp_path, body, WANDB_SILENT="true", **WANDB_ENV)
    assert "Run summary" not in r.stderr, r.stderr
    run = stored(store, "plain1")
    assert run["path"] == "envteam/envproj/plain1"
    assert (run["display_name"], run["tags"], run["job_type"]) == ("env-name", ["a", "b"],
                                                                   "envjob")
    # trackd's own variable comes first.
    run_python(store, tmp_path, body.replace("plain1", "plain2"), TRACKD_PROJECT="tdproj",
               **WANDB_ENV)
    assert stored(store, "plain2")["project"] == "tdproj"


def test_c_library_reads_the_wandb_variables(store, tmp_path):
    env = dict(store.env, WANDB_ENTITY="cteam", WANDB_NAME="c-name", WANDB_TAGS="x,y",
               WANDB_JOB_TYPE="eval", WANDB_RUN_GROUP="cgroup")
    p = subprocess.run([BIN["producer"], "--run-id", "crun1", "--rows", "3"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    run = stored(store, "crun1")
    assert run["entity"] == "cteam" and run["project"] == "trackd-tests"  # explicit project
    assert (run["display_name"], run["tags"], run["job_type"], run["group"]) == \
        ("c-name", ["x", "y"], "eval", "cgroup")


# ---- warnings --------------------------------------------------------------------------

def test_unknown_parameters_warn_once_and_never_crash(store, tmp_path):
    r = run_wandb(store, tmp_path, """
        import wandb
        for i in range(3):
            run = wandb.init(project="warn", magic=1, sync_tensorboard=True, reinit=True,
                             settings=wandb.Settings(x_weird=1, silent=False))
            wandb.watch(object())
            wandb.login()
            run.define_metric("acc", step_metric="epoch")
            run.log({"acc": i})
            run.finish()
        """)
    err = r.stderr
    assert err.count("WARNING wandb.init: not supported by trackd, ignored: magic, "
                     "sync_tensorboard") == 1, err
    assert err.count("x_weird") == 1, err
    assert err.count("wandb.watch() is not supported") == 1, err
    assert err.count("no key needed") == 1, err
    assert err.count("step_metric not supported") == 1, err
    assert len(store.query("runs", project="warn")["runs"]) == 3


# ---- Api ---------------------------------------------------------------------------------

def test_api_filters_history_and_update(store, tmp_path):
    run_python(store, tmp_path, """
        import time
        import trackd.wandb as wandb
        specs = [("r1", "alpha-1", 0.1, ["a"], 0), ("r2", "beta-2", 0.2, ["b"], 0),
                 ("r3", "alpha-3", 0.3, ["a", "c"], 1)]
        for rid, name, lr, tags, code in specs:
            run = wandb.init(project="apiproj", entity="ent", id=rid, name=name, tags=tags,
                             config={"lr": lr, "opt": {"name": "adam"}}, reinit=True)
            for step in range(10):
                run.log({"loss": lr * (10 - step), "epoch": step // 5})
            run.finish(exit_code=code)
            time.sleep(1.1)  # distinct created_at seconds
        """)
    # Another process reads them back, as a notebook would.
    r = run_python(store, tmp_path, """
        import json
        import trackd.wandb as wandb
        api = wandb.Api()
        q = lambda f, **kw: [r.id for r in api.runs("ent/apiproj", filters=f, **kw)]
        first = api.run("ent/apiproj/r1")
        second = api.run("ent/apiproj/r2")
        out = {
            "all": q({}),
            "oldest": q({}, order="+created_at"),
            "finished": q({"state": "finished"}),
            "failed": q({"state": "failed"}),
            "lr": q({"config.lr": {"$gte": 0.2}}),
            "lrvalue": q({"config.lr.value": 0.1}),
            "nested": q({"config.opt.name": "adam"}),
            "tags": q({"tags": {"$in": ["c", "zzz"]}}),
            "regex": q({"display_name": {"$regex": "^alpha"}}),
            "and": q({"$and": [{"tags": {"$in": ["a"]}}, {"state": "finished"}]}),
            "after": q({"created_at": {"$gt": second.created_at}}),
            "before": q({"created_at": {"$lt": second.created_at}}),
            "summary": q({"summary_metrics.loss": {"$lt": 0.25}}),
            "by_lr": q({}, order="-config.lr"),
        }
        try:
            q({"heartbeat_at": 1})
        except ValueError as e:
            out["bad"] = str(e)
        out["run"] = [first.name, first.id, first.state, first.config, first.summary["loss"],
                      first.url]
        out["history"] = first.history(keys=["loss"], samples=4, pandas=False)
        out["x_axis"] = first.history(keys=["loss"], x_axis="epoch", pandas=False)[-1]
        out["scan"] = list(first.scan_history(keys=["loss"], page_size=3))
        first.name = "renamed"
        first.tags = ["changed", "twice"]
        first.notes = "tried a smaller lr"
        first.update()
        again = api.run("ent/apiproj/r1")
        out["renamed"] = [again.name, again.tags, again.notes, first.tags, first.notes]
        # Only what changed is sent: the name and notes stay.
        again.tags = []
        again.update()
        third = api.run("ent/apiproj/r1")
        out["cleared"] = [third.name, third.tags, third.notes]
        print(json.dumps(out))
        """)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["all"] == ["r3", "r2", "r1"]
    assert out["oldest"] == ["r1", "r2", "r3"]
    assert out["finished"] == ["r2", "r1"] and out["failed"] == ["r3"]
    assert out["lr"] == ["r3", "r2"] and out["lrvalue"] == ["r1"]
    assert out["nested"] == ["r3", "r2", "r1"]
    assert out["tags"] == ["r3"] and out["regex"] == ["r3", "r1"] and out["and"] == ["r1"]
    assert out["after"] == ["r3"] and out["before"] == ["r1"]
    assert out["summary"] == ["r2", "r1"]  # last loss: 0.1 (r1), 0.2 (r2), 0.3 (r3)
    assert out["by_lr"] == ["r3", "r2", "r1"]
    assert "unsupported field 'heartbeat_at'" in out["bad"]
    name, rid, state, config, loss, url = out["run"]
    assert (name, rid, state, config, url) == ("alpha-1", "r1", "finished",
                                               {"lr": 0.1, "opt": {"name": "adam"}}, None)
    assert abs(loss - 0.1) < 1e-12
    assert [row["_step"] for row in out["history"]] == [0, 3, 6, 9]
    assert set(out["history"][0]) == {"_step", "loss"}
    assert set(out["x_axis"]) == {"_step", "loss", "epoch"}
    assert len(out["scan"]) == 10 and out["scan"][0] == {"loss": 1.0}
    assert out["renamed"] == ["renamed", ["changed", "twice"], "tried a smaller lr",
                              ["changed", "twice"], "tried a smaller lr"]
    assert out["cleared"] == ["renamed", [], "tried a smaller lr"]
    assert "WARNING" not in r.stderr, r.stderr
    dump = [rec for rec in store.dump() if rec["run_id"] == "r1" and rec["type"] == "rename"]
    assert [{k: v for k, v in rec.items() if k in ("display_name", "tags", "notes")}
            for rec in dump] == [
        {"display_name": "renamed", "tags": ["changed", "twice"], "notes": "tried a smaller lr"},
        {"tags": []}]


def test_live_run_tags_and_notes_and_update_of_a_running_run(store, tmp_path):
    r = run_wandb(store, tmp_path, f"""
        import os, time, subprocess, sys, json
        import wandb
        run = wandb.init(project="live", id="live1", tags=["start"], notes="at init")
        run.log({{"x": 1}})
        run.tags = run.tags + ("added",)
        run.notes = "changed while running"
        run.log({{"x": 2}})
        # The changes travel with the run's records: wait until the agent has
        # them, so that the Api below reads them.
        api = wandb.Api()
        deadline = time.monotonic() + 30
        while api.run("live1").notes != "changed while running" and time.monotonic() < deadline:
            time.sleep(0.05)
        # Another process updates the running run through the Api.
        code = (
            "import trackd.wandb as wandb; r = wandb.Api().run('live1'); "
            "r.name = 'from-api'; r.tags = r.tags + ['api']; r.update()")
        subprocess.run([sys.executable, "-c", code], check=True)
        print(json.dumps([list(run.tags), run.notes]))
        run.finish()
        """)
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [["start", "added"],
                                                             "changed while running"]
    assert "WARNING" not in r.stderr, r.stderr
    run = stored(store, "live1")
    assert run["state"] == "finished"
    assert (run["display_name"], run["tags"], run["notes"]) == (
        "from-api", ["start", "added", "api"], "changed while running"), run
    # The run store keeps them across an agent restart (they are in the log).
    store.stop()
    store.start()
    run = stored(store, "live1")
    assert (run["display_name"], run["tags"], run["notes"]) == (
        "from-api", ["start", "added", "api"], "changed while running"), run
    # Limits are the agent's, said with the limit.
    r = run_python(store, tmp_path, """
        import trackd
        from trackd.errors import AgentError
        api = trackd.Api()
        run = api.run("live1")
        for tags in (["t%d" % i for i in range(65)], ["x" * 129]):
            try:
                run.update(tags=tags)
            except AgentError as e:
                print("refused:", e)
        """)
    assert "refused: " in r.stdout and "65 tags, limit 64" in r.stdout, r.stdout
    assert "129 bytes, limit 128" in r.stdout, r.stdout


# ---- no shadowing --------------------------------------------------------------------------

def test_a_real_wandb_is_not_shadowed_by_import_trackd(store, tmp_path):
    real = tmp_path / "site" / "wandb"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\n")
    body = """
        import trackd, trackd.wandb
        import wandb
        print(getattr(wandb, "REAL", False), wandb is trackd.wandb)
        """
    env = client_env(store, tmp_path)
    site = str(tmp_path / "site")
    r = run_python(store, tmp_path, body, PYTHONPATH=env["PYTHONPATH"] + ":" + site)
    assert r.stdout.split() == ["True", "False"], r.stdout
    # Only `trackctl run` shadows it, for the command it runs.
    r = run_wandb(store, tmp_path, body, PYTHONPATH=env["PYTHONPATH"] + ":" + site)
    assert r.stdout.split() == ["False", "True"], r.stdout
    # Without the trackd package, the shim says what is missing.
    r = run_wandb(store, tmp_path, "import wandb\n", check=False, PYTHONPATH=site)
    assert r.returncode == 1 and "cannot import the trackd package" in r.stderr, r.stderr


def test_trackctl_run_usage_and_exit_status(store, tmp_path):
    env = client_env(store, tmp_path)
    run = lambda *a: subprocess.run([BIN["trackctl"], "run", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    assert run().returncode == 2
    assert run("--bogus").returncode == 2
    assert run("--", "/nonexistent/cmd").returncode == 127
    assert run("sh", "-c", "exit 7").returncode == 7
    # Options after the command are the command's own.
    r = run("sh", "-c", 'echo "$1 $PYTHONPATH"', "sh", "--help")
    assert r.returncode == 0 and r.stdout.startswith("--help " + str(tmp_path / "rt"))
    assert "trackctl run [--] COMMAND" in run("--help").stdout


# ---- the init lines with a wandb sink ------------------------------------------------------

def test_init_lines_with_a_wandb_sink(make_agent, fw, tmp_path):  # noqa: F811
    agent = make_agent()
    r = run_wandb(agent, tmp_path, """
        import wandb
        with wandb.init(project="trackd-tests", id="urls1") as run:
            run.log({"acc": 0.5})
        """)
    run = stored(agent, "urls1")
    lines = [line for line in r.stderr.splitlines() if line.startswith("wandb: ")]
    assert lines[0] == f"wandb: Syncing run {run['display_name']}", r.stderr
    assert lines[1].startswith("wandb: ⭐️ View project at http"), r.stderr
    assert lines[2].startswith("wandb: 🚀 View run at http") and lines[2].endswith("/runs/urls1")
    assert lines[-1] == f"wandb: Find logs at: {run['dir']}"
    r = run_wandb(agent, tmp_path, """
        import wandb
        with wandb.init(project="trackd-tests", id="urls2") as run:
            run.log({"acc": 0.5})
        """, WANDB_SILENT="true")
    assert "wandb:" not in r.stderr and "View run" not in r.stderr, r.stderr


# ---- the README's "Coming from W&B" and examples/wandb_compat.py ---------------------------

def test_readme_coming_from_wandb_runs_as_written(store, tmp_path):
    import re
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = open(os.path.join(top, "README.md")).read()
    start = text.index("\n## Coming from W&B\n")
    body = text[start:text.find("\n## ", start + 1)]
    (sh,) = [b for lang, b in re.findall(r"```(\w*)\n(.*?)```", body, re.S)
             if lang == "sh" and "trackctl run" in b]
    env = client_env(store, tmp_path)
    env["PATH"] = os.path.dirname(BIN["trackctl"]) + ":" + env.get("PATH", "/usr/bin:/bin")
    r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + sh], cwd=top, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (sh, r.stdout, r.stderr)
    assert "lr: 0.01" in r.stdout and "Find logs at:" in r.stderr
    runs = store.query("runs", project="nico/awesome-project")["runs"]
    assert sorted(stored(store, run["path"])["mode"] for run in runs) == ["offline", "online"]
    for run in runs:
        done = stored(store, run["path"])
        assert done["state"] == "finished" and done["history_lines"] == 8, done
        assert done["config"] == {"epochs": 10, "learning_rate": 0.01}


def test_resume_auto_continues_the_run_that_did_not_end_cleanly(store, tmp_path):
    body = """
        import sys
        import wandb
        run = wandb.init(project="resume", resume="auto")
        print(run.id, run.resumed)
        run.log({"loss": 1.0})
        sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
        """
    path = script(tmp_path, "resume.py", body)
    env = client_env(store, tmp_path, WANDB_DIR=str(tmp_path / "wd"))

    def once(code):
        r = subprocess.run([BIN["trackctl"], "run", "--", sys.executable, str(path), str(code)],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == code, r.stderr
        rid, resumed = r.stdout.split()
        return rid, resumed
    resume_file = tmp_path / "wd" / "wandb" / "wandb-resume.json"
    first, resumed = once(3)
    assert resumed == "False" and json.loads(resume_file.read_text()) == {"run_id": first}
    assert stored(store, first)["state"] == "failed"
    again, resumed = once(0)
    assert (again, resumed) == (first, "True")
    assert not resume_file.exists()  # a clean exit leaves nothing to resume
    run = stored(store, first)
    assert run["state"] == "finished" and run["history_lines"] == 2, run
    fresh, resumed = once(0)
    assert fresh != first and resumed == "False"


# ---- media and files through the wandb surface ------------------------------------

def test_wandb_media_and_files_under_trackctl_run(store, tmp_path):
    """wandb.Image / Histogram / Table, wandb.save and run.log_code in an
    unchanged W&B script: the run holds W&B's objects in its rows and the
    files under W&B's paths."""
    import hashlib
    (tmp_path / "model.ckpt").write_bytes(b"weights" * 100)
    (tmp_path / "helper.py").write_text("X = 1\n")
    run_wandb(store, tmp_path, """
        import numpy as np
        import wandb
        with wandb.init(project="media", id="wbmedia1") as run:
            table = wandb.Table(columns=["id", "label"])
            for step in range(3):
                table.add_data(step, f"class {step}")
                run.log({"sample": wandb.Image(np.full((4, 6, 3), 40 * step, dtype=np.uint8),
                                               caption=f"step {step}"),
                         "weights": wandb.Histogram(np.arange(10 + step), num_bins=5),
                         "preds": table})
            wandb.save("model.ckpt", policy="now")
            run.log_code(".")
        """)
    run = stored(store, "wbmedia1")
    rows = history(store, run["path"])
    assert len(rows) == 3
    for step, row in enumerate(rows):
        img = row["sample"]
        assert img["_type"] == "image-file" and (img["width"], img["height"]) == (6, 4)
        assert img["caption"] == f"step {step}"
        assert row["weights"]["_type"] == "histogram" and len(row["weights"]["bins"]) == 6
        assert sum(row["weights"]["values"]) == 10 + step
        assert row["preds"]["_type"] == "table-file" and row["preds"]["nrows"] == step + 1
        for obj in (img, row["preds"]):
            with open(os.path.join(run["dir"], "files", obj["path"]), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == obj["sha256"]
    r = subprocess.run([BIN["trackctl"], "files", "wbmedia1", "--json"], env=store.env,
                       capture_output=True, text=True, timeout=60)
    names = {f["name"] for f in json.loads(r.stdout)["files"]}
    assert "model.ckpt" in names, names
    assert {"code/train.py", "code/helper.py"} <= names, names
    with open(os.path.join(run["dir"], "files", "model.ckpt"), "rb") as f:
        assert f.read() == b"weights" * 100
