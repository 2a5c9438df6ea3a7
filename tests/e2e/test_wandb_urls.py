"""Where a run is on W&B, end to end: a real agent uploading to the fake W&B
backend (tests/fake-wandb), real C and Python clients, trackctl.

- `trackctl show`, the client footer, td_run_url / trackd.Run.url and
  trackd.Api().run(…).url give {app_url}/{entity}/{project}/runs/{id} once the
  backend answered the run's UpsertBucket, and say why not otherwise (no wandb
  sink, upload pending, parked, offline);
- `trackctl status` prints the wandb sink's counters and its parked runs, never
  the API key;
- the display name the local store shows is the one the backend gets, and a
  rename (trackctl or the client) reaches the backend, and so does an update of
  the tags and notes (trackctl update, the Api, a live run), once."""
import json
import subprocess
import sys
import textwrap

from conftest import BIN, Agent, finish_producer, python_client_env, require_bins
from test_wandb import PROJECT, make_agent, fake_server, fw, wait_uploaded, upstream  # noqa: F401


def trackctl(agent, *args, check=True):
    r = subprocess.run([BIN["trackctl"], *args], env=agent.env, capture_output=True, text=True,
                       timeout=60)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def run_url(fw, run_id, app=None):
    return f"{app or fw.base_url.rstrip('/')}/{fw.entity}/{PROJECT}/runs/{run_id}"


def project_url(fw, app=None):
    return f"{app or fw.base_url.rstrip('/')}/{fw.entity}/{PROJECT}"


def finish_footer(p, timeout=120):
    """Waits for a producer; returns what it printed on stderr (the footer)."""
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"producer failed ({p.returncode}): {out} {err}"
    return err


def upload_of(agent, run_id):
    """The "upload" object of the run's answer ({} before the run is known)."""
    return agent.query("run", run=run_id).get("upload", {})


def run_python(agent, code, timeout=120):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=python_client_env(agent.env),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r


# ---- show, Api, footer: uploaded -------------------------------------------------------

def test_show_api_and_c_footer_give_the_url_once_uploaded(make_agent, fw, tmp_path):
    agent = make_agent()
    hold, url_file = tmp_path / "go", tmp_path / "url"
    p = agent.producer("urlrun", 20, "--hold-file", hold, "--url-file", url_file)
    # The run is live: wait until the backend answered its UpsertBucket.
    up = agent.wait_for(lambda: upload_of(agent, "urlrun")
                        if upload_of(agent, "urlrun").get("run_url") else None,
                        what="the run URL")
    assert up["sink"] == "wandb" and up["run_url"] == run_url(fw, "urlrun"), up
    assert up["project_url"] == project_url(fw), up
    hold.write_text("")
    err = finish_footer(p)
    # td_run_url in the client, and the footer td_finish printed.
    assert url_file.read_text() == run_url(fw, "urlrun")
    name = agent.query("run", run="urlrun")["run"]["display_name"]
    assert f"View run {name} at: {run_url(fw, 'urlrun')}\n" in err, err
    assert f"View project at: {project_url(fw)}\n" in err, err
    wait_uploaded(agent, fw, "urlrun")
    out = trackctl(agent, "show", "urlrun").stdout
    assert f"View run {name} at: {run_url(fw, 'urlrun')}\n" in out, out
    assert f"View project at: {project_url(fw)}\n" in out, out
    assert "W&B:" not in out
    # After the upload is complete the sink may forget the run from memory: the
    # answer then comes from its durable state, the same.
    assert upload_of(agent, "urlrun")["state"] == "done"
    # The Python Api.
    r = run_python(agent, f"""
        import json, trackd
        api = trackd.Api()
        r = api.run("urlrun")
        listed = [x for x in api.runs("{PROJECT}") if x.id == "urlrun"][0]
        print(json.dumps([r.url, r.project_url, r.upload["state"], listed.url]))
    """)
    assert json.loads(r.stdout) == [run_url(fw, "urlrun"), project_url(fw), "done",
                                    run_url(fw, "urlrun")]
    # Restarted, the agent answers from the sink's durable state.
    agent.stop()
    agent.start()
    assert upload_of(agent, "urlrun")["run_url"] == run_url(fw, "urlrun")
    out = trackctl(agent, "show", "urlrun").stdout
    assert f"View run {name} at: {run_url(fw, 'urlrun')}\n" in out, out


