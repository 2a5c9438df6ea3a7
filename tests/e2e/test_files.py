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
    # The Python Api sees the same list.
    r = run_python(agent, """
        import json, trackd
        print(json.dumps(trackd.Api().run("media1").files()))
    """)
    assert json.loads(r.stdout) == files["files"]


def test_trackctl_files_get_gives_the_bytes_verified(agent, tmp_path):
    """RunFileRead through trackctl files --get: each file's bytes as listed,
    a file over one piece (TRACKD_RUN_FILE_READ_MAX, 1 MiB) read in pieces, a
    name that would leave files/ refused, a corrupt file never handed out."""
    agent.start()
    run_python(agent, MEDIA.format(run_id="get1"))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom((1 << 20) * 2 + 5))
    run_python(agent, f"""
        import trackd
        run = trackd.init(project="files", id="get2", console=False)
        run.save({str(big)!r}, base_path={str(tmp_path)!r}, policy="now")
        run.finish()
    """)
    files = json.loads(trackctl(agent, "files", "get1", "--json").stdout)["files"]
    assert files
    for f in files:
        out = tmp_path / "out"
        trackctl(agent, "files", "get1", "--get", f["name"], "-o", str(out))
        assert hashlib.sha256(out.read_bytes()).hexdigest() == f["sha256"]
        assert out.stat().st_size == f["size"]
    # To stdout, in pieces.
    r = subprocess.run([BIN["trackctl"], "files", "get2", "--get", "big.bin"], env=agent.env,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == big.read_bytes()
    for bad in ("../files.jsonl", "/etc/passwd", "media/../../files.jsonl", "nothing.png"):
        r = trackctl(agent, "files", "get1", "--get", bad, check=False)
        assert r.returncode != 0 and r.stdout == "", (bad, r.stdout)
    # A file changed on disk after it was recorded: refused, nothing written.
    d = run_dir(agent, "get1")
    victim = os.path.join(d, "files", files[0]["name"])
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0xFF
    os.unlink(victim)  # the run dir's link, not the blob store's copy
    with open(victim, "wb") as fh:
        fh.write(data)
    out = tmp_path / "corrupt"
    r = trackctl(agent, "files", "get1", "--get", files[0]["name"], "-o", str(out), check=False)
    assert r.returncode != 0 and "corrupt" in r.stderr, r.stderr
    assert not out.exists()


# ---- helpers for raw requests (trackd.proto, hand-encoded) -------------------

from conftest import field_bytes, field_varint  # noqa: E402


def blob_chunk_request(run_id, data, offset=0, size=None, digest=None):
    digest = digest or hashlib.sha256(data).digest()
    chunk = (field_bytes(1, run_id.encode()) + field_bytes(2, digest) +
             field_varint(3, len(data) if size is None else size) + field_varint(4, offset) +
             field_bytes(5, data))
    return field_varint(1, 1) + field_bytes(6, chunk)


def blob_query_request(run_id, *digests):
    q = field_bytes(1, run_id.encode()) + b"".join(field_bytes(2, d) for d in digests)
    return field_varint(1, 1) + field_bytes(5, q)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


SAVE = """
    import os, sys, trackd
    run = trackd.init(project="files", id="{run_id}", console=False)
    d = sys.argv[1] if len(sys.argv) > 1 else "{src}"
    results = {{}}
    for name, size in {files}:
        try:
            run._save_bytes(name, bytes([65 + (size % 26)]) * size, "now")
            results[name] = "ok"
        except Exception as e:
            results[name] = f"{{type(e).__name__}}: {{e}}"
    run.log({{"done": 1}})
    run.finish()
    import json
    print(json.dumps({{"results": results, "report": run.finish_report}}))
"""


def save_files(agent, run_id, files, check=True):
    r = run_python(agent, SAVE.format(run_id=run_id, src="", files=repr(files)), check=check)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_saved_file_names_never_leave_the_files_dir(agent):
    agent.start()
    long_name = "x" * 1025
    out = save_files(agent, "names1", [
        ("model.ckpt", 10), ("/abs/path.txt", 11), ("./sub//dir/./f.bin", 12),
        ("../escape.txt", 13), ("a/../../escape2.txt", 14), ("bad\x01name", 15),
        (long_name, 16), ("x" * 256, 17)])
    res = out["results"]
    assert res["model.ckpt"] == "ok"
    assert res["/abs/path.txt"] == "ok"  # normalised as W&B does: abs/path.txt
    assert res["./sub//dir/./f.bin"] == "ok"
    for bad in ("../escape.txt", "a/../../escape2.txt", "bad\x01name", long_name, "x" * 256):
        assert res[bad].startswith("InvalidValueError") or "not a file name" in res[bad], res
    d = run_dir(agent, "names1")
    names = sorted(f["name"] for f in json.loads(
        trackctl(agent, "files", "names1", "--json").stdout)["files"])
    assert names == ["abs/path.txt", "model.ckpt", "sub/dir/f.bin"]
    for n, size in (("abs/path.txt", 11), ("model.ckpt", 10), ("sub/dir/f.bin", 12)):
        assert os.path.getsize(os.path.join(d, "files", n)) == size
    # Nothing was written outside the run's files dir.
    assert not os.path.exists(os.path.join(d, "escape.txt"))
    assert not os.path.exists(os.path.join(os.path.dirname(d), "escape2.txt"))


def test_agent_refuses_a_saved_file_record_that_escapes(agent):
    """A client that skips libtrackd's check: the agent refuses the batch."""
    from conftest import batch_request
    agent.start()
    digest = hashlib.sha256(b"x").digest()
    for name in (b"../../etc/passwd", b"/etc/passwd", b"a/./b", b"a\x00b", b"n" * 1025):
        saved = field_bytes(1, name) + field_bytes(2, digest) + field_varint(3, 1)
        record = field_bytes(1, b"rawfile1") + field_bytes(10, saved)
        reply = agent.raw(batch_request(os.urandom(16), 1, [record]))[0]
        assert "error" in reply, (name, reply)
        assert reply["error"]["code"] in (2, 3), reply


def test_blob_chunks_are_checked_and_deduplicated(make_agent):
    port = free_port()
    agent = make_agent(f"metrics_listen: 127.0.0.1:{port}\nsystem_metrics:\n  enabled: false\n")
    if True:
        data = os.urandom(5000)
        digest = hashlib.sha256(data).digest()
        q = agent.raw(blob_query_request("dedup1", digest))[0]
        assert q["blob"]["missing"], q
        # A wrong digest: refused retryably, nothing kept.
        bad = agent.raw(blob_chunk_request("dedup1", data, digest=hashlib.sha256(b"no").digest()))[0]
        assert bad["error"]["retryable"] and "SHA-256" in bad["error"]["message"]
        # In two pieces, the second out of order first.
        replies = agent.raw(
            blob_chunk_request("dedup1", data[3000:], offset=3000, size=5000, digest=digest),
            blob_chunk_request("dedup1", data[:3000], size=5000, digest=digest),
            blob_chunk_request("dedup1", data[3000:], offset=3000, size=5000, digest=digest))
        assert replies[0]["blob"]["have"] == 0 and not replies[0]["blob"]["complete"]
        assert replies[1]["blob"]["have"] == 3000
        assert replies[2]["blob"]["complete"], replies
        assert not agent.raw(blob_query_request("dedup1", digest))[0]["blob"]["missing"]
        before = scrape(port)
        # The same content from a client, twice: stored once, no byte sent again.
        out = save_files(agent, "dedup2", [("a.bin", 7000), ("b.bin", 7000)])
        assert out["results"] == {"a.bin": "ok", "b.bin": "ok"}
        mid = scrape(port)
        assert mid["trackd_blob_bytes_received_total"] - before["trackd_blob_bytes_received_total"] == 7000
        out = save_files(agent, "dedup3", [("c.bin", 7000)])
        after = scrape(port)
        assert after["trackd_blob_bytes_received_total"] == mid["trackd_blob_bytes_received_total"]
        assert after["trackd_blobs_known_total"] > mid["trackd_blobs_known_total"]
        d = run_dir(agent, "dedup3")
        assert os.path.getsize(os.path.join(d, "files", "c.bin")) == 7000


@pytest.mark.parametrize("size,ok", [(999, True), (1000, True), (1001, False)])
def test_file_size_limit(make_agent, size, ok):
    agent = make_agent("blobs:\n  max_file_bytes: 1000B\n")
    out = save_files(agent, f"lim{size}", [("f.bin", size)])
    names = [f["name"] for f in json.loads(
        trackctl(agent, "files", f"lim{size}", "--json").stdout)["files"]]
    if ok:
        assert names == ["f.bin"]
    else:
        assert names == []
        assert "blobs.max_file_bytes" in out["report"]["last_error"], out
    # The run itself goes on either way.
    assert [r["done"] for r in history(agent, f"lim{size}")] == [1]


@pytest.mark.parametrize("second,ok", [(499, True), (500, True), (501, False)])
def test_run_total_limit(make_agent, second, ok):
    agent = make_agent("blobs:\n  max_run_bytes: 1000B\n")
    out = save_files(agent, f"tot{second}", [("a.bin", 500), ("b.bin", second)])
    names = [f["name"] for f in json.loads(
        trackctl(agent, "files", f"tot{second}", "--json").stdout)["files"]]
    assert names == (["a.bin", "b.bin"] if ok else ["a.bin"])
    if not ok:
        assert "blobs.max_run_bytes" in out["report"]["last_error"], out


def test_a_chunk_for_another_users_run_is_refused(tmp_path):
    import tempfile
    import shutil
    require_bins()
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    sock_dir = tempfile.mkdtemp(prefix="trackd-files-")
    os.chmod(sock_dir, 0o755)
    os.chmod(tmp_path, 0o755)
    agent = Agent(tmp_path, socket_dir=sock_dir,
                  config="socket_mode: 0666\naccess:\n  group: audio\n")
    agent.start()
    try:
        save_files(agent, "rootrun", [("mine.txt", 10)])
        data = b"intruder" * 10
        reply = agent.raw(blob_chunk_request("rootrun", data), as_user=(65533, 29))[0]
        assert reply["error"]["code"] == 6, reply  # PERMISSION_DENIED
        assert "another user" in reply["error"]["message"]
        reply = agent.raw(blob_query_request("rootrun", hashlib.sha256(data).digest()),
                          as_user=(65533, 29))[0]
        assert reply["error"]["code"] == 6, reply
        # Its own run: stored in its own store, which root's runs never read.
        reply = agent.raw(blob_chunk_request("otherrun", data), as_user=(65533, 29))[0]
        assert reply["blob"]["complete"], reply
        assert os.path.exists(os.path.join(agent.state_dir, "blobs", "65533",
                                           hashlib.sha256(data).hexdigest()))
        assert not os.path.exists(os.path.join(agent.state_dir, "blobs", "0",
                                               hashlib.sha256(data).hexdigest()))
    finally:
        agent.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_planted_symlinks_do_not_redirect_writes(agent, tmp_path):
    agent.start()
    target = tmp_path / "elsewhere"
    target.mkdir()
    # A run with a file, then symlinks planted in its run dir: media/ and a
    # saved file's name pointing outside.
    save_files(agent, "plant1", [("first.txt", 5)])
    d = run_dir(agent, "plant1")
    os.symlink(str(target), os.path.join(d, "files", "media"))
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    os.symlink(str(victim), os.path.join(d, "files", "second.txt"))
    r = run_python(agent, """
        import numpy as np, trackd
        run = trackd.init(project="files", id="plant1", resume="allow", console=False)
        run._save_bytes("second.txt", b"new content", "now")
        run.log({"img": trackd.Image(np.zeros((4, 4), dtype=np.uint8))})
        run.finish()
    """)
    assert os.listdir(target) == []
    assert victim.read_text() == "untouched"
    second = os.path.join(d, "files", "second.txt")
    assert not os.path.islink(second)
    with open(second, "rb") as f:
        assert f.read() == b"new content"
    # A symlink planted as the blob store of a uid: refused, nothing written there.
    blobs_root = os.path.join(agent.state_dir, "blobs")
    shutil_target = tmp_path / "blobs-elsewhere"
    shutil_target.mkdir()
    os.symlink(str(shutil_target), os.path.join(blobs_root, "4242"))

    os.symlink(str(shutil_target), os.path.join(blobs_root, "0", "tmp-link-unused"))
    tmp_dir = os.path.join(blobs_root, "0", "tmp")
    if os.path.isdir(tmp_dir):
        import shutil
        shutil.rmtree(tmp_dir)
    os.symlink(str(shutil_target), tmp_dir)  # the partial files' dir, planted
    reply = agent.raw(blob_chunk_request("plant1", b"planted partial"))[0]
    assert "error" in reply, reply
    assert os.listdir(shutil_target) == []


BIG = """
    import hashlib, json, os, sys, time, trackd
    data = os.urandom({size})
    run = trackd.init(project="files", id="{run_id}", console=False)
    t0 = time.monotonic()
    run._save_bytes("big.bin", data, "now")
    slowest = time.monotonic() - t0
    print("queued", flush=True)
    for i in range({rows}):
        t = time.monotonic()
        run.log({{"i": i}})
        slowest = max(slowest, time.monotonic() - t)
        time.sleep({pause})
    run.finish(timeout=120)
    print(json.dumps({{"sha256": hashlib.sha256(data).hexdigest(), "slowest": slowest,
                      "report": run.finish_report}}))
"""


def start_python(agent, script):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)],
                            env=python_client_env(agent.env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def partials(agent):
    tmp = os.path.join(agent.state_dir, "blobs", str(os.geteuid()), "tmp")
    try:
        return [os.path.join(tmp, n) for n in os.listdir(tmp) if n.endswith(".part")]
    except FileNotFoundError:
        return []


def test_disk_budget_full_while_a_file_is_in_flight(make_agent):
    """The file and the batches behind it are refused retryably at the
    budget; the training loop goes on; once the budget is raised (a reload)
    everything arrives."""
    pytest.importorskip("numpy")
    agent = make_agent("limits:\n  max_message_bytes: 256KiB\n"
                       "txlog:\n  max_bytes: 2MiB\n  segment_bytes: 64KiB\n"
                       "system_metrics:\n  enabled: false\n")
    p = start_python(agent, BIG.format(size=3 << 20, run_id="budget1", rows=30, pause=0.1))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not partials(agent):
            time.sleep(0.05)
        assert partials(agent), "the file never started arriving"
        time.sleep(2)  # the client keeps being refused meanwhile
        stuck = partials(agent)
        assert stuck and os.path.getsize(stuck[0]) < 3 << 20, "the budget did not stop it"
        assert p.poll() is None, "the client gave up"
        with open(agent.config_path, "w") as f:
            f.write("limits:\n  max_message_bytes: 256KiB\n"
                    "txlog:\n  max_bytes: 256MiB\n  segment_bytes: 64KiB\n"
                    "system_metrics:\n  enabled: false\n")
        agent.proc.send_signal(__import__("signal").SIGHUP)
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["slowest"] < 1.0, res  # log() never waited for the agent
    assert res["report"]["records_unacked"] == 0, res
    d = run_dir(agent, "budget1")
    assert sha256_file(os.path.join(d, "files", "big.bin")) == res["sha256"]
    assert [r["i"] for r in history(agent, "budget1")] == list(range(30))


def test_agent_kill9_mid_file_then_the_file_arrives_once_intact(make_agent):
    pytest.importorskip("numpy")
    agent = make_agent("system_metrics:\n  enabled: false\n")
    p = start_python(agent, BIG.format(size=60 << 20, run_id="kill1", rows=5, pause=0.01))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not partials(agent):
            time.sleep(0.002)
        caught = bool(partials(agent))
        agent.kill9()
        agent.proc.wait()
        time.sleep(0.5)
        agent.start()
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["report"]["records_unacked"] == 0, res
    d = run_dir(agent, "kill1")
    assert sha256_file(os.path.join(d, "files", "big.bin")) == res["sha256"]
    files = json.loads(trackctl(agent, "files", "kill1", "--json").stdout)["files"]
    assert [f["name"] for f in files] == ["big.bin"]
    assert files[0]["sha256"] == res["sha256"]
    assert caught, "the kill came after the file was complete: nothing was tested"
    assert not partials(agent)


def test_example_train_py_logs_media_in_wandbs_layout(agent):
    """examples/train.py: an image, a histogram and a table per epoch; the run
    dir holds the files at W&B's paths and the rows W&B's objects."""
    agent.start()
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "train.py")
    r = subprocess.run([sys.executable, script], env=python_client_env(agent.env),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    runs = json.loads(trackctl(agent, "runs", "--json").stdout)["runs"]
    loop = [x for x in runs if x["history_lines"] == 10]
    assert len(loop) == 1, runs
    run_id, d = loop[0]["id"], loop[0]["dir"]
    rows = history(agent, run_id)
    listed = {f["name"]: f for f in json.loads(
        trackctl(agent, "files", run_id, "--json").stdout)["files"]}
    for step, row in enumerate(rows):
        img, hist, tab = row["sample"], row["weights"], row["predictions"]
        assert set(img) == {"_type", "format", "width", "height", "path", "sha256", "size",
                            "caption"}
        assert (img["_type"], img["format"], img["width"], img["height"]) == \
            ("image-file", "png", 8, 8)
        assert img["path"] == f"media/images/sample_{step}_{img['sha256'][:20]}.png"
        assert set(hist) == {"_type", "values", "bins"} and hist["_type"] == "histogram"
        assert len(hist["bins"]) == len(hist["values"]) + 1 == 65
        assert set(tab) == {"_type", "path", "sha256", "size", "ncols", "nrows"}
        assert tab["path"] == f"media/table/predictions_{step}_{tab['sha256'][:20]}.table.json"
        assert (tab["ncols"], tab["nrows"]) == (3, 5)
        for obj in (img, tab):
            f = os.path.join(d, "files", obj["path"])
            assert sha256_file(f) == obj["sha256"] and os.path.getsize(f) == obj["size"]
            assert listed[obj["path"]]["sha256"] == obj["sha256"]
    show = trackctl(agent, "show", run_id).stdout
    media = show.split("Media (files: trackctl files RUN)\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split() for line in media.splitlines()] == [
        ["sample", "image-file"], ["weights", "histogram"], ["predictions", "table-file"]]


def test_run_save_policies_log_code_and_run_dir(agent, tmp_path):
    """run.save (now/end/live), run.log_code and run.dir: files the client
    reads as the user; run.dir is writable at once and saved at finish."""
    agent.start()
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "train_me.py").write_text("print('main')\n")
    (src / "pkg" / "mod.py").write_text("X = 1\n")
    (src / "notes.txt").write_text("not code\n")
    (src / "ckpt").mkdir()
    (src / "ckpt" / "a.ckpt").write_bytes(b"A" * 100)
    (src / "ckpt" / "b.ckpt").write_bytes(b"B" * 200)
    r = run_python(agent, f"""
        import os, trackd
        run = trackd.init(project="files", id="save1", console=False)
        assert os.path.isdir(run.dir) and os.access(run.dir, os.W_OK), run.dir
        assert not run.dir.startswith({agent.state_dir!r})
        with open(os.path.join(run.dir, "left.txt"), "w") as f:
            f.write("left in run.dir")
        print(sorted(run.save({str(src / 'ckpt' / '*.ckpt')!r}, policy="now")))
        with open({str(src / 'later.txt')!r}, "w") as f:
            f.write("v1")
        run.save({str(src / 'later.txt')!r}, policy="end")
        with open({str(src / 'later.txt')!r}, "w") as f:
            f.write("v2 at the end")
        print(sorted(run.log_code(root={str(src)!r})))
        run.finish()
    """)
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "['a.ckpt', 'b.ckpt']"
    assert lines[1] == "['code/pkg/mod.py', 'code/train_me.py']"
    d = run_dir(agent, "save1")
    files = {f["name"]: f for f in json.loads(
        trackctl(agent, "files", "save1", "--json").stdout)["files"]}
    assert sorted(files) == ["a.ckpt", "b.ckpt", "code/pkg/mod.py", "code/train_me.py",
                             "later.txt", "left.txt"]
    with open(os.path.join(d, "files", "later.txt")) as f:
        assert f.read() == "v2 at the end"
    with open(os.path.join(d, "files", "left.txt")) as f:
        assert f.read() == "left in run.dir"
    assert files["b.ckpt"]["size"] == 200 and files["b.ckpt"]["kind"] == "file"


