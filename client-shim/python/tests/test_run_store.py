"""What the agent makes of a Python run (its run store, read with trackd.Api):
states, `_step` numbering, summary rules, the run directory, resume. These
need the agent's run semantics; each test is skipped, with the reason
"agent run store not available yet", when the agent answers run queries with
"unknown query kind"."""
import json
import os
import signal
import sys
import time

import pytest

from conftest import PKG_DIR, REPO, api_run, records, wait_for

import trackd


def finished(r):
    return r.state != "running"


def test_api_reads_back_a_run(store, env):
    env.run("""
        import trackd
        run = trackd.init(project="api", entity="ent", id="api1", name="first-try",
                          config={"epochs": 3, "opt": {"lr": 0.01}}, tags=["x"], notes="hi",
                          group="grp", job_type="train")
        run.define_metric("loss", summary="min")
        run.define_metric("acc", summary="max")
        run.define_metric("lr", summary="none")
        run.define_metric("avg", summary="mean")
        for i, (loss, acc) in enumerate([(0.9, 0.5), (0.3, 0.8), (0.6, 0.7)]):
            run.log({"loss": loss, "acc": acc, "lr": 0.1, "avg": float(i), "epoch": i})
        run.summary["best_epoch"] = 1
        run.finish()
    """, TRACKD_SOCKET=store.url)
    r = api_run(store, "ent/api/api1", until=finished)
    assert (r.id, r.entity, r.project, r.name, r.state) == ("api1", "ent", "api",
                                                            "first-try", "finished")
    assert r.exit_code == 0 and r.tags == ["x"] and r.notes == "hi" and r.group == "grp"
    assert r.config == {"epochs": 3, "opt": {"lr": 0.01}}
    s = r.summary
    assert (s["loss"], s["acc"], s["avg"], s["epoch"], s["best_epoch"]) == (0.3, 0.8, 1.0, 2, 1)
    assert "lr" not in s
    rows = r.history()
    assert [row["_step"] for row in rows] == [0, 1, 2]
    assert [row["loss"] for row in rows] == [0.9, 0.3, 0.6]
    assert all("_runtime" in row and "_timestamp" in row for row in rows)
    assert [set(row) - {"_step", "_runtime", "_timestamp"} for row in r.history(keys=["acc"])] \
        == [{"acc"}] * 3
    api = trackd.Api(socket=store.url)
    assert [x.id for x in api.runs("ent/api")] == ["api1"]
    assert [x.id for x in api.runs("api", state="finished")] == ["api1"]
    assert api.runs("api", state="failed") == []
    with pytest.raises(trackd.NotFoundError):
        api.run("ent/api/nope")


def test_update_of_name_tags_notes_live_and_through_the_api(store, env):
    out = env.run("""
        import trackd
        run = trackd.init(project="upd", id="upd1", tags=["x"], notes="hi")
        run.log({"a": 1})
        run.tags = ["x", "y"]
        run.notes = "later"
        for bad in ("a string", ["t%d" % i for i in range(65)]):
            try:
                run.tags = bad
            except (TypeError, trackd.InvalidValueError) as e:
                print("refused:", e)
        run.finish()
        print(run.tags, run.notes)
    """, TRACKD_SOCKET=store.url).stdout
    assert out.count("refused:") == 2 and "65 tags, limit 64" in out, out
    assert out.endswith("('x', 'y') later\n"), out
    r = api_run(store, "upd1", until=finished)
    assert (r.tags, r.notes) == (["x", "y"], "later")
    assert [{k: v for k, v in x.items() if k in ("tags", "notes")}
            for x in records(store, "upd1", "rename")] == [{"tags": ["x", "y"]}, {"notes": "later"}]
    # The finished run, through the Api: only what is given changes.
    assert r.update(name="renamed", tags=[]) is r
    assert (r.name, r.tags, r.notes) == ("renamed", [], "later")
    r.update(notes="")
    assert (r.name, r.tags, r.notes or "") == ("renamed", [], "")
    with pytest.raises(trackd.AgentError, match="65 tags, limit 64"):
        r.update(tags=["t%d" % i for i in range(65)])
    with pytest.raises(ValueError):
        r.update(name="")
    with pytest.raises(TypeError):
        r.update(tags="a,b")


