"""systemd integration, checked with a real notify socket made by the test:
READY=1 only once the agent answers, WATCHDOG=1 at half WATCHDOG_USEC, STOPPING=1
on SIGTERM. (The unit files themselves are checked in test_packaging.py.)"""
import os
import shutil
import socket
import time

from conftest import Agent, finish_producer


def read_messages(sock, until, timeout=20):
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except socket.timeout:
            break
        messages.append(data)
        if until(messages):
            break
    return messages


def test_notify_sequence(agent, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    agent.env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
    agent.start(wait=False)
    msgs = read_messages(sock, lambda m: any("READY=1" in x for x in m))
    assert msgs and "READY=1" in msgs[-1], msgs
    # READY means ready: a client is served right away.
    assert agent.status()["agent"] == "up"
    p = agent.producer("svc", 100)
    finish_producer(p)
    pings = read_messages(sock, lambda m: sum("WATCHDOG=1" in x for x in m) >= 3)
    assert sum("WATCHDOG=1" in x for x in pings) >= 3, pings
    assert all("STATUS=" in x for x in pings if "WATCHDOG=1" in x)
    agent.proc.send_signal(15)
    tail = read_messages(sock, lambda m: any("STOPPING=1" in x for x in m))
    assert any("STOPPING=1" in x for x in tail), tail
    assert agent.proc.wait(timeout=30) == 0


def test_stopped_agent_stops_pinging(agent, tmp_path):
    """A frozen process (SIGSTOP) sends nothing: systemd's watchdog would fire."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    agent.env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    agent.start(wait=False)
    read_messages(sock, lambda m: sum("WATCHDOG=1" in x for x in m) >= 2)
    agent.proc.send_signal(19)  # SIGSTOP
    time.sleep(0.3)
    while True:  # drain what was sent before the stop
        sock.settimeout(0.05)
        try:
            sock.recv(4096)
        except socket.timeout:
            break
    assert read_messages(sock, lambda m: True, timeout=1.0) == []
    agent.proc.send_signal(18)  # SIGCONT
    again = read_messages(sock, lambda m: any("WATCHDOG=1" in x for x in m), timeout=5)
    assert any("WATCHDOG=1" in x for x in again)


def test_deleted_socket_is_listened_on_anew(tmp_path):
    """Someone removes the socket file: the listener check finds the agent
    unreachable and listens anew; clients get through again."""
    sockdir = tmp_path / "sock"
    sockdir.mkdir()
    a = Agent(tmp_path, socket_dir=sockdir).start()
    try:
        os.unlink(sockdir / "trackd.sock")
        a.wait_for(lambda: (sockdir / "trackd.sock").exists(), what="the socket made anew")
        rep = finish_producer(a.producer("after-unlink", 10))
        assert rep["acked"] == rep["logged"]
        assert "listening anew" in a.log()
    finally:
        a.stop()


def test_agent_that_cannot_listen_anew_exits_for_a_restart(tmp_path):
    """The socket's directory is gone, so listening anew fails: after a few
    tries the agent stops with exit status 1 (systemd's Restart=on-failure then
    starts a fresh one) instead of running on unreachable."""
    sockdir = tmp_path / "sock"
    sockdir.mkdir()
    a = Agent(tmp_path, socket_dir=sockdir).start()
    shutil.rmtree(sockdir)
    try:
        assert a.proc.wait(timeout=60) == 1, a.log()
    finally:
        if a.proc.poll() is None:
            a.proc.kill()
    assert "cannot listen anew 3 times in a row" in a.log()