def test_a_list_of_images_is_wandbs_images_separated(agent):
    agent.start()
    run_python(agent, """
        import numpy as np, trackd
        run = trackd.init(project="files", id="list1", console=False)
        imgs = [trackd.Image(np.full((6, 4), 40 * i, dtype=np.uint8), caption=f"n{i}")
                for i in range(3)]
        run.log({"grid": imgs})
        run.finish()
    """)
    row = history(agent, "list1")[0]
    g = row["grid"]
    assert g["_type"] == "images/separated"
    assert (g["width"], g["height"], g["format"], g["count"]) == (4, 6, "png", 3)
    assert g["captions"] == ["n0", "n1", "n2"]
    d = run_dir(agent, "list1")
    listed = {f["name"]: f for f in json.loads(
        trackctl(agent, "files", "list1", "--json").stdout)["files"]}
    for name in g["filenames"]:
        assert name.startswith("media/images/grid_0_") and name.endswith(".png")
        f = os.path.join(d, "files", name)
        assert sha256_file(f) == listed[name]["sha256"] and listed[name]["kind"] == "image"
        assert name[len("media/images/grid_0_"):-4] == listed[name]["sha256"][:20]


def test_live_files_are_sent_again_when_they_change(agent, tmp_path):
    agent.start()
    f = tmp_path / "metrics.csv"
    f.write_text("v1\n")
    run_python(agent, f"""
        import time, trackd
        run = trackd.init(project="files", id="live1", console=False)
        run.LIVE_POLL_S = 0.2
        run.save({str(f)!r}, policy="live")
        time.sleep(0.5)
        open({str(f)!r}, "w").write("v2 changed\\n")
        time.sleep(1.5)
        open({str(f)!r}, "w").write("v3 at the end\\n")
        run.finish()
    """)
    d = run_dir(agent, "live1")
    with open(os.path.join(d, "files.jsonl")) as fh:
        sent = [json.loads(line)["sha256"] for line in fh]
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    assert sha("v1\n") in sent and sha("v2 changed\n") in sent, sent
    assert sent[-1] == sha("v3 at the end\n")
    with open(os.path.join(d, "files", "metrics.csv")) as fh:
        assert fh.read() == "v3 at the end\n"


