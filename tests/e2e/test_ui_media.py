"""trackctl ui shows a run's media (issue #16, item 3): images per step with a
step slider, histograms and tables, in a real browser (headless chromium via
tests/e2e/ui/check_media.mjs), and the API that serves the files
(/api/file → the agent's RunFileRead query): bytes as logged, another user's
run refused, names that would leave the run's files/ refused.

As in test_ui.py, the UI runs as nobody (in the agent's access group) and
the run is logged by nobody through the Python package, as examples/train.py
logs; root's run stands for another user's. TRACKD_UI_MEDIA_SCREENSHOT=PATH
saves a screenshot of the media section there."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import urllib.parse

import pytest

from conftest import BIN, python_client_env
from test_ui import (CHROMIUM, GROUP_GID, NOBODY, NODE_MODULES, REPO, Ui, need_browser,
                     shared_agent)  # noqa: F401 (a fixture)

CHECK_SCRIPT = os.path.join(REPO, "tests", "e2e", "ui", "check_media.mjs")
ME = (NOBODY, GROUP_GID)
STEPS = 5
TABLE_ROWS = lambda step: 40 + 30 * step  # noqa: E731 (the last step's is over 100 shown)
BIG = (1 << 20) * 2 + 77  # a saved file over two RunFileRead pieces

MEDIA_RUN = """
    import numpy as np, trackd
    run = trackd.init(project="media", id="{run_id}", console=False)
    for step in range({steps}):
        w = 16 + 8 * step  # each step's image has its own width
        img = (np.arange(12 * w * 3).reshape(12, w, 3) * (step + 3)) % 256
        run.log({{"loss": 1.0 / (step + 1),
                 "samples": trackd.Image(img.astype(np.uint8), caption=f"step {{step}}"),
                 "weights": trackd.Histogram(np.linspace(0, 1, 50) ** (step + 1)),
                 "grid": [trackd.Image(np.full((6, 4), 40 * i + step, dtype=np.uint8),
                                       caption=f"g{{i}} s{{step}}") for i in range(3)],
                 "preds": trackd.Table(columns=["id", "label"],
                                       data=[[i, f"c{{i % 3}}"] for i in range({rows0} + 30 * step)])}})
    {save}
    run.finish()
"""


def log_media_run(a, run_id, user=None, save=""):
    pytest.importorskip("numpy")
    env = python_client_env(a.env)
    script = textwrap.dedent(MEDIA_RUN).format(run_id=run_id, steps=STEPS, rows0=TABLE_ROWS(0),
                                               save=save)
    kw = dict(user=user[0], group=user[1], extra_groups=[]) if user else {}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=300, cwd=a.env["HOME"], **kw)
    assert r.returncode == 0, r.stdout + r.stderr


def rows_of(ui, run_id):
    status, page = ui.get_json(f"/api/history?run={run_id}&keys=samples,weights,preds")
    assert status == 200, page
    return page["lines"]


def file_path(run_id, name):
    return "/api/file?" + urllib.parse.urlencode({"run": run_id, "name": name})


def test_media_in_a_browser(shared_agent):
    need_browser()
    a = shared_agent.start()
    log_media_run(a, "media-mine", user=ME)
    ui = Ui(a, user=ME)
    node = None
    try:
        rows = rows_of(ui, "media-mine")
        assert len(rows) == STEPS
        img_i, hist_i = 3, 1
        image, hist = rows[img_i]["samples"], rows[hist_i]["weights"]
        table = rows[-1]["preds"]
        assert image["width"] == 16 + 8 * img_i
        cfg = {
            "url": ui.url, "node_modules": NODE_MODULES, "chromium": CHROMIUM,
            "run": "media-mine",
            "screenshot": os.environ.get("TRACKD_UI_MEDIA_SCREENSHOT") or None,
            "image": {"key": "samples", "step_index": img_i, "step": rows[img_i]["_step"],
                      "width": image["width"], "sha256": image["sha256"],
                      "caption": f"step {img_i}"},
            "histogram": {"key": "weights", "step_index": hist_i, "values": hist["values"]},
            "table": {"key": "preds", "step_index": STEPS - 1, "nrows": table["nrows"],
                      "shown": 100, "columns": ["id", "label"], "first": ["0", "c0"]},
            "grid": {"key": "grid", "step_index": 2, "count": 3,
                     "captions": ["g0 s2", "g1 s2", "g2 s2"]},
        }
        node = subprocess.Popen(["node", CHECK_SCRIPT, json.dumps(cfg)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        out, err = node.communicate(timeout=180)
        assert node.returncode == 0, f"browser checks failed:\n{out}\n{err}"
        result = json.loads(out.strip().splitlines()[-1])
        assert result["ok"], result
        print(json.dumps(result["facts"]))
    finally:
        if node and node.poll() is None:
            os.killpg(node.pid, 9)
            node.wait()
        ui.stop()


LIVE_RUN = """
import os, time, numpy as np, trackd
run = trackd.init(project="media", id="media-live", console=False)
step = 0
while not os.path.exists({stop!r}) and step < 2000:
    img = np.full((8, 8, 3), step % 256, dtype=np.uint8)
    run.log({{"frames": trackd.Image(img), "loss": 1.0 / (step + 1)}})
    step += 1
    time.sleep(0.2)