def test_short_run_footer_waits_for_the_url(make_agent, fw):
    # The run ends before the sinks have read its start: td_finish's footer
    # waits (briefly) for the backend's answer, as W&B prints the URL at the end.
    agent = make_agent()
    err = finish_footer(agent.producer("quick", 3))
    name = agent.query("run", run="quick")["run"]["display_name"]
    assert f"View run {name} at: {run_url(fw, 'quick')}\n" in err, err


def test_python_client_footer_and_run_url(make_agent, fw):
    agent = make_agent()
    r = run_python(agent, f"""
        import json, time, trackd
        run = trackd.init(project="{PROJECT}", id="pyurl", name="py-named-run",
                          config={{"lr": 0.1}})
        run.log({{"loss": 1.0}})
        deadline = time.monotonic() + 60
        while run.url is None and time.monotonic() < deadline:
            time.sleep(0.05)
        live = run.url
        run.finish()
        print(json.dumps([live, run.url, trackd.Api().run("pyurl").url]))
    """)
    live, after, api = json.loads(r.stdout.splitlines()[-1])
    assert live == after == api == run_url(fw, "pyurl"), r.stdout
    assert f"View run py-named-run at: {run_url(fw, 'pyurl')}\n" in r.stderr, r.stderr
    assert f"View project at: {project_url(fw)}\n" in r.stderr, r.stderr


def test_app_url_from_configuration(make_agent, fw):
    agent = make_agent(app_url="https://ui.example.test/")
    finish_producer(agent.producer("apprun", 5))
    wait_uploaded(agent, fw, "apprun")
    app = "https://ui.example.test"
    assert upload_of(agent, "apprun")["run_url"] == run_url(fw, "apprun", app)
    assert f"at: {run_url(fw, 'apprun', app)}\n" in trackctl(agent, "show", "apprun").stdout
    assert f"/runs/apprun" in agent.log() and app in agent.log()


# ---- no URL, and why -------------------------------------------------------------------

def test_no_sink_says_so(tmp_path):
    require_bins()
    agent = Agent(tmp_path)
    agent.start()
    try:
        err = finish_footer(agent.producer("nosink", 5))
        agent.wait_for(lambda: agent.run_state("nosink") == "finished", what="finished")
        # Every field of the typed answer is there; those that do not apply are null.
        assert upload_of(agent, "nosink") == {"sink": "none", "state": "disabled",
                                              "run_url": None, "project_url": None,
                                              "last_error": None}
        out = trackctl(agent, "show", "nosink").stdout
        assert "W&B: not uploaded: no wandb sink configured" in out, out
        assert "View run" not in out
        # The footer does not advertise W&B when there is no sink.
        assert "W&B" not in err and "View run" not in err, err
        r = run_python(agent, """
            import trackd
            print(trackd.Api().run("nosink").url)
        """)
        assert r.stdout.strip() == "None"
        st = trackctl(agent, "status").stdout
        assert "wandb sink:          off" in st, st
        assert json.loads(trackctl(agent, "status", "--json").stdout)["wandb"] == \
            {"enabled": False}
    finally:
        agent.stop()