def test_files_left_at_finish_without_a_spool_are_reported(agent, tmp_path):
    """Spooling off: finish says how many files are lost."""
    env = dict(python_client_env(agent.env), TRACKD_NO_AUTOSTART="1",
               XDG_STATE_HOME=str(tmp_path / "xdg"))
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import json, numpy as np, trackd
        run = trackd.init(project="files", id="noagent1", console=False, spool_dir="")
        run.log({"img": trackd.Image(np.zeros((2, 2), dtype=np.uint8))})
        run.finish(timeout=1)
        print(json.dumps(run.finish_report))
    """)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert "1 file(s) not delivered and not spooled" in rep["last_error"], rep


def test_files_queued_at_finish_are_spooled_and_delivered_later(agent, tmp_path):
    """No agent at finish: the rows and the files go to the spool; once an
    agent is there, trackctl spool flush delivers the files, then the rows."""
    env = dict(python_client_env(agent.env), TRACKD_NO_AUTOSTART="1",
               XDG_STATE_HOME=str(tmp_path / "xdg"))
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import hashlib, json, numpy as np, trackd
        run = trackd.init(project="files", id="spool1", console=False)
        img = np.arange(64, dtype=np.uint8).reshape(8, 8)
        run.log({"img": trackd.Image(img), "x": 1})
        run._save_bytes("notes.txt", b"spooled file", "now")
        with open("{tmp}/weights.bin", "wb") as f:
            f.write(bytes(range(256)) * 4096)
        run.save("{tmp}/weights.bin", policy="now")  # a spool copy, named at finish
        run.finish(timeout=1)
        print(json.dumps(run.finish_report))
    """).replace("{tmp}", str(tmp_path))], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert "not delivered" not in rep["last_error"], rep
    assert rep["records_spooled"] > 0
    spooled = [n for root, _, names in os.walk(tmp_path / "xdg") for n in names
               if n.endswith(".blob")]
    assert len(spooled) == 3, spooled
    agent.start()
    f = subprocess.run([BIN["trackctl"], "spool", "flush"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert f.returncode == 0, f.stderr
    row = history(agent, "spool1")[0]
    d = run_dir(agent, "spool1")
    img = os.path.join(d, "files", row["img"]["path"])
    assert sha256_file(img) == row["img"]["sha256"]
    with open(os.path.join(d, "files", "notes.txt"), "rb") as fh:
        assert fh.read() == b"spooled file"
    with open(os.path.join(d, "files", "weights.bin"), "rb") as fh:
        assert fh.read() == bytes(range(256)) * 4096
    left = [n for root, _, names in os.walk(tmp_path / "xdg") for n in names
            if n.endswith(".blob")]
    assert left == []


def test_run_save_of_files_over_the_memory_buffer_delivers_every_one(agent, tmp_path):
    """run.save copies files into the spool dir, not memory: three files of
    max_buffer_bytes + 1 (64 MiB + 1 byte, the default; 192 MiB queued at
    once, three times what memory may hold) all arrive, byte for byte, and no
    copy is left behind."""
    size = (64 << 20) + 1
    digests = {}
    for i in range(3):
        data = os.urandom(1 << 20) * 64 + bytes([i])
        assert len(data) == size
        (tmp_path / f"ckpt{i}.bin").write_bytes(data)
        digests[f"ckpt{i}.bin"] = hashlib.sha256(data).hexdigest()
    xdg = tmp_path / "xdg"
    env = dict(python_client_env(agent.env), XDG_STATE_HOME=str(xdg))
    agent.start()
    r = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", textwrap.dedent(f"""
        import json, trackd
        run = trackd.init(project="files", id="bigsave1", console=False)
        print(json.dumps(sorted(run.save({str(tmp_path / '*.bin')!r}, policy="now"))))
        run.finish()
        print(json.dumps(run.finish_report))
    """)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0]) == sorted(digests)
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["records_rejected"] == 0 and not rep["last_error"], rep
    d = run_dir(agent, "bigsave1")
    for name, digest in digests.items():
        agent.wait_for(lambda: os.path.exists(os.path.join(d, "files", name)), timeout=60,
                       what=f"{name} in the run dir")
        assert sha256_file(os.path.join(d, "files", name)) == digest, name
    left = [n for root, _, names in os.walk(xdg) for n in names if n.endswith(".blob")]
    assert left == [], left


def test_a_killed_client_leaves_no_file_copies_in_the_spool(agent, tmp_path):
    """The copies run.save makes are unnamed files: a client killed with
    files still queued (no agent to take them) leaves nothing behind."""
    (tmp_path / "w.bin").write_bytes(os.urandom(1 << 20))
    xdg = tmp_path / "xdg"
    env = dict(python_client_env(agent.env), TRACKD_NO_AUTOSTART="1", XDG_STATE_HOME=str(xdg))
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, trackd
        run = trackd.init(project="files", id="killsave1", console=False)
        run.save({str(tmp_path / 'w.bin')!r}, policy="now")
        print("saved", flush=True)
        time.sleep(60)
    """)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "saved"
        files = [os.path.join(root, n) for root, _, names in os.walk(xdg) for n in names]
        assert not [f for f in files if f.endswith(".blob")], files
    finally:
        p.kill()
        p.wait()
    files = [os.path.join(root, n) for root, _, names in os.walk(xdg) for n in names]
    assert not [f for f in files if "/files/" in f], files


def test_run_save_waits_for_room_rather_than_dropping_a_file(agent, tmp_path):
    """With the file queue full (max_spool_bytes of 1 MiB, no agent yet), more
    saves are deferred, never dropped: once an agent is there they go in
    order, and every file arrives."""
    for i in range(6):
        (tmp_path / f"part{i}.bin").write_bytes(bytes([i]) * (400 << 10))
    env = dict(python_client_env(agent.env), XDG_STATE_HOME=str(tmp_path / "xdg"),
               TRACKD_NO_AUTOSTART="1")
    p = subprocess.Popen([sys.executable, "-W", "error::RuntimeWarning", "-c",
                          textwrap.dedent(f"""
        import json, sys, trackd
        run = trackd.init(project="files", id="defer1", console=False,
                          max_spool_bytes=1 << 20)
        names = run.save({str(tmp_path / 'part*.bin')!r}, policy="now")
        print(json.dumps([names, sorted(run._deferred)]), flush=True)
        sys.stdin.readline()
        run.finish(timeout=60)
        print(json.dumps(run.finish_report), flush=True)
    """)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        names, deferred = json.loads(p.stdout.readline())
        assert len(names) == 6
        assert deferred == [f"part{i}.bin" for i in range(2, 6)], deferred  # 2 fit in 1 MiB
        agent.start()
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    rep = json.loads(out.strip().splitlines()[-1])
    assert rep["records_rejected"] == 0 and rep["files_not_saved"] == [], rep
    d = run_dir(agent, "defer1")
    for i in range(6):
        path = os.path.join(d, "files", f"part{i}.bin")
        agent.wait_for(lambda: os.path.exists(path), timeout=60, what=path)
        with open(path, "rb") as fh:
            assert fh.read() == bytes([i]) * (400 << 10)


def test_init_buffer_bounds_are_checked(agent):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import trackd
        for bad in (0, -1, 1.5, True):
            try:
                trackd.init(project="files", max_spool_bytes=bad, mode="offline")
            except ValueError as e:
                assert "max_spool_bytes" in str(e), e
            else:
                raise SystemExit(f"{bad!r} accepted")
    """)], env=python_client_env(agent.env), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_histogram_bins_and_table_rows_limits(agent):
    """512 bins and 10,000 table rows at most (W&B's), at limit-1/limit/limit+1,
    in Python and in libtrackd (a td_media passed straight through ctypes)."""
    agent.start()
    r = run_python(agent, """
        import ctypes, json, trackd
        from trackd import _lib, _media
        out = {}
        run = trackd.init(project="files", id="caps1", console=False)
        for bins in (511, 512, 513):
            try:
                run.log({f"h{bins}": trackd.Histogram(list(range(1000)), num_bins=bins)})
                out[f"py_bins_{bins}"] = "ok"
            except trackd.InvalidValueError as e:
                out[f"py_bins_{bins}"] = str(e)
        for rows in (9999, 10000, 10001):
            try:
                trackd.Table(columns=["a"], data=[[i] for i in range(rows)])
                out[f"py_rows_{rows}"] = "ok"
            except trackd.InvalidValueError as e:
                out[f"py_rows_{rows}"] = str(e)
        # libtrackd's own checks, bypassing the Python ones.
        for bins in (512, 513):
            m = _lib.TdMedia()
            m.kind = _lib.TD_MEDIA_HISTOGRAM
            vals = (ctypes.c_double * 10)(*range(10))
            m.values, m.n_values, m.num_bins = vals, 10, bins
            item = (_lib.TdItem * 1)()
            item[0].key = b"raw"
            item[0].type = _lib.TD_MEDIA
            item[0].v.media = ctypes.pointer(m)
            rc = _lib.lib().td_log(run._handle, item, 1, -1, True)
            out[f"c_bins_{bins}"] = rc
        for rows in (10000, 10001):
            m = _lib.TdMedia()
            m.kind = _lib.TD_MEDIA_TABLE
            text = b'{"columns":["a"],"data":[]}'
            m.data = ctypes.cast(ctypes.c_char_p(text), ctypes.c_void_p)
            m.len, m.ncols, m.nrows = len(text), 1, rows
            item = (_lib.TdItem * 1)()
            item[0].key = b"rawt"
            item[0].type = _lib.TD_MEDIA
            item[0].v.media = ctypes.pointer(m)
            out[f"c_rows_{rows}"] = _lib.lib().td_log(run._handle, item, 1, -1, True)
        run.finish()
        print(json.dumps(out))
    """)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["py_bins_511"] == out["py_bins_512"] == "ok"
    assert "512" in out["py_bins_513"]
    assert out["py_rows_9999"] == out["py_rows_10000"] == "ok"
    assert "10000" in out["py_rows_10001"]
    assert out["c_bins_512"] == 0 and out["c_bins_513"] == -1  # TD_ERR_INVALID
    assert out["c_rows_10000"] == 0 and out["c_rows_10001"] == -1
    rows = history(agent, "caps1")
    h = next(r["h512"] for r in rows if "h512" in r)
    assert len(h["values"]) == 512 and len(h["bins"]) == 513
