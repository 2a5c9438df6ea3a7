"""R5 on a real filesystem: the agent's state dir on a small tmpfs that fills up.

The documented policy (README, "Disk budget"): a batch that does not fit is
refused with a retryable error and counted (budget_refusals); clients keep it and
resend; training never blocks; the local sink pauses while it cannot write its
run files (the log keeps the records); ingest and the sink resume when space is
released; the log is never corrupted and nothing acknowledged is lost."""
import json
import os
import select
import subprocess
import time

import pytest

from conftest import Agent, finish_producer, require_bins

FS_BYTES = 256 << 20
FREE_BYTES = 6 << 20  # left free at the start: history files and log fill it quickly


@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of FS_BYTES mounted for the test, almost filled by a filler file
    that the test deletes to release space."""
    require_bins()
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt, leave_free):
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(0, free - leave_free))
    return filler


def read_marker(p, deadline):
    """The producer's first stdout line ({"handed_off": N}), or None at deadline."""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([p.stdout], [], [], 0.1)
        if ready:
            return json.loads(p.stdout.readline())
        if p.poll() is not None:
            return None
    return None


def test_disk_full_refuses_keeps_everything_and_resumes(tmp_path, small_fs):
    state = small_fs / "state"
    a = Agent(tmp_path, config="txlog:\n  segment_bytes: 1MiB\n")
    a.state_dir = str(state)
    a.start()
    filler = fill(small_fs, FREE_BYTES)
    rows = 60000
    names = [f"full{i}" for i in range(4)]
    try:
        procs = {n: a.producer(n, rows, "--timeout-ms", 300000) for n in names}
        # The disk fills: batches are refused, counted, and the agent still answers.
        a.wait_for(lambda: a.raw_status()["budget_refusals"] > 0,
                   timeout=120, what="a refusal because the disk is full")
        # Training never blocks: every producer hands off all its rows while the
        # disk is still full (they then wait in finish for their acks).
        deadline = time.monotonic() + 120
        for n, p in procs.items():
            marker = read_marker(p, deadline)
            assert marker == {"handed_off": rows}, f"{n} did not finish logging: {marker}"
        st = a.raw_status()
        assert st.get("records_quarantined", 0) == 0
        a.wait_for(lambda: "local sink: cannot" in a.log(), timeout=60,
                   what="the local sink to hit the full disk")
        assert a.proc.poll() is None, a.log()

        # Space returns: ingest and the local sink resume, and every row arrives once.
        filler.unlink()
        for n, p in procs.items():
            rep = finish_producer(p, timeout=300)
            assert rep["acked"] == rep["logged"], rep
        for n in names:
            a.wait_for(lambda: a.run_state(n) == "finished", timeout=120, what=f"{n} finished")
            run_dir = a.query("run", run=n)["run"]["dir"]
            with open(os.path.join(run_dir, "history.jsonl")) as f:
                steps = [json.loads(line)["i"] for line in f]
            assert steps == list(range(rows)), f"{n}: {len(steps)} rows"
        assert "applying records resumed" in a.log()
        st = a.raw_status()
        assert st.get("records_quarantined", 0) == 0
        # Liveness: a fresh run still gets through.
        rep = finish_producer(a.producer("after-full", 10))
        assert rep["acked"] == rep["logged"] == 12  # start, 10 rows, exit
    finally:
        a.stop()
    # Nothing in the log was damaged: a restart recovers without quarantine.
    a.start()
    try:
        assert a.raw_status().get("records_quarantined", 0) == 0
    finally:
        a.stop()