def test_api_runs_lists_newest_first(store, env):
    """Issue #12 item 10: as W&B's Api().runs(), the newest run comes first."""
    env.run("""
        import time, trackd
        trackd.init(project="order", entity="e", id="zz-older").finish()
        time.sleep(1.1)  # run dirs are named by the start time, to the second
        trackd.init(project="order", entity="e", id="aa-newer").finish()
        # Within one second too (the ids sort the other way).
        trackd.init(project="order", entity="e", id="b-first").finish()
        trackd.init(project="order", entity="e", id="a-then").finish()
    """, TRACKD_SOCKET=store.url)
    api = trackd.Api(socket=store.url)
    ids = wait_for(lambda: [x.id for x in api.runs("e/order")] if len(api.runs("e/order")) == 4
                   else None)
    assert ids == ["a-then", "b-first", "aa-newer", "zz-older"]


def test_step_numbering_and_merged_rows(store, env):
    env.run("""
        import trackd
        run = trackd.init(project="steps", entity="e", id="st1")
        run.log({"a": 1})
        run.log({"b": 2}, commit=False)
        run.log({"c": 3})
        run.log({"d": 4}, step=5)
        run.log({"e": 5}, step=5)
        run.log({"f": 6}, step=7, commit=True)
        run.log({"g": 7}, step=3)
        run.log({"h": 8})
        run.log({"i": 9}, commit=False)
        run.finish()
    """, TRACKD_SOCKET=store.url)
    r = api_run(store, "e/steps/st1", until=finished)
    rows = [{k: v for k, v in row.items() if not k.startswith("_") or k == "_step"}
            for row in r.history()]
    assert rows == [{"a": 1, "_step": 0}, {"b": 2, "c": 3, "_step": 1},
                    {"d": 4, "e": 5, "_step": 5}, {"f": 6, "_step": 7},
                    {"h": 8, "_step": 8}, {"i": 9, "_step": 9}]


@pytest.mark.parametrize("body, state, code", [
    ("run.finish()", "finished", 0),
    ("run.finish(exit_code=2)", "failed", 2),
    ("raise RuntimeError('x')", "failed", 1),
])
def test_end_states(store, env, body, state, code):
    env.run(f"""
        import trackd
        run = trackd.init(project="states", entity="e", id="s_{state}_{code}")
        run.log({{"x": 1}})
        {body}
    """, TRACKD_SOCKET=store.url, check=False)
    r = api_run(store, f"e/states/s_{state}_{code}", until=finished)
    assert (r.state, r.exit_code) == (state, code)


def test_sigterm_is_killed_and_kill9_is_crashed_within_2s(store, env):
    script = """
        import sys, time, trackd
        run = trackd.init(project="states", entity="e", id=sys.argv[1] if len(sys.argv) > 1
                          else "{id}")
        run.log({{"x": 1}})
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    """
    killed = env.popen(script.format(id="killed1"), TRACKD_SOCKET=store.url)
    crashed = env.popen(script.format(id="crashed1"), TRACKD_SOCKET=store.url)
    for p in (killed, crashed):
        assert p.stdout.readline().strip() == "ready"
    assert wait_for(lambda: len(records(store, kind="history")) == 2)
    killed.send_signal(signal.SIGTERM)
    assert killed.wait(timeout=60) == -signal.SIGTERM
    crashed.kill()
    crashed.wait()
    gone = time.monotonic()
    r = api_run(store, "e/states/crashed1", timeout=2.0, until=finished)
    assert r.state == "crashed", f"still {r.state} {time.monotonic() - gone:.1f}s after kill -9"
    assert time.monotonic() - gone <= 2.5
    r = api_run(store, "e/states/killed1", until=finished)
    assert (r.state, r.exit_code) == ("killed", 128 + signal.SIGTERM)


