"""What a Python training process hands to the agent: each test runs a script
in its own process against a real agent and reads back the records the agent
stored (trackctl dump). Only the agent's log is consulted here, not its run
store: these tests hold whatever the agent does with the records."""
import math
import os
import signal
import socket
import threading
import time

import pytest

from conftest import records, wait_for


def test_log_step_and_commit_follow_wandb(agent, env):
    agent.start()
    env.run("""
        import trackd
        run = trackd.init(project="steps", id="steps1", resume="allow")
        run.log({"a": 1})                       # a new step, committed
        run.log({"b": 2}, commit=False)         # accumulates
        run.log({"c": 3})                       # joins b's step, commits it
        run.log({"d": 4}, step=5)               # explicit step: not committed yet
        run.log({"e": 5}, step=5)               # same step
        run.log({"f": 6}, step=7, commit=True)  # commits 5, then 7
        run.log({"g": 7}, step=3)               # lower than the current step: dropped
        trackd.log({"h": 8})                    # module-level, on the current run
        run.finish()
        assert trackd.run is None
    """, TRACKD_SOCKET=agent.url)
    rows = records(agent, "steps1", "history")
    got = [(r["items"], r.get("step"), r["commit"]) for r in rows]
    assert got == [({"a": 1}, None, True), ({"b": 2}, None, False), ({"c": 3}, None, True),
                   ({"d": 4}, 5, False), ({"e": 5}, 5, False), ({"f": 6}, 7, True),
                   ({"h": 8}, None, True)]


def test_step_regression_warns_and_does_not_raise(agent, env):
    agent.start()
    r = env.run("""
        import trackd
        run = trackd.init(project="steps", console=False)
        run.log({"x": 1}, step=10, commit=True)
        run.log({"x": 2}, step=4)
        run.finish()
    """, TRACKD_SOCKET=agent.url)
    assert "trackd: step 4 < current step 11; row dropped" in r.stderr


def test_values_nested_and_duck_typed_numpy(agent, env):
    agent.start()
    env.run("""
        import trackd

        class Scalar:            # what numpy.float32(0.5) looks like, duck-typed
            ndim = 0
            def __init__(self, v): self.v = v
            def item(self): return self.v
        Scalar.__module__ = "numpy"

        run = trackd.init(project="values", id="values1", resume="allow")
        run.log({"loss": 0.25, "epoch": 3, "ok": True, "tag": "héllo",
                 "nan": float("nan"), "inf": float("-inf"), "big": 2**62,
                 "opt": {"lr": 0.001, "sched": {"kind": "cosine", "warm": 5}},
                 "np_f": Scalar(0.5), "np_i": Scalar(7), "np_b": Scalar(True),
                 "betas": (0.9, 0.999), "none": None, "mixed": [1, "a", None, [2, {"k": []}]],
                 "opt2": {"none": None, "empty": {}}})
        for bad in ({"set": {1, 2}}, {"opt": {"obj": object()}}, {"l": [1, object()]}):
            try:
                run.log(bad)
            except TypeError as e:
                print("TypeError:", e)
            else:
                raise SystemExit("accepted " + repr(bad))
        run.finish()
    """, TRACKD_SOCKET=agent.url)
    (row,) = records(agent, "values1", "history")
    items = row["items"]
    assert math.isnan(items.pop("nan")) and items.pop("inf") == -math.inf
    assert items == {"loss": 0.25, "epoch": 3, "ok": True, "tag": "héllo", "big": 2**62,
                     "opt": {"lr": 0.001, "sched": {"kind": "cosine", "warm": 5}},
                     "np_f": 0.5, "np_i": 7, "np_b": True, "betas": [0.9, 0.999],
                     "none": None, "mixed": [1, "a", None, [2, {"k": []}]],
                     "opt2": {"none": None, "empty": {}}}


def test_type_errors_name_the_key(env):
    r = env.run("""
        import trackd
        run = trackd.init(project="values", mode="offline", socket="ipc:///nonexistent/x.sock",
                          console=False)
        for bad in ({"layers": {1, 2}}, {"opt": {"sched": [0, object()]}},
                    {"s": "a\\x00b"}, {"u": "ab\\ud800c"}, {"k\\x00": 1}):
            try:
                run.log(bad)
            except trackd.InvalidValueError as e:
                print(e)
        run.finish(timeout=0)
    """)
    out = r.stdout
    assert "key 'layers': values of type set are not supported" in out
    assert "key 'opt.sched[1]': values of type object" in out
    assert "key 's': string contains a NUL character (U+0000) at position 1" in out
    assert "key 'u': string is not valid UTF-8 (lone surrogate at position 2)" in out
    assert "key contains a NUL character" in out