def test_pending_until_the_backend_answers(make_agent, fw, tmp_path):
    # Every UpsertBucket fails with a retryable error: no URL yet.
    fid = fw.add_fault(kind="status", status=503, count=-1, path_prefix="/graphql")
    agent = make_agent()
    hold, url_file = tmp_path / "go", tmp_path / "url"
    p = agent.producer("slowup", 5, "--hold-file", hold, "--url-file", url_file)
    agent.wait_for(lambda: upload_of(agent, "slowup").get("last_error"), what="a failed upsert")
    up = upload_of(agent, "slowup")
    assert up["run_url"] == "" and up["state"] in ("retrying", "uploading"), up
    out = trackctl(agent, "show", "slowup").stdout
    assert "W&B: upload pending: the backend has not acknowledged the run yet" in out, out
    assert "503" in out and "View run" not in out
    hold.write_text("")
    err = finish_footer(p)
    assert url_file.read_text() == ""
    assert "W&B: upload pending; trackctl show slowup gives the run's URL" in err, err
    assert "View run" not in err
    fw.clear_faults(fid)
    wait_uploaded(agent, fw, "slowup")
    assert upload_of(agent, "slowup")["run_url"] == run_url(fw, "slowup")
    assert "View run" in trackctl(agent, "show", "slowup").stdout


def test_offline_run_shows_the_sync_command(make_agent, fw):
    agent = make_agent()
    run_python(agent, f"""
        import trackd
        with trackd.init(project="{PROJECT}", id="offl1", mode="offline") as run:
            run.log({{"x": 1}})
            assert run.url is None
    """)
    agent.wait_for(lambda: agent.run_state("offl1") == "finished", what="finished")
    out = trackctl(agent, "show", "offl1").stdout
    assert "Offline run; upload it with: trackctl sync " in out, out
    assert "View run" not in out
    assert upload_of(agent, "offl1")["run_url"] == ""


# ---- status ----------------------------------------------------------------------------

def test_status_shows_counters_and_parked_runs_never_the_key(make_agent, fw):
    agent = make_agent()
    fw.add_fault(kind="status", status=404, count=-1,
                 path_prefix=f"/files/{fw.entity}/{PROJECT}/parkme/")
    finish_producer(agent.producer("parkme", 30))
    finish_producer(agent.producer("fine", 30))
    wait_uploaded(agent, fw, "fine")
    agent.wait_for(lambda: upload_of(agent, "parkme")["state"] == "parked", what="parked")
    out = trackctl(agent, "status").stdout
    assert f"wandb sink:          uploading to {fw.base_url}" in out, out
    assert " 1 parked, " in out, out
    parked = [line for line in out.splitlines() if line.startswith("  parked   parkme: ")]
    assert parked and "404" in parked[0] and "trackctl retry parkme" in parked[0], out
    j = json.loads(trackctl(agent, "status", "--json").stdout)["wandb"]
    assert j["enabled"] and j["runs_parked"] == 1 and j["requests_ok"] >= 3, j
    assert j["runs_finished"] >= 1 and j["lines_sent"] >= 30 and j["requests_failed"] >= 1, j
    assert j["backlog"] >= 0 and j["bytes_sent"] > 0
    pr = [r for r in j["runs"] if r["id"] == "parkme"][0]
    assert pr["state"] == "parked" and pr["last_status"] == 404, pr
    # show says why, with the command that helps.
    show = trackctl(agent, "show", "parkme").stdout
    assert "trackctl retry" in show, show
    # The key appears nowhere a user can read.
    for text in (out, json.dumps(j), show, agent.log()):
        assert fw.api_key not in text
    # A retryable failure is counted as retried.
    fw.clear_faults()
    fw.add_fault(kind="status", status=500, count=1)
    before = j["requests_retried"]
    finish_producer(agent.producer("retried", 5))
    wait_uploaded(agent, fw, "retried")
    j = json.loads(trackctl(agent, "status", "--json").stdout)["wandb"]
    assert j["requests_retried"] == before + 1, j


# ---- display name ----------------------------------------------------------------------