def test_run_dir_and_name_from_the_agent(store, env):
    r = env.run("""
        import os, time, trackd
        run = trackd.init(project="dirs", entity="e", id="dir1")
        run.log({"x": 1})
        print(run.store_dir)
        run.finish()
        for _ in range(200):   # the agent names the run once it has it
            if run.name:
                break
            time.sleep(0.05)
        print(run.name)
    """, TRACKD_SOCKET=store.url)
    run_dir, name = r.stdout.split("\n")[:2]
    ar = api_run(store, "e/dirs/dir1", until=finished)
    assert run_dir == ar.dir and run_dir.startswith(store.state_dir + "/runs/e/dirs/run-")
    assert run_dir.endswith("-dir1") and os.path.isdir(run_dir)
    for f in ("metadata.json", "config.yaml", "history.jsonl", "summary.json", "output.log"):
        assert os.path.exists(os.path.join(run_dir, f)), f
    # No name given: the agent chose one (adjective-noun-N), which the run reports.
    assert name == ar.name and name.count("-") >= 2


def test_resume_must_and_never(store, env):
    env.run("""
        import trackd
        trackd.init(project="res", entity="e", id="res1").finish()
    """, TRACKD_SOCKET=store.url)
    api_run(store, "e/res/res1", until=finished)
    r = env.run("""
        import trackd
        for resume, rid in [("must", "res1"), ("must", "missing"), (None, "res1"),
                            ("never", "res1"), ("allow", "res1")]:
            try:
                run = trackd.init(project="res", entity="e", id=rid, resume=resume,
                                  console=False)
            except ValueError as e:
                print(resume, rid, "refused:", e)
            else:
                run.log({"again": 1})
                run.finish()
                print(resume, rid, "ok")
    """, TRACKD_SOCKET=store.url)
    lines = r.stdout.splitlines()
    assert lines[0] == "must res1 ok"
    assert lines[1].startswith("must missing refused:") and "does not exist" in lines[1]
    assert lines[2].startswith("None res1 refused:") and "already exists" in lines[2]
    assert lines[3].startswith("never res1 refused:")
    assert lines[4] == "allow res1 ok"
    r = api_run(store, "e/res/res1", until=lambda r: r.summary.get("again") == 1)
    assert r.summary.get("again") == 1 and r.state == "finished"


def test_offline_mode_is_kept(store, env):
    env.run("""
        import trackd
        trackd.init(project="off", entity="e", id="off2", mode="offline").finish()
    """, TRACKD_SOCKET=store.url)
    assert api_run(store, "e/off/off2", until=finished).mode == "offline"


def test_spooled_run_appears_once_delivered(agent, env):
    env.run("""
        import trackd
        run = trackd.init(project="sp", entity="e", id="sp1", resume="allow")
        run.log({"x": 1})
        run.finish(timeout=0.3)
    """, TRACKD_SOCKET=agent.url)
    agent.start()
    from conftest import probe_run_store
    probe_run_store(agent)
    env.run("""
        import trackd
        trackd.init(project="sp", entity="e", id="sp2", resume="allow").finish()
    """, TRACKD_SOCKET=agent.url)
    r = api_run(agent, "e/sp/sp1", until=finished)
    assert r.state == "finished" and [row["x"] for row in r.history()] == [1]


def test_train_example_matches_the_wandb_docs(store, env):
    r = env.run((REPO / "examples" / "train.py").read_text(), TRACKD_SOCKET=store.url)
    api = trackd.Api(socket=store.url)
    runs = wait_for(lambda: [x for x in api.runs("trackd-example", state="finished")]
                    if len(api.runs("trackd-example", state="finished")) == 2 else None)
    assert runs and len(runs) == 2
    quick, loop = sorted(runs, key=lambda x: x.history_lines or 0)
    assert [{k: v for k, v in row.items() if not k.startswith("_")}
            for row in quick.history()] == [{"acc": 0.9, "loss": 0.1}]
    assert loop.config == {"epochs": 10, "learning_rate": 0.01}
    assert [row["_step"] for row in loop.history()] == list(range(10))
    assert r.stderr.count("Run summary:") == 2