def test_config_summary_metrics_and_rename(agent, env, tmp_path):
    agent.start()
    (tmp_path / "config.yaml").write_text("epochs: 10\nopt:\n  lr: 0.01\n  kind: adam\n")
    env.run(f"""
        import trackd
        run = trackd.init(project="cfg", id="cfg1", resume="allow",
                          config={str(tmp_path / "config.yaml")!r}, tags=["a", "b"],
                          notes="n", group="g", job_type="train")
        assert run.config["opt"] == {{"lr": 0.01, "kind": "adam"}} and run.config.epochs == 10
        run.config["batch_size"] = 32
        run.config.update({{"dropout": 0.1, "arch": {{"depth": 4}}}})
        run.define_metric("loss", summary="min")
        run.define_metric("acc", summary="max")
        for loss, acc in [(0.5, 0.7), (0.2, 0.9), (0.4, 0.8)]:
            run.log({{"loss": loss, "acc": acc}})
        assert run.summary["loss"] == 0.2 and run.summary["acc"] == 0.9
        run.summary["best_epoch"] = 2
        run.summary.update({{"note": "done"}})
        run.name = "renamed-run"
        assert run.name == "renamed-run"
        run.finish()
    """, TRACKD_SOCKET=agent.url)
    recs = records(agent, "cfg1")
    # The process's own facts (program, cwd, git, Python version): one record,
    # sent from a thread of the library's, wherever it lands among the others.
    assert [r["type"] for r in recs].count("environment") == 1
    recs = [r for r in recs if r["type"] != "environment"]
    types = [r["type"] for r in recs]
    assert types == ["start", "config", "config", "define_metric", "define_metric",
                     "history", "history", "history", "summary", "summary", "rename", "exit"]
    assert recs[0]["config"] == {"epochs": 10, "opt": {"lr": 0.01, "kind": "adam"}}
    assert recs[1]["items"] == {"batch_size": 32}
    assert recs[2]["items"] == {"dropout": 0.1, "arch": {"depth": 4}}
    assert recs[8]["items"] == {"best_epoch": 2} and recs[9]["items"] == {"note": "done"}


def test_exception_in_with_block_fails_the_run(agent, env):
    agent.start()
    r = env.run("""
        import trackd
        with trackd.init(project="exc", id="exc1", resume="allow") as run:
            run.log({"x": 1})
            raise RuntimeError("boom")
    """, TRACKD_SOCKET=agent.url, check=False)
    assert r.returncode == 1 and "RuntimeError: boom" in r.stderr
    (ex,) = records(agent, "exc1", "exit")
    assert ex["exit_code"] == 1 and ex["reason"] == "finished"


def test_uncaught_exception_atexit_and_sys_exit(agent, env):
    agent.start()
    env.run("""
        import trackd
        run = trackd.init(project="ends", id="uncaught", resume="allow")
        raise ValueError("nobody catches this")
    """, TRACKD_SOCKET=agent.url, check=False)
    env.run("""
        import trackd
        run = trackd.init(project="ends", id="atexit", resume="allow")
        run.log({"x": 1})
    """, TRACKD_SOCKET=agent.url)
    r = env.run("""
        import sys, trackd
        run = trackd.init(project="ends", id="sysexit", resume="allow")
        sys.exit(3)
    """, TRACKD_SOCKET=agent.url, check=False)
    assert r.returncode == 3
    codes = {e["run_id"]: (e["exit_code"], e["reason"]) for e in records(agent, kind="exit")}
    assert codes == {"uncaught": (1, "finished"), "atexit": (0, "finished"),
                     "sysexit": (3, "finished")}
    # The hook prints the traceback first, through the tee, into the run.
    console = "".join(c["text"] for c in records(agent, "uncaught", "console"))
    assert "ValueError: nobody catches this" in console


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_the_run_as_killed(agent, env, sig):
    agent.start()
    p = env.popen("""
        import time, trackd
        run = trackd.init(project="sig", id="sig1", resume="allow")
        run.log({"x": 1})
        print("ready", flush=True)
        while True:
            run.log({"alive": 1}, commit=False)
            time.sleep(0.01)
    """, TRACKD_SOCKET=agent.url)
    assert p.stdout.readline().strip() == "ready"
    assert wait_for(lambda: records(agent, "sig1", "history"))
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == -sig, err
    (ex,) = records(agent, "sig1", "exit")
    assert ex["reason"] == "killed" and ex["exit_code"] == 128 + sig
    assert "Run summary:" in err  # the footer was printed on the way out


