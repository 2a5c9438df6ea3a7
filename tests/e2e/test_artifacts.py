"""Artifacts end to end (issue 17, the local half): real agents, real Python
clients and trackctl. A version's files are blobs of the logging user's store
(agent/blobs/blobs.h), hard-linked into the agent's artifact store
(agent/artifacts/artifacts.h); versions, aliases and lineage per name and
project; downloads checked against the manifest's digests."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from conftest import BIN, Agent, python_client_env, require_bins


def py(agent, script, timeout=120, check=True, **kw):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                       env=python_client_env(agent.env), capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, (r.stdout, r.stderr)
    return r


def last_json(r):
    return json.loads(r.stdout.strip().splitlines()[-1])


def trackctl(agent, *args, check=True, **kw):
    r = subprocess.run([BIN["trackctl"], *args], env=agent.env, capture_output=True,
                       text=True, timeout=120, **kw)
    if check:
        assert r.returncode == 0, f"trackctl {args} → {r.returncode}: {r.stderr}"
    return r


def versions(agent, **filters):
    args = ["artifacts", "--json"]
    for k, v in filters.items():
        args += [f"--{k}", v]
    return json.loads(trackctl(agent, *args).stdout)["artifacts"]


def blob_count(agent):
    d = os.path.join(agent.state_dir, "blobs", str(os.geteuid()))
    return len([n for n in os.listdir(d) if len(n) == 64])


def wandb_digest(files):
    """W&B's artifact digest, computed here from the rule (WANDB-FEATURES.md
    §3), independently of the agent's and the package's code."""
    lines = "".join(f"{name}:{base64.b64encode(hashlib.md5(data).digest()).decode()}\n"
                    for name, data in sorted(files.items()))
    return hashlib.md5(("wandb-artifact-manifest-v1\n" + lines).encode()).hexdigest()


LOG = """
    import json, os, sys, trackd
    run = trackd.init(project="arts", id="{run_id}", console=False)
    a = trackd.Artifact("{name}", "dataset", description="d", metadata={{"rows": 3}})
    a.add_dir("{src}")
    run.log_artifact(a, aliases={aliases})
    a.wait()
    out = {{"version": a.version, "aliases": a.aliases, "digest": a.digest}}
    run.finish()
    print(json.dumps(out))
