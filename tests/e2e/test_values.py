"""W&B's value model end to end (issue #12, items 6 and 7): lists, tuples,
None, nested lists and numpy arrays from the Python package through a real
agent into config.yaml, summary.json and history.jsonl, and back out through
trackctl and the footer; the list limits the agent configures, learned and
applied by the client; strings trackd cannot store refused with a clear error."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import BIN, Agent, python_client_env, require_bins

TYPICAL = textwrap.dedent("""
    import numpy as np, trackd
    config = {"lr": 0.001, "eps": 1e-08, "betas": (0.9, 0.999), "layers": [64, 128, [3, 3]],
              "scheduler": None, "opt": {"name": "adamw", "betas": [0.9, 0.95], "extra": None},
              "mixed": [1, "a", True, None, {"k": [1]}], "empty": [], "nothing": {}}
    run = trackd.init(project="values", id="vals1", config=config, console=False)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1), "vec": np.arange(4) * step,
                 "grads": np.linspace(0.0, 1.0, 100) + step, "tags": ["a", step],
                 "none": None, "acc": np.float32(0.5)})
    run.summary.update({"best": (0.1, 0.2), "note": None})
    for bad in ({"s": "a\\x00b"}, {"u": "x\\udc80"}):
        try:
            run.log(bad)
        except trackd.InvalidValueError as e:
            print("refused:", e)
    run.finish()