def test_ctrl_c_raises_keyboard_interrupt_as_without_trackd(agent, env):
    """Issue #12 item 4: init() leaves SIGINT to Python. The program's own
    `except KeyboardInterrupt` and `finally` run, and a run the program goes on
    to finish is finished."""
    agent.start()
    r = env.run("""
        import os, signal, time, trackd
        run = trackd.init(project="sig", id="caught1", resume="allow")
        try:
            try:
                run.log({"x": 1})
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(30)
            finally:
                print("finally ran", flush=True)
        except KeyboardInterrupt:
            print("caught", flush=True)
        run.log({"checkpoint": 1})
        run.finish()
    """, TRACKD_SOCKET=agent.url, timeout=20)
    assert r.stdout.splitlines()[:2] == ["finally ran", "caught"]
    (ex,) = records(agent, "caught1", "exit")
    assert (ex["reason"], ex["exit_code"]) == ("finished", 0)
    assert len(records(agent, "caught1", "history")) == 2


def test_uncaught_ctrl_c_in_with_is_killed_and_dies_of_sigint(agent, env):
    """Ctrl-C nobody catches: `finally` runs, Python prints the traceback and
    dies of SIGINT as it does without trackd, and the run is killed (130)."""
    agent.start()
    p = env.popen("""
        import time, trackd
        with trackd.init(project="sig", id="with1", resume="allow") as run:
            try:
                run.log({"x": 1})
                print("ready", flush=True)
                while True:
                    time.sleep(0.01)
            finally:
                print("finally ran", flush=True)
    """, TRACKD_SOCKET=agent.url)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGINT, err
    assert "finally ran" in out
    assert err.count("KeyboardInterrupt") == 1, err
    (ex,) = records(agent, "with1", "exit")
    assert (ex["reason"], ex["exit_code"]) == ("killed", 128 + signal.SIGINT)
    console = "".join(c["text"] for c in records(agent, "with1", "console"))
    assert "KeyboardInterrupt" in console


def test_exception_in_with_block_is_in_the_run_output_once(agent, env):
    """Issue #12 item 7: the traceback of an exception that leaves `with run:`
    is in the run's console output (output.log), and on the terminal once."""
    agent.start()
    r = env.run("""
        import trackd
        with trackd.init(project="ends", id="withexc", resume="allow") as run:
            run.log({"x": 1})
            raise ValueError("boom in the block")
    """, TRACKD_SOCKET=agent.url, check=False)
    assert r.returncode == 1
    # Printed by Python as it ends, after the footer; not a second time by us.
    assert r.stderr.count("ValueError: boom in the block") == 1, r.stderr
    text = "".join(c["text"] for c in records(agent, "withexc", "console"))
    assert "Traceback (most recent call last):" in text
    assert "ValueError: boom in the block" in text
    (ex,) = records(agent, "withexc", "exit")
    assert (ex["reason"], ex["exit_code"]) == ("finished", 1)


def test_sigterm_handler_of_the_program_is_respected(agent, env):
    """A program that handles SIGTERM itself keeps its handler, installed
    before or after init; the run ends by how the program then ends."""
    agent.start()
    for when in ("before", "after"):
        p = env.popen(f"""
            import os, signal, sys, time, trackd
            def stop(signum, frame):
                # Not print: the signal may come while print("ready") is still
                # in stdout's buffer code, which is not reentrant.
                os.write(1, b"my handler\\n")
                sys.exit(5)
            if "{when}" == "before":
                signal.signal(signal.SIGTERM, stop)
            run = trackd.init(project="sig", id="term{when}", resume="allow")
            if "{when}" == "after":
                signal.signal(signal.SIGTERM, stop)
            run.log({{"x": 1}})
            print("ready", flush=True)
            while True:
                time.sleep(0.01)
        """, TRACKD_SOCKET=agent.url)
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 5, (when, err)
        assert "my handler" in out
        (ex,) = records(agent, f"term{when}", "exit")
        assert (ex["reason"], ex["exit_code"]) == ("finished", 5), when


def test_console_is_teed_into_the_run(agent, env):
    agent.start()
    r = env.run("""
        import sys, trackd
        run = trackd.init(project="console", id="con1", resume="allow")
        print("epoch 1")
        print("epoch 2", "done")
        print("problem", file=sys.stderr)
        sys.stdout.write("no newline yet")
        run.finish()
    """, TRACKD_SOCKET=agent.url)
    assert "epoch 1\nepoch 2 done\nno newline yet" in r.stdout
    cons = records(agent, "con1", "console")
    out = "".join(c["text"] for c in cons if c["stream"] == "stdout")
    err = "".join(c["text"] for c in cons if c["stream"] == "stderr")
    assert out == "epoch 1\nepoch 2 done\nno newline yet"
    assert err.startswith("problem\n")
    # The footer is printed by the package after the run's output, not recorded.
    assert "Run summary" not in err
    assert r.stderr.index("problem") < r.stderr.index("View it: trackctl show")


