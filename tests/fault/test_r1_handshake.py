"""R1's rare case, made deterministic: the agent is killed right after accepting a
connection, before the SP handshake completes. NNG 1.5's dialer then stops
redialling for good (found by the 500-kill run: two producers never reconnected),
so libtrackd replaces its dialer after TDI_REDIAL_AFTER attempts that found no
connection. Here a plain Unix socket listener stands in for the dying agent:
it accepts and closes every connection for a while, then a real agent takes the
socket; every row must be acknowledged and delivered. The spool replay
(`trackctl spool flush`, and a new client replaying what a dead one spooled)
dials the same way and must survive the same cut."""
import json
import os
import socket
import subprocess
import threading
import time

import judge
from harness import BIN, PROJECT, Agent, Fleet, emit, wait_local_drained


def cut_handshakes(agent, seconds=3, then=None):
    """Stands in for an agent that dies right after accepting: accepts and closes
    every connection on the agent's socket path for `seconds`; returns how many.
    `then` is called once the stand-in listens (the client dials into it)."""
    path = agent.url[len("ipc://"):]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(0.2)
    if then:
        then()
    cut, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        conn.close()
        cut += 1
    listener.close()
    os.unlink(path)
    return cut


def test_client_reconnects_after_handshake_cut(tmp_path, agents):
    agent = Agent(tmp_path)
    agents.append(agent)
    fleet = Fleet(agent, str(tmp_path / "ledgers"))
    cut = cut_handshakes(agent, then=lambda: fleet.start(n_c=2, n_py=1, rows=2000,
                                                         sleep_us=1000, every=10))
    assert cut > 0, "no producer connected to the stand-in listener"
    agent.start()
    rcs = fleet.wait(timeout=120)
    assert fleet.live() == 0
    ledgers = fleet.ledgers()
    ended = wait_local_drained(agent, ledgers)
    local, problems = judge.local_delivery(agent.state_dir, PROJECT)
    v = judge.judge("R1-handshake", "local", ledgers, local, problems + ended,
                    extra=f"handshakes_cut={cut}")
    emit(v)
    assert all(rc == 0 for rc in rcs.values()), rcs


def test_spool_flush_reconnects_after_handshake_cut(tmp_path, agents):
    """`trackctl spool flush` started while connections are being cut during the
    handshake delivers everything once the real agent is up (it used to wait
    on a dialer that had given up, until its timeout)."""
    agent = Agent(tmp_path)
    agents.append(agent)
    agent.env["XDG_STATE_HOME"] = str(tmp_path / "client-state")
    p = agent.producer("spooled", 500, "--timeout-ms", 500)
    out, err = p.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["acked"] == 0 and report["status"] != "success", (report, err)
    flush = {}

    def run_flush():
        flush["r"] = subprocess.run([BIN["trackctl"], "spool", "flush"], env=agent.env,
                                    capture_output=True, text=True, timeout=300)

    t = threading.Thread(target=run_flush)
    cut = cut_handshakes(agent, then=t.start)
    assert cut > 0, "the flush never connected to the stand-in listener"
    agent.start()
    t.join(timeout=300)
    r = flush["r"]
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("502 spooled records delivered"), r.stdout
    agent.wait_for(lambda: agent.run_state("spooled") is not None, what="the run")
    run_dir = agent.query("run", run="spooled")["run"]["dir"]
    agent.wait_for(lambda: len(open(os.path.join(run_dir, "history.jsonl")).readlines()) >= 500,
                   what="every spooled row in the run store")
    with open(os.path.join(run_dir, "history.jsonl")) as f:
        steps = [json.loads(line)["_step"] for line in f]
    assert steps == list(range(500)), f"{len(steps)} rows"