"""


def log_files(agent, tmp_path, run_id, files, aliases=("latest",), name="ds"):
    src = tmp_path / f"src-{run_id}"
    shutil.rmtree(src, ignore_errors=True)
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return last_json(py(agent, LOG.format(src=src, run_id=run_id,
                                          aliases=list(aliases), name=name)))


def test_versions_dedup_aliases_lineage(make_agent, tmp_path):
    agent = make_agent("system_metrics:\n  enabled: false\n")
    model = os.urandom(300_000)
    files = {"model.bin": model, "cfg/a.json": b'{"a":1}', "readme.txt": b"hello"}
    first = log_files(agent, tmp_path, "art1", files, aliases=["latest", "best"])
    assert first["version"] == "v0"
    assert first["digest"] == wandb_digest(files)
    blobs_after_v0 = blob_count(agent)

    # The same content from another run: the same version, no new blob.
    again = log_files(agent, tmp_path, "art2", files, aliases=["latest", "again"])
    assert again["version"] == "v0"
    assert blob_count(agent) == blobs_after_v0
    assert [v["version"] for v in versions(agent)] == [0]

    # One changed file: v1, exactly one blob more; latest moves, best stays.
    changed = dict(files, **{"readme.txt": b"hello, again"})
    second = log_files(agent, tmp_path, "art3", changed)
    assert second["version"] == "v1"
    assert second["digest"] == wandb_digest(changed)
    assert blob_count(agent) == blobs_after_v0 + 1
    vs = {v["version"]: v for v in versions(agent)}
    assert sorted(vs) == [0, 1]
    assert sorted(vs[0]["aliases"]) == ["again", "best"]
    assert vs[1]["aliases"] == ["latest"]
    # The unchanged model is one inode in both versions and the blob store.
    store = os.path.join(agent.state_dir, "artifacts", str(os.geteuid()))
    p0 = [os.path.join(r, f) for r, _, fs in os.walk(store) for f in fs
          if f == "model.bin" and "/v0/" in r + "/"]
    p1 = [os.path.join(r, f) for r, _, fs in os.walk(store) for f in fs
          if f == "model.bin" and "/v1/" in r + "/"]
    assert os.stat(p0[0]).st_ino == os.stat(p1[0]).st_ino

    # Lineage: a second run uses ds:best (v0).
    r = py(agent, """
        import json, trackd
        run = trackd.init(project="arts", id="user1", console=False)
        a = run.use_artifact("ds:best")
        out = {"version": a.version, "files": sorted(e.path for e in a.files()),
               "meta": a.metadata, "digest": a.digest}
        run.finish()
        print(json.dumps(out))
    """)
    used = last_json(r)
    assert used == {"version": "v0", "files": ["cfg/a.json", "model.bin", "readme.txt"],
                    "meta": {"rows": 3}, "digest": wandb_digest(files)}
    show = json.loads(trackctl(agent, "artifact", "show", "ds:v0", "--json").stdout)
    info = show["artifact"]
    assert info["logged_by"].endswith("/arts/art1")
    assert [u.rsplit("/", 1)[1] for u in info["used_by"]] == ["user1"]
    assert json.loads(show["manifest_json"])["storagePolicy"] == "wandb-storage-policy-v1"
    text = trackctl(agent, "artifact", "show", "ds:v0").stdout
    assert "logged by" in text and "user1" in text and "art1" in text
    # The runs' side of the lineage.
    run_dir = json.loads(trackctl(agent, "show", "user1", "--json").stdout)["run"]["dir"]
    with open(os.path.join(run_dir, "artifacts.jsonl")) as f:
        assert json.loads(f.readline())["used"] == info["path"]
    # Api().artifact / artifacts.
    r = py(agent, """
        import json, trackd
        api = trackd.Api()
        a = api.artifact("arts/ds:latest")
        print(json.dumps({"v": a.version, "all": [x.version for x in api.artifacts("dataset", "ds")],
                          "none": len(api.artifacts("model"))}))
    """)
    assert last_json(r) == {"v": "v1", "all": ["v0", "v1"], "none": 0}


def test_get_checks_every_file_and_refuses_a_damaged_blob(make_agent, tmp_path):
    agent = make_agent("system_metrics:\n  enabled: false\n")
    files = {"w.bin": os.urandom(2_500_000), "sub/x.txt": b"x" * 10}
    log_files(agent, tmp_path, "get1", files)
    out = tmp_path / "out"
    trackctl(agent, "artifact", "get", "ds:latest", str(out))
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    # Damage the blob in the store (same size; the version's file is the same
    # inode): the download notices, names it, and leaves nothing under its name.
    blob = os.path.join(agent.state_dir, "blobs", str(os.geteuid()),
                        hashlib.sha256(files["w.bin"]).hexdigest())
    with open(blob, "r+b") as f:
        f.seek(1_000_000)
        f.write(b"\0\1\2\3")
    out2 = tmp_path / "out2"
    r = trackctl(agent, "artifact", "get", "ds:v0", str(out2), check=False)
    assert r.returncode == 1
    assert "damaged" in r.stderr and "w.bin" in r.stderr, r.stderr
    assert not (out2 / "w.bin").exists()
    assert not [n for n in os.listdir(out2) if n.endswith(".trackd-part")]
    r = py(agent, f"""
        import trackd
        a = trackd.Api().artifact("ds:v0")
        try:
            a.download("{tmp_path / 'out3'}")
        except trackd.ArtifactCorruptError as e:
            print("corrupt", e)
    """)
    assert "corrupt" in r.stdout and "w.bin" in r.stdout


def test_another_users_artifact_is_refused(tmp_path):
    require_bins()
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    sock_dir = tempfile.mkdtemp(prefix="trackd-arts-")
    os.chmod(sock_dir, 0o755)
    os.chmod(tmp_path, 0o755)
    agent = Agent(tmp_path, socket_dir=sock_dir,
                  config="socket_mode: 0666\naccess:\n  group: audio\n"
                         "system_metrics:\n  enabled: false\n")
    agent.start()
    try:
        info = log_files(agent, tmp_path, "perm1", {"secret.txt": b"s3cret"})
        assert info["version"] == "v0"
        path = versions(agent)[0]["path"]

        def as_other():
            os.setgid(29)
            os.setuid(65533)
        env = dict(agent.env, TRACKD_NO_AUTOSTART="1", HOME="/tmp")
        for args in (["artifact", "show", path], ["artifact", "get", path, "/tmp/x-nope"]):
            r = subprocess.run([BIN["trackctl"], *args], env=env, capture_output=True,
                               text=True, timeout=60, preexec_fn=as_other)
            assert r.returncode == 1, r
            assert "another user" in r.stderr, r.stderr
        r = subprocess.run([BIN["trackctl"], "artifacts", "--json"], env=env,
                           capture_output=True, text=True, timeout=60, preexec_fn=as_other)
        assert json.loads(r.stdout)["artifacts"] == [], r
        assert not os.path.exists("/tmp/x-nope/secret.txt")
    finally:
        agent.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


BIG = """
    import json, os, trackd
    run = trackd.init(project="arts", id="{run_id}", console=False)
    a = trackd.Artifact("big", "model")
    for i in range({n}):
        a.add_file("{src}/f%d.bin" % i)
    run.log_artifact(a)
    run.finish(timeout=120)
    print(json.dumps({{"report": run.finish_report, "digest": a.digest}}))
