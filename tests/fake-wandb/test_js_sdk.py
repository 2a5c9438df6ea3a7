"""Compatibility check against a real client: the official W&B JavaScript SDK
(`@wandb/sdk` from npm, run by Node.js) logs runs against the fake, and the fake
must hold exactly what that client sent.

The SDK is installed with npm into a cache directory kept between runs
(wandb_js.py: $FAKE_WANDB_JS_DIR, default $TMPDIR/trackd-fake-wandb-js/<version>). Without
Node.js >= 18, npm, or the npm registry, the tests are skipped with the reason
(shown in the summary by pytest.ini's -rs); FAKE_WANDB_REQUIRE_JS=1 turns the skip
into a failure.

What the SDK needs from the backend (read from its source, of the version wandb_js.py pins):
  * POST /graphql `query Viewer` (to learn the default entity: viewer.entity);
  * POST /graphql `mutation UpsertBucket` with name, project, entity, displayName,
    config (JSON.stringify of the user's config, not the {"key": {"value"}} form);
    it reads data.upsertBucket.bucket.displayName;
  * POST /files/{entity}/{project}/{run}/file_stream with history lines at offsets,
    the summary (the merge of every logged row) at offset 0, and a last request
    {"complete": true, "exitcode": N};
  * WANDB_BASE_URL and WANDB_API_KEY select the backend and the key (Basic auth
    "api:KEY"), over one keep-alive connection.
"""
import json
import os
import shutil
import subprocess
import time

import pytest

import wandb_js
from conftest import PROJECT


RUN_JS = r"""
import wandb from '@wandb/sdk';
const spec = JSON.parse(process.env.FAKE_SPEC);
const run = await wandb.init({project: spec.project, name: spec.displayName, id: spec.id,
                              config: spec.config});
for (const item of spec.logs) {
  // The SDK adds _step to the object it is given: hand it a copy.
  run.log({...item.row}, item.step === undefined ? undefined : item.step, item.commit);
}
await wandb.finish(spec.exitcode);
console.log(JSON.stringify({id: run.id, entity: run.entity, project: run.project,
                            name: run.name}));
"""


