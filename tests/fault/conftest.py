"""Fixtures of the fault suite (the harness itself is harness.py)."""
import pytest

from harness import LIVE_FLEETS, FakeWandb, e2e, require_tools

# No process outlives its test (tests/e2e/conftest.py).
no_process_left_behind = e2e.no_process_left_behind


@pytest.fixture(scope="module")
def fake_server():
    fw = FakeWandb(max_hold=30).start()
    yield fw
    fw.stop()


@pytest.fixture
def fw(fake_server):
    fake_server.reset()
    yield fake_server
    fake_server.clear_faults()


@pytest.fixture
def agents():
    """A list to put started agents in; each is killed at the end if still up."""
    require_tools()
    started = []
    yield started
    while LIVE_FLEETS:
        LIVE_FLEETS.pop().kill()
    for a in started:
        if a.proc and a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()