"""


def test_agent_kill9_mid_log_then_one_version_after_replay(make_agent, tmp_path):
    agent = make_agent("system_metrics:\n  enabled: false\n")
    src = tmp_path / "big"
    src.mkdir()
    n = 12
    for i in range(n):
        (src / f"f{i}.bin").write_bytes(os.urandom(4 << 20))
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(BIG.format(
        run_id="kill1", n=n, src=src))], env=python_client_env(agent.env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        blobs = os.path.join(agent.state_dir, "blobs", str(os.geteuid()))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                not os.path.isdir(blobs) or
                len([x for x in os.listdir(blobs) if len(x) == 64]) < 2):
            time.sleep(0.005)
        stored = len([x for x in os.listdir(blobs) if len(x) == 64])
        assert 2 <= stored < n, "the kill came too late to be mid-log"
        assert versions(agent) == [], "a partial version is visible"
        agent.kill9()
        time.sleep(0.3)
        agent.start()
        out, err = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["report"]["records_unacked"] == 0, res
    vs = agent.wait_for(lambda: versions(agent), what="the version")
    assert [v["version"] for v in vs] == [0]
    assert vs[0]["digest"] == res["digest"] and vs[0]["file_count"] == n
    # A kill -9 now (before or after the local sink's checkpoint): the replay
    # of the log assigns the same version, once.
    agent.kill9()
    agent.start()
    assert [(v["version"], v["digest"]) for v in versions(agent)] == [(0, res["digest"])]
    out_dir = tmp_path / "got"
    trackctl(agent, "artifact", "get", "big:v0", str(out_dir))
    for i in range(n):
        assert (out_dir / f"f{i}.bin").read_bytes() == (src / f"f{i}.bin").read_bytes()


def test_a_file_over_the_blob_limit_makes_no_version(make_agent, tmp_path):
    """blobs.max_file_bytes refuses the file for good: the record arrives
    without it, and the agent makes no version (none partial)."""
    agent = make_agent("blobs:\n  max_file_bytes: 1000B\nsystem_metrics:\n  enabled: false\n")
    r = py(agent, f"""
        import json, trackd
        open("{tmp_path}/ok.bin", "wb").write(b"a" * 999)
        open("{tmp_path}/big.bin", "wb").write(b"b" * 1001)
        run = trackd.init(project="arts", id="lim1", console=False)
        a = trackd.Artifact("lim", "dataset")
        a.add_file("{tmp_path}/ok.bin")
        a.add_file("{tmp_path}/big.bin")
        run.log_artifact(a)
        run.finish()
        print(json.dumps(run.finish_report))
    """)
    rep = last_json(r)
    assert "blobs.max_file_bytes" in rep["last_error"], rep
    time.sleep(0.5)
    assert versions(agent) == []
    assert "no version made" in agent.log()


def test_disk_budget_refuses_retryably_and_no_partial_version(make_agent, tmp_path):
    """At the disk budget the files are refused retryably: nothing is
    visible while they wait; once the budget is raised (a reload) the version
    appears, whole."""
    cfg = ("limits:\n  max_message_bytes: 256KiB\ntxlog:\n  max_bytes: {}\n"
           "  segment_bytes: 64KiB\nsystem_metrics:\n  enabled: false\n")
    agent = make_agent(cfg.format("2MiB"))
    src = tmp_path / "b"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.bin").write_bytes(os.urandom(1 << 20))
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(BIG.format(
        run_id="budget1", n=3, src=src))], env=python_client_env(agent.env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tmp = os.path.join(agent.state_dir, "blobs", str(os.geteuid()), "tmp")
        agent.wait_for(lambda: os.path.isdir(tmp) and os.listdir(tmp), timeout=60,
                       what="a file arriving")
        time.sleep(2)  # refused at the budget meanwhile, retried by the client
        assert blob_count(agent) < 3, "the budget did not stop the files"
        assert versions(agent) == []
        assert p.poll() is None, "the client gave up"
        with open(agent.config_path, "w") as f:
            f.write(cfg.format("256MiB"))
        agent.proc.send_signal(__import__("signal").SIGHUP)
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    vs = agent.wait_for(lambda: versions(agent), what="the version")
    assert [(v["version"], v["file_count"]) for v in vs] == [(0, 3)]


LIMITS = """
    import json, trackd
    run = trackd.init(project="arts", id="names1", console=False)
    out = {}
    def attempt(key, fn):
        try:
            fn()
            out[key] = "ok"
        except Exception as e:
            out[key] = type(e).__name__ + ": " + str(e)
    def log(name="n", type="t", aliases=("latest",), metadata=None, refs=1):
        a = trackd.Artifact(name, type, metadata=metadata)
        for i in range(refs):
            a.add_reference("s3://b/%d" % i, name="r%d" % i)
        run.log_artifact(a, aliases=list(aliases))
    attempt("name127", lambda: log(name="a" * 127))
    attempt("name128", lambda: log(name="b" * 128))
    attempt("name129", lambda: log(name="c" * 129))
    attempt("dotdot", lambda: log(name=".."))
    attempt("slash", lambda: log(name="a/b"))
    attempt("nul", lambda: log(name="a\\0b"))
    attempt("aliases31", lambda: log(name="al31", aliases=["a%d" % i for i in range(31)]))
    attempt("aliases32", lambda: log(name="al32", aliases=["a%d" % i for i in range(32)]))
    attempt("aliases33", lambda: log(name="al33", aliases=["a%d" % i for i in range(33)]))
    attempt("alias_version", lambda: log(name="alv", aliases=["v3"]))
    attempt("alias128", lambda: log(name="alx", aliases=["x" * 128]))
    attempt("alias129", lambda: log(name="aly", aliases=["y" * 129]))
    pad = lambda n: {"k": "m" * (n - 8)}  # json.dumps → n bytes
    attempt("meta_limit", lambda: log(name="m0", metadata=pad(65536)))
    attempt("meta_over", lambda: log(name="m1", metadata=pad(65537)))
    attempt("entries9999", lambda: log(name="e0", refs=9999))
    attempt("entries10000", lambda: log(name="e1", refs=10000))
    attempt("entries10001", lambda: log(name="e2", refs=10001))
    a = trackd.Artifact("bad", "t")
    a.add_reference("s3://x", name="../x")
    attempt("entry_dotdot", lambda: run.log_artifact(a))
    run.finish()
    print(json.dumps(out))
