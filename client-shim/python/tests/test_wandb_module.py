"""trackd.wandb, the wandb module's surface, without an agent: W&B's config
rules, the pre-init errors, warnings once, the settings from the environment
(trackd._env), the Api's filters and order, define_metric's summary mapping,
and the unsupported features. Runs are disabled-mode (no library, no agent);
tests/e2e/test_wandb_compat.py covers the recorded runs."""
import argparse
import os
import sys

import pytest

import trackd
from trackd import _env
from trackd import wandb
from trackd.wandb import _public, _term


class _Stderr:
    """What the test wrote on stderr so far (capsys, accumulated)."""

    def __init__(self, capsys):
        self._capsys = capsys
        self._text = ""

    def getvalue(self) -> str:
        self._text += self._capsys.readouterr().err
        return self._text


@pytest.fixture(autouse=True)
def clean(monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith("WANDB_"):
            monkeypatch.delenv(name)
    _term.reset_for_tests()
    _term.set_silent(False)
    yield _Stderr(capsys)
    wandb.finish()


def test_import_trackd_installs_no_global_wandb():
    assert sys.modules.get("wandb") is None or sys.modules["wandb"] is not wandb


def test_before_init():
    assert wandb.run is None
    with pytest.raises(wandb.Error, match=r"wandb.init\(\) before wandb.log"):
        wandb.log({"a": 1})
    with pytest.raises(wandb.Error, match=r"before wandb.config.lr"):
        wandb.config.lr
    with pytest.raises(wandb.Error, match=r"before wandb.summary\['x'\]"):
        wandb.summary["x"] = 1
    wandb.finish()  # nothing to finish: no error


def test_config_rules():
    ns = argparse.Namespace(lr=0.1, epochs=3, secret="s")
    run = wandb.init(mode="disabled", config=ns, config_exclude_keys=["secret"])
    assert wandb.run is run
    assert wandb.config.as_dict() == {"lr": 0.1, "epochs": 3}
    assert wandb.config.lr == 0.1 and wandb.config["epochs"] == 3
    wandb.config.batch = 32
    wandb.config["--depth"] = 4  # W&B strips the dashes
    assert wandb.config.depth == 4 and "batch" in wandb.config
    wandb.config.update({"lr": 0.1})  # the same value: fine
    with pytest.raises(wandb.ConfigError, match='key "lr" from 0.1 to 0.2'):
        wandb.config.update({"lr": 0.2})
    with pytest.raises(wandb.ConfigError):
        wandb.config.lr = 0.3
    wandb.config.update({"lr": 0.2}, allow_val_change=True)
    wandb.config.setdefaults({"lr": 9, "momentum": 0.9})
    assert wandb.config.lr == 0.2 and wandb.config.momentum == 0.9
    with pytest.raises(AttributeError):
        wandb.config.missing
    with pytest.raises(KeyError):
        wandb.config["missing"]
    wandb.summary["best"] = 1
    wandb.summary.update({"other": 2})
    assert wandb.summary.best == 1 and dict(wandb.summary.items()) == {"best": 1, "other": 2}
    run.finish()
    assert wandb.run is None


def test_config_include_keys():
    wandb.init(mode="disabled", config={"a": 1, "b": 2}, config_include_keys=["a"])
    assert wandb.config.as_dict() == {"a": 1}


def test_with_block_and_reinit():
    with wandb.init(mode="disabled") as run:
        assert wandb.init(mode="disabled") is run  # W&B's default: the active run
        new = wandb.init(mode="disabled", reinit="finish_previous")
        assert new is not run and run._trackd.finished
    assert wandb.run is new  # leaving the block finished the first run only
    new.finish()
    assert wandb.run is None


def test_unknown_and_unsupported_parameters_warn_once(clean):
    for _ in range(2):
        wandb.init(mode="disabled", magic=1, fork_from="x", dir="/tmp", save_code=False,
                   settings={"silent": False, "x_odd": 1}, reinit=True)
    err = clean.getvalue()
    assert err.count("WARNING wandb.init: not supported by trackd, ignored: fork_from, magic\n") \
        == 1, err
    assert err.count("settings not supported by trackd, ignored: x_odd") == 1, err
    wandb.watch(object())
    wandb.watch(object())
    assert wandb.login() is True
    wandb.login(key="abc")
    err = clean.getvalue()
    assert err.count("wandb.watch() is not supported") == 1
    assert err.count("no key needed") == 1


def test_define_metric_summary_mapping(clean):
    run = wandb.init(mode="disabled")
    m = wandb.define_metric("loss", summary="min")
    assert (m.name, m.summary) == ("loss", "min")
    assert run._trackd.summary._modes["loss"] == "min"
    wandb.define_metric("acc", summary="best", goal="maximize")
    assert run._trackd.summary._modes["acc"] == "max"
    wandb.define_metric("f1", summary="min,max")
    assert run._trackd.summary._modes["f1"] == "min"
    assert "keeps one summary value per metric" in clean.getvalue()
    wandb.define_metric("train/*", step_metric="epoch")
    assert "glob names" in clean.getvalue() and "step_metric not supported" in clean.getvalue()


@pytest.mark.parametrize("name", ["Audio", "Video", "Html"])
def test_unsupported_classes_name_the_feature(name):
    with pytest.raises(NotImplementedError, match=f"wandb.{name} is not supported"):
        getattr(wandb, name)()


def test_unsupported_functions_name_the_feature():
    with pytest.raises(wandb.UnsupportedError, match="restore is not supported"):
        wandb.restore("model.pt")
    with pytest.raises(wandb.UnsupportedError, match="artifacts"):
        wandb.use_model("model:latest")


def test_media_classes_are_trackds_with_wandbs_signatures(clean):
    import trackd
    np = pytest.importorskip("numpy")
    img = wandb.Image(np.zeros((3, 2), dtype=np.uint8), caption="c",
                      boxes={"predictions": {}}, masks=None)
    assert isinstance(img, trackd.Image) and img.caption == "c"
    assert "wandb.Image: boxes not supported by trackd, ignored" in clean.getvalue()
    h = wandb.Histogram([1, 2, 2, 3], num_bins=3)
    assert isinstance(h, trackd.Histogram)
    t = wandb.Table(columns=["a", "b"], rows=[[1, "x"]])
    t.add_data(2, "y")
    t.add_column("c", [True, False])
    assert isinstance(t, trackd.Table)
    assert t.columns == ["a", "b", "c"] and t.data == [[1, "x", True], [2, "y", False]]
    with pytest.raises(ValueError, match="2 rows"):
        t.add_column("d", [1])
    with pytest.raises(trackd.TrackdError, match="row 0 has 1 cells"):
        wandb.Table(columns=["a", "b"], data=[[1]])


def test_save_and_log_code_go_to_trackd(tmp_path, monkeypatch):
    calls = []

    class FakeRun:
        def save(self, glob_str, base_path=None, policy="live"):
            calls.append(("save", glob_str, base_path, policy))
            return [glob_str]

        def log_code(self, root=".", include=None):
            picked = [p for p in ("a.py", "b.txt", "wandb/c.py", "d.py")
                      if include(os.path.join(root, p))]
            calls.append(("log_code", root, picked))
            return picked

    from trackd.wandb import _media
    assert _media.save(FakeRun(), "*.pt", policy="end") == ["*.pt"]
    with pytest.raises(ValueError, match="glob_str"):
        _media.save(FakeRun(), None)
    _media.log_code(FakeRun(), str(tmp_path), exclude_fn=lambda p, root: p.endswith("d.py"))
    assert calls == [("save", "*.pt", None, "end"), ("log_code", str(tmp_path), ["a.py"])]


def test_silent(clean):
    wandb.init(mode="disabled", settings=wandb.Settings(silent=True))
    assert _term.silent()


def test_mode_names():
    assert _env.normalise_mode("dryrun") == "offline" and _env.normalise_mode("run") == "online"
    with pytest.raises(ValueError, match="online, offline or disabled"):
        wandb.init(mode="sideways")


# ---- trackd._env ----------------------------------------------------------------------

def test_env_reading():
    env = {"WANDB_TAGS": " a,b ,, c", "WANDB_MODE": "offline", "WANDB_SILENT": "True",
           "WANDB_NAME": ""}
    assert _env.tags(env) == ["a", "b", "c"]
    assert _env.mode(env) == "offline"
    assert _env.mode(dict(env, WANDB_DISABLED="true")) == "disabled"
    assert _env.flag("WANDB_SILENT", env) and not _env.flag("WANDB_CONSOLE", env)
    assert _env.text("WANDB_NAME", env) is None  # empty = unset, as in W&B
    with pytest.raises(ValueError, match="WANDB_MODE"):
        _env.mode({"WANDB_MODE": "sometimes"})


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("WANDB_DISABLED", "true")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_RUN_ID", "envid")
    run = wandb.init()
    assert run.disabled and run.project == "from-env" and run.id == "envid"
    run.finish()
    # Explicit arguments win over the environment.
    run = wandb.init(project="given", id="given-id")
    assert (run.project, run.id) == ("given", "given-id")
    run.finish()
    # trackd.init reads them too.
    r = trackd.init()
    assert r.mode == "disabled" and r.project == "from-env"
    r.finish()


# ---- Api filters ------------------------------------------------------------------------

RUN = {"id": "r1", "state": "finished", "display_name": "alpha-1", "tags": ["a", "b"],
       "config": {"lr": 0.1, "opt": {"name": "adam"}}, "summary": {"loss": 0.5},
       "start_time": 1700000000.5, "group": "g"}


@pytest.mark.parametrize("filters,want", [
    ({}, True),
    ({"state": "finished"}, True),
    ({"state": {"$ne": "finished"}}, False),
    ({"config.lr": 0.1}, True),
    ({"config.lr.value": 0.1}, True),
    ({"config.lr": {"$gt": 0.05, "$lt": 0.2}}, True),
    ({"config.opt.name": {"$in": ["adam", "sgd"]}}, True),
    ({"config.missing": {"$exists": False}}, True),
    ({"config.missing": 1}, False),
    ({"tags": "a"}, True),
    ({"tags": {"$in": ["z", "b"]}}, True),
    ({"tags": {"$nin": ["a"]}}, False),
    ({"display_name": {"$regex": "^al"}}, True),
    ({"display_name": {"$regex": "^be"}}, False),
    ({"created_at": {"$gt": "2023-11-14T22:13:19Z"}}, True),
    ({"created_at": {"$lt": "2023-11-14T22:13:20"}}, False),
    ({"summary_metrics.loss": {"$lte": 0.5}}, True),
    ({"$or": [{"state": "failed"}, {"group": "g"}]}, True),
    ({"$nor": [{"state": "finished"}]}, False),
    ({"config.lr": {"$gt": "text"}}, False),
])
def test_filters(filters, want):
    assert _public.match_filters(RUN, filters) is want


@pytest.mark.parametrize("filters,msg", [
    ({"heartbeat_at": 1}, "unsupported field 'heartbeat_at'"),
    ({"state": {"$elemMatch": 1}}, "unsupported operator '\\$elemMatch'"),
    ({"$where": "x"}, "unsupported operator"),
    ({"created_at": {"$gt": "yesterday"}}, "not an ISO 8601 time"),
])
def test_filters_refuse_what_they_cannot_apply(filters, msg):
    with pytest.raises(ValueError, match=msg):
        _public.match_filters(RUN, filters)


def test_order_key_puts_runs_without_the_value_last():
    runs = [{"config": {"lr": 0.2}}, {"config": {}}, {"config": {"lr": 0.1}}]
    key = _public._order_key("config.lr")
    assert [r["config"].get("lr") for r in sorted(runs, key=key)] == [0.1, 0.2, None]
    with pytest.raises(ValueError):
        _public._order_key("-heartbeat_at")



def test_a_bad_wandb_mode_warns_and_never_crashes(env, store):
    r = env.run("""
        import trackd.wandb as wandb
        run = wandb.init(project="badmode", id="bm1")
        run.log({"a": 1})
        print(run.mode if hasattr(run, "mode") else run._trackd.mode)
        """, TRACKD_SOCKET=store.url, WANDB_MODE="sometimes")
    assert r.stdout.strip() == "online"
    assert r.stderr.count("WANDB_MODE must be online, offline or disabled; got 'sometimes'; "
                          "using online") == 1, r.stderr


def test_config_files_as_wandb_reads_them(tmp_path, monkeypatch):
    pytest.importorskip("yaml")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config-defaults.yaml").write_text(
        "wandb_version: 1\n"
        "epochs:\n  desc: Number of epochs to train over\n  value: 100\n"
        "batch_size:\n  desc: Size of each mini-batch\n  value: 32\n"
        "plain: 7\n")
    wandb.init(mode="disabled", config={"epochs": 5})
    assert wandb.config.as_dict() == {"epochs": 5, "batch_size": 32, "plain": 7}
    wandb.finish()
    (tmp_path / "sweep.yaml").write_text("lr:\n  value: 0.1\nopt: {value: {name: adam}}\n")
    wandb.init(mode="disabled", config=str(tmp_path / "sweep.yaml"),
               config_exclude_keys=["plain"])
    assert wandb.config.as_dict() == {"epochs": 100, "batch_size": 32, "lr": 0.1,
                                      "opt": {"name": "adam"}}


