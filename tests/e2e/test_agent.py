"""End-to-end tests of the durable path: client library → NNG → agent → txlog.
Every test starts real processes; assertions are about what is in the log."""
import json
import os
import random
import subprocess
import sys
import textwrap
import time

from conftest import (BIN, ITERATIONS, Agent, batch_request, field_bytes, field_varint,
                      finish_producer, history_by_run, history_record, item_double,
                      legacy_query_request, python_client_env, query_request, status_request)


def test_example_training_is_recorded(agent):
    agent.start()
    r = subprocess.run([BIN["train"]], env=agent.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    records = agent.dump()
    starts = [x for x in records if x["type"] == "start"]
    assert len(starts) == 1
    assert starts[0]["config"] == {"epochs": 10, "learning_rate": 0.01}
    run_id = starts[0]["run_id"]
    rows = [x for x in records if x["type"] == "history"]
    assert len(rows) == 10
    assert all("step" not in x for x in rows)  # TD_STEP_AUTO: the agent numbers them
    for x in rows:
        assert x["run_id"] == run_id
        assert set(x["items"]) == {"accuracy", "loss"}
        assert 0 <= x["items"]["accuracy"] <= 1 and x["items"]["loss"] > 0
    exits = [x for x in records if x["type"] == "exit"]
    assert len(exits) == 1 and exits[0]["exit_code"] == 0
    assert agent.stop() == 0


def test_values_round_trip_exactly(agent):
    agent.start()
    p = agent.producer("exact", 500)
    rep = finish_producer(p)
    assert rep["acked"] == rep["logged"] == 502  # start + 500 rows + exit
    rows = [x for x in agent.dump(history_only=True) if x["run_id"] == "exact"]
    assert len(rows) == 500
    for i, x in enumerate(rows):
        assert x["step"] == i
        assert x["items"] == {"i": i, "value": i * 0.5, "tag": f"r{i}"}


def test_agent_started_after_the_client(agent):
    p = agent.producer("late", 300)
    time.sleep(1.0)  # the client runs and buffers with no agent at all
    assert p.poll() is None, "the client must not give up while the agent is absent"
    agent.start()
    rep = finish_producer(p)
    assert rep["acked"] == rep["logged"]
    assert history_by_run(agent.dump())["late"] == list(range(300))


def test_kill9_during_logging_loses_no_acknowledged_row(agent):
    """R1 in small: several producers log while the agent is killed with SIGKILL
    at random moments and restarted. Every producer's td_finish must report
    everything acknowledged, and the log must hold each row exactly once."""
    rng = random.Random(int(os.environ.get("TRACKD_TEST_SEED", "1234")))
    kills = max(ITERATIONS, 3)
    producers = 4
    rows = 20000
    agent.start()
    procs = {f"p{i}": agent.producer(f"p{i}", rows, "--sleep-us", 200, "--every", 50,
                                     "--timeout-ms", 120000) for i in range(producers)}
    for _ in range(kills):
        time.sleep(rng.uniform(0.05, 0.6))
        agent.kill9()
        time.sleep(rng.uniform(0.0, 0.3))
        agent.start()
    reports = {name: finish_producer(p, timeout=300) for name, p in procs.items()}
    steps = history_by_run(agent.dump())
    for name, rep in reports.items():
        assert rep["unacked"] == 0 and rep["acked"] == rep["logged"], rep
        got = steps.get(name, [])
        dupes = len(got) - len(set(got))
        missing = sorted(set(range(rows)) - set(got))
        assert dupes == 0, f"{name}: {dupes} duplicate rows"
        assert not missing, f"{name}: {len(missing)} rows lost, first {missing[:10]}"
        assert got == sorted(got), f"{name}: rows out of order"
    status = agent.status()
    assert status["records_quarantined"] == 0


def test_sigterm_answers_received_requests_and_exits_zero(agent):
    agent.start()
    p = agent.producer("term", 20000, "--sleep-us", 100, "--every", 20)
    time.sleep(0.5)
    assert agent.stop() == 0
    assert "stopped cleanly" in agent.log()
    agent.start()
    rep = finish_producer(p)
    assert rep["acked"] == rep["logged"]
    assert history_by_run(agent.dump())["term"] == list(range(20000))


def test_restart_loop_under_load_loses_nothing(tmp_path):
    """R14: SIGTERM and restart, again and again, while four producers log (until
    the loop is over). Every stop is clean (exit 0, not cut short by the shutdown
    deadline), every row arrives exactly once, in order, in the log and in the run
    files."""
    rng = random.Random(int(os.environ.get("TRACKD_TEST_SEED", "1234")))
    restarts = max(ITERATIONS, 6)
    stop = tmp_path / "stop-logging"
    a = Agent(tmp_path, config="shutdown_timeout: 10s\n").start()
    try:
        procs = {f"r{i}": a.producer(f"r{i}", 10**8, "--sleep-us", 2000, "--every", 10,
                                     "--until-file", stop, "--timeout-ms", 180000)
                 for i in range(4)}
        for n in range(restarts):
            time.sleep(rng.uniform(0.05, 0.5))
            code = a.stop(timeout=30)
            assert code == 0, f"stop {n}: exit {code}\n{a.log()}"
            a.start()
        assert all(p.poll() is None for p in procs.values()), "a producer ended early"
        stop.touch()
        assert a.log().count("stopped cleanly") == restarts
        handed = {name: json.loads(p.stdout.readline())["handed_off"]
                  for name, p in procs.items()}
        reports = {name: finish_producer(p, timeout=300) for name, p in procs.items()}
        steps = history_by_run(a.dump())
        for name, rep in reports.items():
            rows = handed[name]
            assert rep["unacked"] == 0 and rep["acked"] == rep["logged"], rep
            assert steps.get(name) == list(range(rows)), f"{name}: {len(steps.get(name, []))}"
            a.wait_for(lambda: a.run_state(name) == "finished", what=f"{name} finished")
            with open(os.path.join(a.query("run", run=name)["run"]["dir"],
                                   "history.jsonl")) as f:
                assert [json.loads(line)["i"] for line in f] == list(range(rows)), name
    finally:
        a.stop()


def test_duplicate_batch_is_acked_but_stored_once(agent):
    agent.start()
    session = bytes(range(16))
    req = batch_request(session, 1, [history_record("dup", 0, [item_double("x", 1.0)])])
    first, second = agent.raw(req, req)
    assert first == {"ack": {"seq": 1, "duplicate": False}}
    assert second == {"ack": {"seq": 1, "duplicate": True}}
    # The dedupe table survives a restart: it is rebuilt from the log.
    agent.kill9()
    agent.start()
    (third,) = agent.raw(req)
    assert third == {"ack": {"seq": 1, "duplicate": True}}
    assert history_by_run(agent.dump())["dup"] == [0]


def test_bad_requests_get_clear_errors_and_do_not_disturb_good_clients(agent):
    agent.start()
    good = agent.producer("good", 2000, "--sleep-us", 500, "--every", 100)
    session = os.urandom(16)
    rec = history_record("bad", 0, [item_double("x", 1.0)])
    cases = [
        (b"\xff\xff\xff", 2, "undecodable"),
        (b"", 1, "protocol_version missing"),
        (batch_request(session, 1, [rec], version=2), 1, "version 2 is not supported"),
        (batch_request(session[:15], 1, [rec]), 3, "session_id must be 16 bytes"),
        (batch_request(session, 0, [rec]), 3, "seq is missing or 0"),
        (batch_request(session, 1, [history_record("a/b", 0, [item_double("x", 1)])]), 3,
         "forbidden character"),
        (batch_request(session, 1, [history_record("r", 0, [item_double("", 1)])]), 3,
         "empty key"),
        (batch_request(session, 1, [history_record("r", 0, [
            field_bytes(1, b"k\xc3(") + field_bytes(2, b"\x09" + b"\0" * 8)])]), 3, "UTF-8"),
    ]
    replies = agent.raw(*[c[0] for c in cases])
    for (payload, code, text), reply in zip(cases, replies):
        assert "error" in reply, (payload, reply)
        assert reply["error"]["code"] == code, (text, reply)
        assert text in reply["error"]["message"], (text, reply)
        assert reply["error"]["retryable"] is False
    rep = finish_producer(good)
    assert rep["acked"] == rep["logged"]
    assert history_by_run(agent.dump())["good"] == list(range(2000))
    assert "bad" not in history_by_run(agent.dump())
    # Every rejection counted exactly.
    assert agent.status()["requests_rejected"] == len(cases)


def test_string_queries_of_old_clients_are_refused_clearly(agent):
    """A client from before typed queries sends Query{kind}: the agent answers
    UNSUPPORTED_VERSION naming the fix, and goes on serving typed queries."""
    agent.start()
    old_run, old_runs, new_runs, empty = agent.raw(
        legacy_query_request("run", run="x"), legacy_query_request("runs"),
        query_request("runs"), field_varint(1, 1) + field_bytes(4, b""))
    for reply in (old_run, old_runs):
        assert reply["error"]["code"] == 1, reply
        assert "speaks string queries" in reply["error"]["message"], reply
        assert "upgrade the client" in reply["error"]["message"], reply
    assert new_runs == {"query": {"runs": []}}
    assert empty["error"]["code"] == 3, empty


def test_message_size_limit(tmp_path):
    """limits.max_message_bytes at limit−1, limit, limit+1; far over the limit
    the transport drops the connection instead of allocating."""
    limit = 4096
    a = Agent(tmp_path, config=f"limits:\n  max_message_bytes: {limit}B\n").start()
    try:
        session = os.urandom(16)

        def request_of_size(size, seq):
            base = batch_request(session, seq, [history_record("size", seq, [])])
            pad = size - len(base)
            # Grow a string value until the whole request has exactly `size` bytes.
            for n in range(pad, pad - 16, -1):
                item = field_bytes(1, "s") + field_bytes(2, field_bytes(4, "x" * max(n, 0)))
                req = batch_request(session, seq, [history_record("size", seq, [item])])
                if len(req) == size:
                    return req
            raise AssertionError("could not build a request of that size")

        replies = a.raw(request_of_size(limit - 1, 1), request_of_size(limit, 2),
                        request_of_size(limit + 1, 3))
        assert replies[0] == {"ack": {"seq": 1, "duplicate": False}}
        assert replies[1] == {"ack": {"seq": 2, "duplicate": False}}
        assert replies[2]["error"]["code"] == 4
        assert "limit 4096" in replies[2]["error"]["message"]
        (far,) = a.raw(b"\x08\x01" + b"\x00" * (limit * 4))
        assert "no_reply" in far
        assert a.raw_status()["requests_rejected"] == 1
        assert history_by_run(a.dump())["size"] == [1, 2]
    finally:
        a.stop()


def test_client_learns_lower_agent_limits_and_refuses_only_the_bad_record(tmp_path):
    """An agent configured below the protocol's default limits tells them in
    every ack; the client then checks each record against them, so a record the
    agent would refuse is refused at log() with a clear error, and batches fit
    the agent's message limit: no batch (with its good rows) is refused."""
    a = Agent(tmp_path, config="limits:\n  max_message_bytes: 16KiB\n"
                               "  max_string_bytes: 100B\n  max_key_bytes: 16B\n").start()
    try:
        script = textwrap.dedent("""
            import time, trackd
            api = trackd.Api()

            def wait_row(step):
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        if len(api.run("lim").history()) > step:
                            return
                    except trackd.errors.NotFoundError:
                        pass
                    time.sleep(0.02)
                raise SystemExit(f"row {step} never arrived")

            run = trackd.init(project="lim", id="lim")
            run.log({"x": 0.0})
            wait_row(0)
            # One batch in flight at a time: row 1 goes out only after the ack
            # that carried the limits was read.
            run.log({"x": 1.0})
            wait_row(1)
            for bad in ({"s": "y" * 101}, {"k" * 17: 1.0}):
                try:
                    run.log(bad)
                except ValueError as e:
                    print("refused:", e)
                else:
                    raise SystemExit(f"accepted {list(bad)[0][:20]}")
            run.log({"s": "y" * 100, "k" * 16: 1.0})
            for step in range(3, 503):
                run.log({f"m{i}": float(step * i) for i in range(100)})
            run.finish()
        """)
        r = subprocess.run([sys.executable, "-c", script], env=python_client_env(a.env),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (r.stdout, r.stderr)
        refusals = [line for line in r.stdout.splitlines() if line.startswith("refused:")]
        assert len(refusals) == 2, r.stdout
        assert "longer than 100 bytes" in refusals[0], refusals
        assert "key is longer than 16 bytes" in refusals[1], refusals
        st = a.raw_status()
        assert st["requests_rejected"] == 0, st
        a.wait_for(lambda: a.run_state("lim") == "finished", what="the run finished")
        steps = [h["_step"] for h in a.query("history", run="lim", keys=["x"])["lines"]]
        assert steps == list(range(503)), f"{len(steps)} rows"
    finally:
        assert a.stop() == 0


def test_fsync_always_acks_after_sync(tmp_path):
    a = Agent(tmp_path, config="txlog:\n  fsync: always\n").start()
    try:
        procs = [a.producer(f"s{i}", 3000) for i in range(3)]
        for p in procs:
            rep = finish_producer(p)
            assert rep["acked"] == rep["logged"]
        st = a.status()
        assert st["durable_index"] == st["last_index"]
        runs = history_by_run(a.dump())
        for i in range(3):
            assert runs[f"s{i}"] == list(range(3000))
    finally:
        assert a.stop() == 0


def test_run_start_and_exit_are_durable_when_acked_under_every_policy(tmp_path):
    """Under `interval` (here 60 s, so the flusher never runs during the test) a
    row is acked before it is durable, but a run's start and exit are acked only
    after an fdatasync: a power cut can lose the last interval of rows, never the
    run they belong to."""
    # No system metrics: the log's indexes are checked record by record, and
    # the sampler's record for the new run would take one at a time of its own.
    a = Agent(tmp_path, config="txlog:\n  fsync: interval\n  fsync_interval: 60s\n"
                               "system_metrics:\n  enabled: false\n").start()
    try:
        session = os.urandom(16)
        start = field_bytes(1, "dur") + field_bytes(2, field_bytes(1, "proj"))
        exit_ = field_bytes(1, "dur") + field_bytes(7, field_varint(1, 0))
        # One connection, a status after each batch (a new client process per
        # batch would end the run: the agent marks it crashed, a record of its own).
        replies = a.raw(batch_request(session, 1, [start]), status_request(),
                        batch_request(session, 2, [history_record("dur", 0, [])]),
                        status_request(),
                        batch_request(session, 3, [history_record("dur", 1, []), exit_]),
                        status_request())
        for seq, reply in zip((1, 2, 3), replies[0::2]):
            assert reply == {"ack": {"seq": seq, "duplicate": False}}
        after_start, after_row, after_exit = (r["status"] for r in replies[1::2])
        assert after_start["durable_index"] == after_start["last_index"] == 1, \
            "start acked before it was durable"
        assert after_row["durable_index"] == 1 and after_row["last_index"] == 2, \
            "under interval a plain row is acked before its fdatasync"
        assert after_exit["durable_index"] == after_exit["last_index"] == 3, \
            "exit acked before it (and the row before it) were durable"
    finally:
        assert a.stop() == 0


def test_bad_config_names_file_line_and_column(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("txlog:\n  fsync: sometimes\n")
    r = subprocess.run([BIN["trackd"], "--config", str(cfg), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{cfg}:2:10:" in r.stderr, r.stderr


def test_second_agent_on_the_same_socket_refuses_to_start(agent):
    agent.start()
    r = subprocess.run([BIN["trackd"], "--state-dir", agent.state_dir + "2", "--listen",
                        agent.url], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "another agent already listens" in r.stderr
    agent.status()  # the first one is unaffected


def test_peer_that_hangs_up_during_the_handshake_does_not_lock_clients_out(agent):
    """A bare connect-and-close wedges NNG 1.5.2's listener (nanomsg/nng#1518);
    the agent notices that new clients cannot connect and listens anew."""
    import socket
    agent.start()
    path = agent.url[len("ipc://"):]
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.close()
    p = agent.producer("after-rogue", 100)
    rep = finish_producer(p)
    assert rep["acked"] == rep["logged"]
    assert history_by_run(agent.dump())["after-rogue"] == list(range(100))


def test_disk_budget_refuses_then_resumes_and_loses_nothing(tmp_path):
    """R5/R6: with a tiny budget the agent refuses batches (retryable, counted)
    instead of passing the cap; clients keep and resend them; everything arrives
    once sinks release segments. Producers are added in rounds until the budget
    has been hit (a slow build writes less per second than the sink releases)."""
    # The smallest budget the agent accepts with 4 MiB requests: 4 of them.
    cap = 16 << 20
    rows = 300000
    a = Agent(tmp_path, config=f"txlog:\n  segment_bytes: 1MiB\n  max_bytes: {cap}B\n").start()
    try:
        names, peak, refusals = [], 0, 0
        for round_no in range(6):
            procs = {f"b{round_no}_{i}": a.producer(f"b{round_no}_{i}", rows,
                                                    "--timeout-ms", 120000)
                     for i in range(4)}
            names += procs
            while any(p.poll() is None for p in procs.values()):
                st = a.raw_status()
                peak = max(peak, st["log_bytes"])
                time.sleep(0.02)
            for p in procs.values():
                rep = finish_producer(p)
                assert rep["acked"] == rep["logged"], rep
            refusals = a.raw_status()["budget_refusals"]
            if refusals:
                break
        assert refusals > 0, "the budget was never reached in 6 rounds"
        assert peak <= cap, f"usage {peak} passed the budget {cap}"
        # The log itself no longer holds the early rows (their segments were
        # released): read them from the run store the local sink wrote.
        for name in names:
            a.wait_for(lambda: a.run_state(name) == "finished", what=f"{name} finished")
            steps = [json.loads(line)["i"] for line in
                     open(os.path.join(a.query("run", run=name)["run"]["dir"],
                                       "history.jsonl"))]
            assert steps == list(range(rows)), f"{name}: {len(steps)} rows"
    finally:
        a.stop()


def test_budget_smaller_than_four_requests_is_a_config_error(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("txlog:\n  max_bytes: 15MiB\n")
    r = subprocess.run([BIN["trackd"], "--config", str(cfg), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "txlog.max_bytes" in r.stderr and "limits.max_message_bytes" in r.stderr


def test_check_config_reports_every_error(tmp_path):
    """Issue #12 item 10: all the file's errors at once, file:line:col each."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("log_levl: info\ntxlog:\n  fsync: sometimes\ncolour: blue\n")
    r = subprocess.run([BIN["trackd"], "--config", str(cfg), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert [line.removeprefix("trackd: ").split(": ")[0] for line in lines] == \
        [f"{cfg}:1:1", f"{cfg}:3:10", f"{cfg}:4:1"], r.stderr


def test_32_producers_fast_and_slow_all_arrive_in_order(agent):
    """R10: 32 client processes at once, some logging as fast as they can, some
    slowly: nothing lost, each producer's rows in its own order, none starved."""
    agent.start()
    procs = {}
    for i in range(32):
        if i % 4 == 0:  # slow: spread over about two seconds
            procs[f"m{i}"] = agent.producer(f"m{i}", 400, "--sleep-us", 5000, "--every", 1)
        else:
            procs[f"m{i}"] = agent.producer(f"m{i}", 5000)
    reports = {name: finish_producer(p, timeout=300) for name, p in procs.items()}
    runs = history_by_run(agent.dump())
    for name, rep in reports.items():
        assert rep["acked"] == rep["logged"], rep
        rows = 400 if int(name[1:]) % 4 == 0 else 5000
        assert runs.get(name) == list(range(rows)), f"{name}: {len(runs.get(name, []))} rows"