def test_footer_printed_at_finish(agent, env):
    agent.start()
    r = env.run("""
        import trackd
        run = trackd.init(project="foot", id="foot1", entity="ent", resume="allow")
        for i in range(10):
            run.log({"acc": i / 9, "loss": 1 - i / 9})
        run.log({"late": 1.0}, commit=False)   # committed at finish, so in the footer
        run.finish()
    """, TRACKD_SOCKET=agent.url)
    err = r.stderr
    assert "Run history:\n" in err and "Run summary:\n" in err
    assert " acc ▁▂▃▃▄▅▆▆▇█\n" in err and "loss █▇▆▆▅▄▃▃▂▁\n" in err
    assert "late 1.0\n" in err
    assert "View it: trackctl show ent/foot/foot1\n" in err
    assert "Run data: " + agent.state_dir + "/runs/ent/foot/run-" in err
    # The pending row was committed by an empty row at finish.
    assert records(agent, "foot1", "history")[-1]["items"] == {}


def test_offline_run_footer_gives_the_sync_hint(agent, env):
    agent.start()
    r = env.run("""
        import trackd
        run = trackd.init(project="off", id="off1", mode="offline", resume="allow")
        run.log({"loss": 0.5})
        run.finish()
    """, TRACKD_SOCKET=agent.url)
    assert "Offline run; upload it later with: trackctl sync off1\n" in r.stderr
    assert "View it:" not in r.stderr
    assert len(records(agent, "off1", "history")) == 1


def test_disabled_mode_does_no_io(env, tmp_path):
    """No library is loaded and nobody connects to the socket."""
    path = str(tmp_path / "listener.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    srv.settimeout(0.2)
    accepted = []

    def accept():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                accepted.append(srv.accept())
            except socket.timeout:
                pass

    t = threading.Thread(target=accept)
    t.start()
    r = env.run("""
        import sys, trackd
        run = trackd.init(project="off", mode="disabled", config={"lr": 0.1})
        for i in range(1000):
            run.log({"x": i})
            trackd.log({"y": i})
        run.config["a"] = 1
        run.summary["b"] = 2
        run.define_metric("x", summary="max")
        run.name = "n"
        print(run.id, run.dir)
        run.finish()
        assert "trackd._lib" not in sys.modules or sys.modules["trackd._lib"]._lib is None
    """, TRACKD_SOCKET="ipc://" + path, TRACKD_LIB="/nonexistent/libtrackd.so")
    t.join()
    srv.close()
    assert accepted == []
    assert r.stdout.strip().endswith(" None")
    assert env.spool_files() == []


def test_agent_down_whole_life_then_later_client_delivers(agent, env):
    # The agent is not running: everything goes to the spool at finish.
    r = env.run("""
        import trackd
        run = trackd.init(project="spool", id="spooled1", resume="allow")
        for i in range(100):
            run.log({"i": i})
        run.finish(timeout=0.5)
        rep = run.finish_report
        print(rep["records_logged"], rep["records_spooled"], rep["records_acked"])
    """, TRACKD_SOCKET=agent.url)
    assert r.stdout.split() == ["103", "103", "0"]  # start, 100 rows, environment, exit
    assert "spooled on disk" in r.stderr
    assert len(env.spool_files()) == 1

    agent.start()
    env.run("""
        import trackd
        run = trackd.init(project="spool", id="later1", resume="allow")
        run.log({"i": 0})
        run.finish()
    """, TRACKD_SOCKET=agent.url)
    rows = records(agent, "spooled1", "history")
    assert [r["items"]["i"] for r in rows] == list(range(100))
    assert len(records(agent, "spooled1", "exit")) == 1
    seqs = [r["seq"] for r in records(agent, "spooled1")]
    assert seqs == sorted(seqs)
    assert env.spool_files() == []
    # Once only: a third client finds nothing left to deliver.
    env.run("""
        import trackd
        trackd.init(project="spool", id="third1", resume="allow").finish()
    """, TRACKD_SOCKET=agent.url)
    assert len(records(agent, "spooled1", "history")) == 100


def test_names_follow_wandb_rules_at_init(env):
    """Issue #12 item 10: a project with '/' or a run id with a space cannot be
    reached or put in a URL: init refuses them, naming the rule."""
    r = env.run("""
        import trackd
        for kw, rule in (({"project": "team/proj"}, "project must not contain '/'"),
                         ({"id": "my run"}, "only letters, digits, '-' and '_'"),
                         ({"entity": "me:you"}, "entity must not contain ':'")):
            try:
                trackd.init(console=False, **kw)
            except ValueError as e:
                assert rule in str(e), (kw, e)
            else:
                raise AssertionError(f"accepted {kw}")
        print("ok")
    """, TRACKD_SOCKET="ipc:///nonexistent/trackd.sock", TRACKD_NO_AUTOSTART="1")
    assert r.stdout.strip() == "ok"