class _FakeRun:
    """An ApiRun's reading side, without an agent."""

    def __init__(self, rows):
        self.rows = rows
        self.name, self.tags, self.notes = "n", [], None

    def history(self, keys=None, stream="default"):
        if keys:
            return [{k: r[k] for k in ["_step", *keys] if k in r} for r in self.rows]
        return list(self.rows)


class _UpdatingRun(_FakeRun):
    """An ApiRun that records what update() was asked to change."""

    def __init__(self):
        super().__init__([])
        self.path, self.name, self.tags, self.notes = "e/p/r", "n", ["a"], "hi"
        self.updates = []

    def update(self, **changes):
        self.updates.append(changes)
        self.name = changes["name"] or self.name
        self.tags = changes["tags"] if changes["tags"] is not None else self.tags
        self.notes = changes["notes"] if changes["notes"] is not None else self.notes
        return self

    def refresh(self):
        return self


def test_api_run_update_sends_what_changed(clean):
    fake = _UpdatingRun()
    run = _public.Run(None, fake)
    run.update()
    assert fake.updates == [{"name": None, "tags": None, "notes": None}]
    run.tags = ["a", "b"]
    run.notes = None  # W&B: no notes
    run.update()
    assert fake.updates[-1] == {"name": None, "tags": ["a", "b"], "notes": ""}
    assert (run.tags, run.notes) == (["a", "b"], "")
    run.name = "new"
    run.update()
    assert fake.updates[-1] == {"name": "new", "tags": None, "notes": None}
    assert "WARNING" not in clean.getvalue()


def test_history_samples_keys_and_pandas(clean):
    rows = [{"_step": i, "loss": 1 / (i + 1), **({"val": i} if i % 2 else {})}
            for i in range(10)]
    run = _public.Run(None, _FakeRun(rows))
    sampled = run.history(samples=4, pandas=False)
    assert [r["_step"] for r in sampled] == [0, 3, 6, 9]
    assert run.history(samples=1, pandas=False) == [rows[0]]
    only = run.history(keys=["val"], pandas=False)
    assert [r["_step"] for r in only] == [1, 3, 5, 7, 9] and set(only[0]) == {"_step", "val"}
    try:
        import pandas  # noqa: F401
    except ImportError:
        assert run.history(pandas=True) == rows  # the list, with W&B's warning
        assert "Unable to load pandas, call history with pandas=False" in clean.getvalue()


def test_settings_of_any_type_never_crash(clean):
    wandb.init(mode="disabled", settings=42)
    assert "settings of type int ignored" in clean.getvalue()


def test_init_allow_val_change():
    wandb.init(mode="disabled", config={"lr": 0.1}, allow_val_change=True)
    wandb.config.lr = 0.2
    assert wandb.config.lr == 0.2