def test_backend_gets_the_local_name_and_renames(make_agent, fw):
    agent = make_agent()
    hold = agent.dir / "go"
    p = agent.producer("named1", 5, "--hold-file", hold)
    # Both sinks have it (each reads the log at its own pace).
    agent.wait_for(lambda: upstream(fw, "named1", False) and agent.run_state("named1"),
                   what="the run upstream and local")
    local = agent.query("run", run="named1")["run"]["display_name"]
    assert local and local.count("-") == 2
    up = upstream(fw, "named1", False)
    assert up["displayName"] == local and up["fields"]["displayName"] == local, up
    # trackctl rename: a new (debounced) UpsertBucket carries it.
    trackctl(agent, "rename", "named1", "renamed by ctl")
    fw.wait_for(lambda: upstream(fw, "named1", False)["displayName"] == "renamed by ctl",
                timeout=30, what="the rename upstream")
    # Each sink applies the rename from the log at its own pace.
    agent.wait_for(lambda: agent.query("run", run="named1")["run"]["display_name"]
                   == "renamed by ctl", what="the rename in the local store")
    hold.write_text("")
    finish_producer(p)
    wait_uploaded(agent, fw, "named1")
    assert upstream(fw, "named1", False)["displayName"] == "renamed by ctl"


def sent_meta(fw, run_id, tags, notes):
    """How many UpsertBuckets of the run carried these tags and notes."""
    return sum(1 for m in upstream(fw, run_id, False)["upsert_meta"]
               if m["tags"] == tags and m["notes"] == notes)


def test_update_of_tags_and_notes_reaches_the_backend_once(make_agent, fw):
    agent = make_agent()
    finish_producer(agent.producer("upd1", 3))
    wait_uploaded(agent, fw, "upd1")
    hold = agent.dir / "go"
    live = agent.producer("upd2", 3, "--hold-file", hold)
    fw.wait_for(lambda: upstream(fw, "upd2", False), what="upd2 upstream")
    trackctl(agent, "update", "upd1", "--name", "done-better", "--tags", "a,b", "--notes", "n1")
    trackctl(agent, "update", "upd2", "--tags", "live", "--notes", "n2")
    fw.wait_for(lambda: sent_meta(fw, "upd1", ["a", "b"], "n1") and
                sent_meta(fw, "upd2", ["live"], "n2"), timeout=30, what="the updates upstream")
    up = upstream(fw, "upd1", False)
    assert (up["displayName"], up["tags"], up["notes"]) == ("done-better", ["a", "b"], "n1")
    # Cleared tags go up as an empty list (W&B then drops them).
    trackctl(agent, "update", "upd1", "--tags", "")
    fw.wait_for(lambda: sent_meta(fw, "upd1", [], "n1"), timeout=30, what="tags cleared")
    hold.write_text("")
    finish_producer(live)
    wait_uploaded(agent, fw, "upd2")
    # A restart sends nothing again: the sink's cursor is past the updates.
    agent.stop()
    agent.start()
    finish_producer(agent.producer("after", 2))
    wait_uploaded(agent, fw, "after")
    assert sent_meta(fw, "upd1", ["a", "b"], "n1") == 1
    assert sent_meta(fw, "upd1", [], "n1") == 1
    assert upstream(fw, "upd2", False)["tags"] == ["live"]
    assert sent_meta(fw, "upd2", ["live"], "n2") == 1


def test_client_rename_and_config_update_reach_the_backend(make_agent, fw):
    agent = make_agent()
    run_python(agent, f"""
        import time, trackd
        run = trackd.init(project="{PROJECT}", id="pyname", config={{"a": 1}})
        run.log({{"x": 1}})
        while run.url is None:
            time.sleep(0.05)
        run.name = "client-chosen"
        run.config.update({{"b": 2}})
        run.log({{"x": 2}})
        run.finish()
    """)
    wait_uploaded(agent, fw, "pyname")
    up = upstream(fw, "pyname", False)
    assert up["displayName"] == "client-chosen", up
    assert up["config"]["a"]["value"] == 1 and up["config"]["b"]["value"] == 2, up["config"]
    assert up["upserts"] >= 2
    assert agent.query("run", run="pyname")["run"]["display_name"] == "client-chosen"