"""


def test_limits_and_bad_names(make_agent):
    agent = make_agent("limits:\n  max_message_bytes: 16MiB\nsystem_metrics:\n  enabled: false\n")
    out = last_json(py(agent, LIMITS, timeout=300))
    ok = {"name127", "name128", "aliases31", "aliases32", "alias128", "meta_limit",
          "entries9999", "entries10000"}
    for key, res in out.items():
        if key in ok:
            assert res == "ok", (key, res)
        else:
            assert res.startswith("InvalidValueError"), (key, res)
    assert "is not a name" in out["dotdot"] and "is not a name" in out["slash"]
    assert "64" in out["meta_over"] or "65536" in out["meta_over"]
    assert "33 aliases" in out["aliases33"]
    assert "entries" in out["entries10001"]
    assert "not a name an artifact can hold" in out["entry_dotdot"]
    names = agent.wait_for(lambda: {v["name"] for v in versions(agent)} >= {
        "a" * 127, "b" * 128, "al31", "al32", "alx", "m0", "e0", "e1"} and
        {v["name"] for v in versions(agent)}, what="the versions")
    assert not names & {"c" * 129, "al33", "aly", "m1", "e2", "bad"}


def test_alias_and_delete_release_only_unshared_files(make_agent, tmp_path):
    agent = make_agent("system_metrics:\n  enabled: false\n")
    shared, only1 = os.urandom(50_000), os.urandom(40_000)
    log_files(agent, tmp_path, "del1", {"shared.bin": shared, "x.bin": b"one"})
    log_files(agent, tmp_path, "del2", {"shared.bin": shared, "x.bin": only1})
    out = trackctl(agent, "artifact", "alias", "ds:v0", "prod", "best").stdout
    assert "arts/ds:v0: aliases set" in out
    vs = {v["version"]: sorted(v["aliases"]) for v in versions(agent)}
    assert vs == {0: ["best", "prod"], 1: ["latest"]}
    trackctl(agent, "artifact", "alias", "ds:v1", "prod")         # moves it
    trackctl(agent, "artifact", "alias", "--remove", "ds:v0", "best")
    vs = {v["version"]: sorted(v["aliases"]) for v in versions(agent)}
    assert vs == {0: [], 1: ["latest", "prod"]}
    r = trackctl(agent, "artifact", "alias", "ds:v0", "v7", check=False)
    assert r.returncode != 0 and "not an alias" in r.stderr

    blobs = os.path.join(agent.state_dir, "blobs", str(os.geteuid()))
    only1_blob = os.path.join(blobs, hashlib.sha256(only1).hexdigest())
    shared_blob = os.path.join(blobs, hashlib.sha256(shared).hexdigest())
    assert os.stat(only1_blob).st_nlink == 2 and os.stat(shared_blob).st_nlink == 3
    trackctl(agent, "artifact", "delete", "ds:v1")
    assert [(v["version"], v["aliases"]) for v in versions(agent)] == [(0, ["latest"])]
    # v1's own file is linked by nothing but the blob store now (the sweep
    # removes it after blobs.grace); the shared one is still v0's.
    assert os.stat(only1_blob).st_nlink == 1
    assert os.stat(shared_blob).st_nlink == 2
    r = trackctl(agent, "artifact", "show", "ds:v1", check=False)
    assert r.returncode == 1 and "no artifact" in r.stderr
    # Replayed after a kill -9: the same state; the next version is v2.
    agent.kill9()
    agent.start()
    assert [(v["version"], v["aliases"]) for v in versions(agent)] == [(0, ["latest"])]
    assert log_files(agent, tmp_path, "del3", {"shared.bin": shared, "x.bin": b"three"}) \
        ["version"] == "v2"


def test_another_user_cannot_change_or_delete(tmp_path):
    require_bins()
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    sock_dir = tempfile.mkdtemp(prefix="trackd-arts-")
    os.chmod(sock_dir, 0o755)
    os.chmod(tmp_path, 0o755)
    agent = Agent(tmp_path, socket_dir=sock_dir,
                  config="socket_mode: 0666\naccess:\n  group: audio\n"
                         "system_metrics:\n  enabled: false\n")
    agent.start()
    try:
        log_files(agent, tmp_path, "perm2", {"a.txt": b"a"})

        def as_other():
            os.setgid(29)
            os.setuid(65533)
        env = dict(agent.env, TRACKD_NO_AUTOSTART="1", HOME="/tmp")
        path = versions(agent)[0]["path"]
        for args in (["artifact", "alias", path, "mine"], ["artifact", "delete", path]):
            r = subprocess.run([BIN["trackctl"], *args], env=env, capture_output=True,
                               text=True, timeout=60, preexec_fn=as_other)
            assert r.returncode == 1 and "another user" in r.stderr, r
        assert [(v["version"], v["aliases"]) for v in versions(agent)] == [(0, ["latest"])]
    finally:
        agent.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_example_artifacts_py_shows_its_lineage(make_agent):
    """The issue's "done when": examples/artifacts.py logs a dataset and a
    model artifact in its training run, and its second run uses the dataset;
    `trackctl artifact show` names both runs. Run twice: the data is the same
    version, the model (new weights) a new one."""
    agent = make_agent("system_metrics:\n  enabled: false\n")
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "artifacts.py")
    for _ in range(2):
        r = subprocess.run([sys.executable, script], env=python_client_env(agent.env),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "evaluated on" in r.stdout
    vs = sorted((v["name"], v["version"]) for v in versions(agent))
    assert vs == [("example-data", 0), ("example-model", 0), ("example-model", 1)]
    runs = {x["id"]: x for x in json.loads(trackctl(agent, "runs", "--json").stdout)["runs"]}
    show = json.loads(trackctl(agent, "artifact", "show", "example-data", "--json").stdout)
    info = show["artifact"]
    logged_by = info["logged_by"].rsplit("/", 1)[1]
    assert runs[logged_by]["job_type"] == "train"
    assert len(info["used_by"]) == 2
    assert all(runs[u.rsplit("/", 1)[1]]["job_type"] == "eval" for u in info["used_by"])
    text = trackctl(agent, "artifact", "show", "example-data").stdout
    assert f"logged by    {info['logged_by']}" in text
    assert "used by      " + ", ".join(info["used_by"]) in text


def test_wandb_module_maps_artifacts(make_agent, tmp_path):
    agent = make_agent("system_metrics:\n  enabled: false\n")
    (tmp_path / "m.bin").write_bytes(b"weights" * 100)
    r = py(agent, f"""
        import json
        import trackd.wandb as wandb
        with wandb.init(project="wb", id="wb1") as run:
            art = wandb.Artifact("net", type="model", metadata={{"k": 1}})
            art.add_file("{tmp_path}/m.bin", name="weights/m.bin")
            run.log_artifact(art, aliases=["best"])
            art.wait()
        with wandb.init(project="wb", id="wb2") as run:
            used = run.use_artifact("net:best", type="model")
            path = used.get_path("weights/m.bin").download("{tmp_path}/dl")
        a = wandb.Api().artifact("wb/net:latest")
        print(json.dumps({{"v": a.version, "aliases": sorted(a.aliases), "path": path,
                          "n": len(wandb.Api().artifacts("model", "wb/net")),
                          "manifest": a.manifest["contents"]["weights/m.bin"]["size"]}}))
    """)
    out = last_json(r)
    assert out["v"] == "v0" and out["aliases"] == ["best", "latest"] and out["n"] == 1
    assert out["manifest"] == 700
    with open(out["path"], "rb") as f:
        assert f.read() == b"weights" * 100
    info = versions(agent)[0]
    assert info["logged_by"].endswith("/wb1") and info["used_by"][0].endswith("/wb2")


def test_a_file_larger_than_the_client_memory_bound_is_read_as_it_is_sent(make_agent, tmp_path):
    """max_buffer_bytes (64 MiB by default) bounds what the client holds; an
    artifact file is not held but read piece by piece as it is sent."""
    agent = make_agent("system_metrics:\n  enabled: false\n")
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(70 << 20)
        f.seek(35 << 20)
        f.write(b"middle")
    r = py(agent, f"""
        import json, trackd
        run = trackd.init(project="arts", id="huge1", console=False)
        a = trackd.Artifact("huge", "model")
        a.add_file("{big}")
        run.log_artifact(a)
        run.finish(timeout=120)
        print(json.dumps(run.finish_report))
    """, timeout=300)
    assert last_json(r)["records_unacked"] == 0
    (v,) = agent.wait_for(lambda: versions(agent), what="the version")
    assert v["size"] == 70 << 20
    blob = os.path.join(agent.state_dir, "blobs", str(os.geteuid()),
                        hashlib.sha256(big.read_bytes()).hexdigest())
    assert os.path.getsize(blob) == 70 << 20


def test_more_files_than_open_file_descriptors(make_agent, tmp_path):
    """Queued artifact files hold no descriptor: 600 files under a limit of
    128 open files."""
    import resource
    agent = make_agent("system_metrics:\n  enabled: false\n")
    src = tmp_path / "many"
    src.mkdir()
    for i in range(600):
        (src / f"f{i:03}.txt").write_bytes(b"%d" % i * 50)
    r = py(agent, f"""
        import json, trackd
        run = trackd.init(project="arts", id="many1", console=False)
        a = trackd.Artifact("many", "dataset")
        a.add_dir("{src}")
        run.log_artifact(a)
        run.finish(timeout=120)
        print(json.dumps(run.finish_report))
    """, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128)))
    assert last_json(r)["records_unacked"] == 0
    (v,) = agent.wait_for(lambda: versions(agent), what="the version")
    assert v["file_count"] == 600