def _skip_or_fail(reason):
    if os.environ.get("FAKE_WANDB_REQUIRE_JS") == "1":
        pytest.fail(reason + " (FAKE_WANDB_REQUIRE_JS=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_modules():
    path, why_not = wandb_js.install()
    if path is None:
        _skip_or_fail(why_not)
    return path


def run_js(fw, node_modules, tmp_path, spec, timeout=60):
    (tmp_path / "node_modules").symlink_to(node_modules)
    script = tmp_path / "run.mjs"
    script.write_text(RUN_JS)
    env = dict(os.environ, WANDB_BASE_URL=fw.base_url, WANDB_API_KEY=fw.api_key,
               FAKE_SPEC=json.dumps(spec), WANDB_MODE="online")
    env.pop("WANDB_ENTITY", None)
    t0 = time.time()
    r = subprocess.run([shutil.which("node"), str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"node exited {r.returncode}:\n{r.stdout}\n{r.stderr}\n" + \
        "".join(fw.stderr_lines[-20:])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return out, t0, time.time(), r


def replay(entries):
    """An independent reading of the raw requests (offset semantics, last write wins)."""
    files = {}
    complete = None
    for e in entries:
        body = json.loads(e["body"]) if e["body"] else {}
        for name, fd in (body.get("files") or {}).items():
            lst = files.setdefault(name, [])
            off, content = fd["offset"], fd["content"]
            if off > len(lst):
                lst.extend([None] * (off - len(lst)))
            lst[off:off + len(content)] = content
        if body.get("complete"):
            complete = body.get("exitcode")
    return files, complete


def check_exact(fw, out, spec):
    """The fake's state equals what the client sent, request by request."""
    entity, project, run_id = out["entity"], out["project"], out["id"]
    assert entity == fw.entity  # learnt from Viewer
    journal = fw.requests()
    assert all(e.get("status") == 200 for e in journal), journal
    ops = [e.get("operation") or "file_stream" for e in journal]
    assert ops[:2] == ["Viewer", "UpsertBucket"], ops
    assert set(ops[2:]) == {"file_stream"}, ops
    stats = fw.stats()
    assert stats["graphql_unsupported"] == {} and stats["auth_failures"] == 0
    assert all(e["user_agent"].startswith("W&B Internal JS Client") for e in journal)

    upsert = json.loads(journal[1]["body"])["variables"]
    run = fw.run(entity, project, run_id)
    for k, v in upsert.items():
        if k not in ("name", "project", "entity") and v is not None:
            assert run["fields"][k] == v
    assert upsert["name"] == run_id and upsert["project"] == project

    fs = [e for e in journal if e["run"] == f"{entity}/{project}/{run_id}"]
    files, exitcode = replay(fs)
    assert run["history"] == files.get("wandb-history.jsonl", [])
    assert run["summary_raw"] == files["wandb-summary.json"][-1]
    assert run["complete"] is True and run["exitcode"] == exitcode == spec["exitcode"]
    assert run["requests"] == len(fs)
    assert run["duplicates"] == 0 and run["conflicts"] == 0
    assert run["files"]["wandb-history.jsonl"]["holes"] == 0
    assert run["warnings"] == {} and run["unknown_keys"] == []
    return run


def test_js_sdk_logs_a_run(fw, node_modules, tmp_path):
    fw.configure(journal_bodies=True)
    spec = {
        "project": PROJECT, "displayName": "js-compat", "id": "jsrun001",
        "config": {"lr": 0.001, "layers": [64, 32], "optim": {"name": "adam", "beta": 0.9}},
        "logs": [{"row": {"loss": round(1.0 / (i + 1), 6), "acc": i / 10,
                          "nested": {"i": i, "tag": f"t{i}"}}} for i in range(6)],
        "exitcode": 0,
    }
    try:
        out, t0, t1, _ = run_js(fw, node_modules, tmp_path, spec)
    finally:
        fw.configure(journal_bodies=False)
    assert out["id"] == spec["id"] and out["project"] == PROJECT
    assert out["name"] == "js-compat"  # the display name the fake answered
    run = check_exact(fw, out, spec)
    # ... and what it sent is what the script logged.
    assert run["config"] == spec["config"]
    assert run["displayName"] == "js-compat"
    hist = [json.loads(x) for x in run["history"]]
    assert len(hist) == len(spec["logs"])
    last_runtime = 0
    for i, (row, item) in enumerate(zip(hist, spec["logs"])):
        assert {k: v for k, v in row.items() if not k.startswith("_")} == item["row"]
        assert row["_step"] == i
        assert t0 - 1 <= row["_timestamp"] <= t1 + 1
        assert row["_runtime"] >= last_runtime
        last_runtime = row["_runtime"]
    merged = {}
    for row in hist:
        merged.update(row)
    assert run["summary"] == merged


def test_js_sdk_explicit_steps_and_exit_code(fw, node_modules, tmp_path):
    """Explicit steps (offsets are line numbers, not steps) and a non-zero exit."""
    fw.configure(journal_bodies=True)
    spec = {
        "project": PROJECT, "displayName": "js-steps", "id": "jsrun002", "config": {"k": 1},
        "logs": [{"row": {"v": s * 1.5}, "step": s} for s in (0, 5, 10, 11)],
        "exitcode": 3,
    }
    try:
        out, _, _, _ = run_js(fw, node_modules, tmp_path, spec)
    finally:
        fw.configure(journal_bodies=False)
    run = check_exact(fw, out, spec)
    hist = [json.loads(x) for x in run["history"]]
    assert [(r["_step"], r["v"]) for r in hist] == [(0, 0.0), (5, 7.5), (10, 15.0),
                                                   (11, 16.5)]
    assert run["files"]["wandb-history.jsonl"]["gaps"] == 0
    assert run["exitcode"] == 3
