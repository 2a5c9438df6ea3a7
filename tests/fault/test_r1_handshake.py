"""R1's rare case, made deterministic: the agent is killed right after accepting a
connection, before the SP handshake completes. NNG 1.5's dialer then stops
redialling for good (found by the 500-kill run: two producers never reconnected),
so libtrackd replaces its dialer after TD_REDIAL_AFTER attempts that found no
connection. Here a plain Unix socket listener stands in for the dying agent:
it accepts and closes every connection for a while, then a real agent takes the
socket; every row must be acknowledged and delivered."""
import os
import socket
import time

import judge
from harness import PROJECT, Agent, Fleet, emit, wait_local_drained


def test_client_reconnects_after_handshake_cut(tmp_path, agents):
    agent = Agent(tmp_path)
    agents.append(agent)
    path = agent.url[len("ipc://"):]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(0.2)
    fleet = Fleet(agent, str(tmp_path / "ledgers")).start(n_c=2, n_py=1, rows=2000,
                                                           sleep_us=1000, every=10)
    cut, end = 0, time.monotonic() + 3
    while time.monotonic() < end:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        conn.close()
        cut += 1
    listener.close()
    os.unlink(path)
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