""")

CONFIG = {"lr": 0.001, "eps": 1e-08, "betas": [0.9, 0.999], "layers": [64, 128, [3, 3]],
          "scheduler": None, "opt": {"name": "adamw", "betas": [0.9, 0.95], "extra": None},
          "mixed": [1, "a", True, None, {"k": [1]}], "empty": [], "nothing": {}}


def run_python(agent, script, timeout=120):
    pytest.importorskip("numpy")
    r = subprocess.run([sys.executable, "-c", script], env=python_client_env(agent.env),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r


def trackctl(agent, *args):
    r = subprocess.run([BIN["trackctl"], *args], env=agent.env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, f"trackctl {args} → {r.returncode}: {r.stderr}"
    return r.stdout


def histogram(values):
    import numpy as np
    counts, edges = np.histogram(np.asarray(values), bins=32)
    return {"_type": "histogram", "values": counts.tolist(), "bins": edges.tolist()}


def test_typical_wandb_values_reach_every_file_and_view(agent):
    np = pytest.importorskip("numpy")
    agent.start()
    r = run_python(agent, TYPICAL)
    refusals = [line for line in r.stdout.splitlines() if line.startswith("refused:")]
    assert refusals == [
        "refused: trackd: key 's': string contains a NUL character (U+0000) at position 1, "
        "which trackd cannot store",
        "refused: trackd: key 'u': string is not valid UTF-8 (lone surrogate at position 1)"]
    agent.wait_for(lambda: agent.run_state("vals1") == "finished", what="finished")
    run = agent.query("run", run="vals1")["run"]

    # config.yaml in W&B's layout: block sequences as PyYAML writes them.
    with open(os.path.join(run["dir"], "config.yaml")) as f:
        text = f.read()
    assert "\nbetas:\n  desc: null\n  value:\n  - 0.9\n  - 0.999\n" in text
    assert "\nlayers:\n  desc: null\n  value:\n  - 64\n  - 128\n  - - 3\n    - 3\n" in text
    assert "\nscheduler:\n  desc: null\n  value: null\n" in text
    assert ("\nopt:\n  desc: null\n  value:\n    name: \"adamw\"\n    betas:\n    - 0.9\n"
            "    - 0.95\n    extra: null\n") in text
    assert "\nmixed:\n  desc: null\n  value:\n  - 1\n  - \"a\"\n  - true\n  - null\n" \
           "  - k:\n    - 1\n" in text
    assert "\nempty:\n  desc: null\n  value: []\n" in text
    assert "\neps:\n  desc: null\n  value: 1.0e-08\n" in text  # a float to YAML 1.1
    yaml = pytest.importorskip("yaml")
    loaded = yaml.safe_load(text)
    assert loaded.pop("wandb_version") == 1
    assert {k: v["value"] for k, v in loaded.items()} == CONFIG
    assert run["config"] == CONFIG  # the query answer too

    # history.jsonl: small arrays as lists, large ones as W&B histograms.
    with open(os.path.join(run["dir"], "history.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 5
    for step, row in enumerate(rows):
        assert row["vec"] == [0, step, 2 * step, 3 * step]
        assert row["grads"] == histogram(np.linspace(0.0, 1.0, 100) + step)
        assert len(row["grads"]["values"]) == 32 and len(row["grads"]["bins"]) == 33
        assert row["tags"] == ["a", step] and row["none"] is None and row["acc"] == 0.5
    with open(os.path.join(run["dir"], "summary.json")) as f:
        summary = json.load(f)
    assert summary["best"] == [0.1, 0.2] and summary["note"] is None
    assert summary["vec"] == [0, 4, 8, 12] and summary["grads"] == rows[-1]["grads"]

    # The footer printed at finish and trackctl show: sparklines of the numbers only.
    assert "Run history:\n" in r.stderr and "Run summary:\n" in r.stderr
    for out in (r.stderr, trackctl(agent, "show", "vals1")):
        hist = out.split("Run history:\n", 1)[1].split("\n\n", 1)[0]
        assert [line.split()[0] for line in hist.splitlines()] == ["acc", "loss"], out
        summ = out.split("Run summary:\n", 1)[1].split("\n\n", 1)[0]
        assert [line.split()[0] for line in summ.splitlines()] == ["acc", "loss"], out
    show = trackctl(agent, "show", "vals1")
    assert "betas" in show.split("Run history:")[0]  # the config block lists it
    # trackctl history, every format, and the Python Api.
    jl = [json.loads(line) for line in trackctl(agent, "history", "vals1", "--format",
                                                "jsonl").splitlines()]
    assert [x["vec"] for x in jl] == [x["vec"] for x in rows]
    assert len(trackctl(agent, "history", "vals1", "--format", "csv").splitlines()) == 6
    assert json.loads(trackctl(agent, "history", "vals1", "--keys", "tags", "--json"))
    api = run_python(agent, textwrap.dedent("""
        import json, trackd
        r = trackd.Api().run("vals1")
        print(json.dumps({"config": r.config, "summary": r.summary, "h": r.history()}))
    """))
    got = json.loads(api.stdout)
    assert got["config"] == CONFIG and got["summary"]["best"] == [0.1, 0.2]
    assert [h["tags"] for h in got["h"]] == [["a", s] for s in range(5)]


@pytest.mark.parametrize("length, ok", [(2, True), (3, True), (4, False)])
def test_agent_list_limits_are_learned_and_applied(tmp_path, length, ok):
    """An agent with limits.max_list_length = 3 and max_nesting_depth = 3: after
    its first ack the client refuses what it would refuse, naming the key."""
    require_bins()
    a = Agent(tmp_path, config="limits:\n  max_list_length: 3\n  max_nesting_depth: 3\n")
    a.start()
    try:
        script = textwrap.dedent(f"""
            import time, trackd
            api = trackd.Api()
            run = trackd.init(project="lim", id="lim", console=False)
            run.log({{"x": 0}})
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if api.run("lim").history():
                        break
                except trackd.errors.NotFoundError:
                    pass
                time.sleep(0.02)
            for value in ([0] * {length}, [[0]], [[[0]]]):
                try:
                    run.log({{"v": value}})
                    print("accepted")
                except trackd.InvalidValueError as e:
                    print("refused:", e)
            run.finish()
        """)
        r = subprocess.run([sys.executable, "-c", script], env=python_client_env(a.env),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.stdout, r.stderr)
        lines = r.stdout.splitlines()
        # The key is depth 1: [[0]] puts the 0 at depth 3, [[[0]]] at 4 > 3.
        assert lines[1] == "accepted", lines
        assert lines[2] == ("refused: trackd: log: td_log: item \"v\"[0][0]: nesting depth "
                            "exceeds 3"), lines
        if ok:
            assert lines[0] == "accepted", lines
        else:
            assert lines[0] == (f"refused: trackd: log: td_log: item \"v\": list of {length} "
                                "elements, limit 3"), lines
        a.wait_for(lambda: a.run_state("lim") == "finished", what="finished")
        assert a.raw_status()["requests_rejected"] == 0
    finally:
        assert a.stop() == 0


# Every spelling YAML 1.1 (PyYAML) reads as a boolean, null or number; as keys
# and as string values they must come back as the same strings (issue #13, item 3).
YAML_WORDS = [s for w in ("y", "n", "yes", "no", "on", "off", "true", "false", "null")
              for s in (w, w.capitalize(), w.upper())] + [
    "~", "1", "-1", "+1", "1.5", "1e3", "1.0e-08", ".inf", "-.Inf", ".NaN", "0x1F", "0o17",
    "012", "0b101", "1_000", "12:30:00", "2024-01-01", "2024-01-01 10:00:00", "=", "<<",
    # and characters YAML does not allow raw in a file (C0/C1 controls, DEL, U+FFFE)
    "a\x7fb", "a\x80b", "a\x9fb", "a\ufffeb", "tab\there", "\U0001f600"]


def test_yaml_reserved_words_stay_strings_in_config_yaml(agent):
    yaml = pytest.importorskip("yaml")
    agent.start()
    config = {w: w for w in YAML_WORDS}
    config["nested"] = {w: [w] for w in YAML_WORDS}
    script = textwrap.dedent(f"""
        import trackd
        run = trackd.init(project="values", id="yamlw", config={config!r}, console=False)
        run.finish()
    """)
    r = subprocess.run([sys.executable, "-c", script], env=python_client_env(agent.env),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    agent.wait_for(lambda: agent.run_state("yamlw") == "finished", what="finished")
    run = agent.query("run", run="yamlw")["run"]
    with open(os.path.join(run["dir"], "config.yaml")) as f:
        text = f.read()
    assert "\n'True':\n  desc: null\n  value: \"True\"\n" in text  # quoted as PyYAML does
    loaded = yaml.safe_load(text)
    assert loaded.pop("wandb_version") == 1
    assert {k: v["value"] for k, v in loaded.items()} == config