run.finish()
"""


def test_media_of_a_live_run_follow_its_steps(shared_agent):
    need_browser()
    pytest.importorskip("numpy")
    a = shared_agent.start()
    stop = os.path.join(a.env["HOME"], "stop-media-live")
    live = subprocess.Popen([sys.executable, "-c", LIVE_RUN.format(stop=stop)],
                            env=python_client_env(a.env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=a.env["HOME"], user=NOBODY,
                            group=GROUP_GID, extra_groups=[])
    ui = Ui(a, user=ME)
    node = None
    try:
        a.wait_for(lambda: a.run_state("media-live") == "running", what="live run")
        a.wait_for(lambda: ui.get_json("/api/history?run=media-live&max=1")[1].get("lines"),
                   what="a first row")
        cfg = {"url": ui.url, "node_modules": NODE_MODULES, "chromium": CHROMIUM,
               "run": "media-live", "live": {"key": "frames"}}
        node = subprocess.Popen(["node", CHECK_SCRIPT, json.dumps(cfg)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        out, err = node.communicate(timeout=180)
        assert node.returncode == 0, f"browser checks failed:\n{out}\n{err}"
        result = json.loads(out.strip().splitlines()[-1])
        assert result["ok"], result
        print(json.dumps(result["facts"]))
    finally:
        if node and node.poll() is None:
            os.killpg(node.pid, 9)
            node.wait()
        open(stop, "w").close()
        out, err = live.communicate(timeout=60)
        assert live.returncode == 0, out + err
        ui.stop()


def test_file_api_bytes_headers_owners_and_names(shared_agent):
    a = shared_agent.start()
    big = os.path.join(a.env["HOME"], "weights.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(BIG))
    os.chmod(big, 0o644)
    save = f"run.save({big!r}, base_path={a.env['HOME']!r}, policy='now')"
    log_media_run(a, "media-api", user=ME, save=save)
    log_media_run(a, "media-root")  # root's: another user's run for nobody
    ui = Ui(a, user=ME)
    try:
        rows = rows_of(ui, "media-api")
        for row in rows:
            for key in ("samples", "preds"):
                obj = row[key]
                status, headers, body = ui.request(file_path("media-api", obj["path"]))
                assert status == 200, body
                assert hashlib.sha256(body).hexdigest() == obj["sha256"]
                assert len(body) == obj["size"] == int(headers["Content-Length"])
                assert headers["Content-Type"] == (
                    "image/png" if key == "samples" else "application/json")
                assert headers["X-Trackd-SHA256"] == obj["sha256"]
                # The headers of every answer: no sniffing, no caching, the CSP.
                assert headers["X-Content-Type-Options"] == "nosniff"
                assert headers["Cache-Control"] == "no-store"
                assert "default-src 'self'" in headers["Content-Security-Policy"]
        # A file over one piece: streamed piece by piece, byte for byte.
        status, headers, body = ui.request(file_path("media-api", "weights.bin"))
        assert status == 200 and headers["Content-Type"] == "application/octet-stream"
        with open(big, "rb") as f:
            assert body == f.read()
        # HEAD: the headers (and length) without the body.
        status, headers, body = ui.request(file_path("media-api", "weights.bin"), method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == BIG
        # Without the cookie: nothing.
        status, _, body = ui.request(file_path("media-api", rows[0]["samples"]["path"]),
                                     cookie=False)
        assert status == 401 and b"PNG" not in body
        # Another user's run: refused by the agent (403), none of its bytes.
        status, theirs = ui.get_json("/api/history?run=media-root&keys=samples")
        assert status == 403, theirs
        root_files = json.loads(subprocess.run(
            [BIN["trackctl"], "files", "media-root", "--json"], env=a.env, capture_output=True,
            text=True, timeout=60, check=True).stdout)["files"]
        image = next(f for f in root_files if f["kind"] == "image")
        status, _, body = ui.request(file_path("media-root", image["name"]))
        assert status == 403 and b"PNG" not in body, body
        # Names that would leave files/: 400 before the agent is asked; a name
        # the run does not list: 404. Never a file outside the run's files/.
        for name in ("../files.jsonl", "/etc/passwd", "media/../../files.jsonl", "..",
                     "media//x.png", "./files.jsonl"):
            status, err = ui.get_json(file_path("media-api", name))
            assert status == 400, (name, status, err)
        for name in ("files.jsonl", "history.jsonl", "media/images/none.png"):
            status, err = ui.get_json(file_path("media-api", name))
            assert status == 404, (name, status, err)
        status, err = ui.get_json("/api/file?run=media-api")
        assert status == 400 and "name" in err["error"]
    finally:
        ui.stop()
