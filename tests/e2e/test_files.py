"""Files and media end to end (issue 16, the local half): real agents and
Python/C clients. Content travels as bytes over the socket into the agent's
blob store (agent/blobs/blobs.h) and is materialised in the run's files/ dir
in W&B's layout; rows hold W&B's objects."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import BIN, Agent, python_client_env, require_bins


def run_python(agent, script, timeout=120, check=True):
    pytest.importorskip("numpy")
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                       env=python_client_env(agent.env), capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert r.returncode == 0, (r.stdout, r.stderr)
    return r


def trackctl(agent, *args, check=True):
    r = subprocess.run([BIN["trackctl"], *args], env=agent.env, capture_output=True,
                       text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"trackctl {args} → {r.returncode}: {r.stderr}"
    return r


def run_dir(agent, run_id):
    out = json.loads(trackctl(agent, "show", run_id, "--json").stdout)
    return out["run"]["dir"] if "run" in out else out["dir"]


def history(agent, run_id):
    d = run_dir(agent, run_id)
    with open(os.path.join(d, "history.jsonl")) as f:
        return [json.loads(line) for line in f]


def metrics(agent):
    """The agent's counters from its /metrics text."""
    import urllib.request
    with urllib.request.urlopen(f"http://{agent.metrics_addr}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


MEDIA = """
    import numpy as np, trackd
    run = trackd.init(project="files", id="{run_id}", console=False)
    for epoch in range(3):
        img = (np.arange(16 * 24 * 3).reshape(16, 24, 3) * (epoch + 1)) % 256
        run.log({{"loss": 1.0 / (epoch + 1),
                 "sample": trackd.Image(img.astype(np.uint8), caption=f"epoch {{epoch}}"),
                 "weights": trackd.Histogram(np.linspace(0, 1, 100) * (epoch + 1)),
                 "preds": trackd.Table(columns=["id", "label"],
                                       data=[[i, f"c{{i % 3}}"] for i in range(5 + epoch)])}})
    run.finish()
"""


def test_media_reach_the_run_dir_in_wandbs_layout(agent):
    agent.start()
    run_python(agent, MEDIA.format(run_id="media1"))
    d = run_dir(agent, "media1")
    rows = history(agent, "media1")
    assert len(rows) == 3
    for step, row in enumerate(rows):
        img = row["sample"]
        assert img["_type"] == "image-file" and img["format"] == "png"
        assert (img["width"], img["height"]) == (24, 16)
        assert img["caption"] == f"epoch {step}"
        assert img["path"] == f"media/images/sample_{step}_{img['sha256'][:20]}.png"
        f = os.path.join(d, "files", img["path"])
        assert os.path.getsize(f) == img["size"]
        assert sha256_file(f) == img["sha256"]
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        hist = row["weights"]
        assert hist["_type"] == "histogram"
        assert len(hist["values"]) == 64 and len(hist["bins"]) == 65
        assert sum(hist["values"]) == 100
        tab = row["preds"]
        assert tab["_type"] == "table-file"
        assert (tab["ncols"], tab["nrows"]) == (2, 5 + step)
        assert tab["path"] == f"media/table/preds_{step}_{tab['sha256'][:20]}.table.json"
        f = os.path.join(d, "files", tab["path"])
        assert sha256_file(f) == tab["sha256"] and os.path.getsize(f) == tab["size"]
        with open(f) as fh:
            t = json.load(fh)
        assert t["columns"] == ["id", "label"] and len(t["data"]) == 5 + step
    files = json.loads(trackctl(agent, "files", "media1", "--json").stdout)
    names = [f["name"] for f in files["files"]]
    assert names == sorted(names) and len(names) == 6
    kinds = {f["kind"] for f in files["files"]}
    assert kinds == {"image", "table"}
    for f in files["files"]:
        assert sha256_file(os.path.join(d, "files", f["name"])) == f["sha256"]
