"""R2 and R5 (fsync) with the fsync shim (fsync_shim.c, LD_PRELOADed into the
agent):

- power loss: producers log to an agent with `fsync: always`; the agent is killed
  with SIGKILL at a random moment, every segment file is cut back to what its
  last completed fsync covered (what a power cut leaves when the kernel wrote
  back nothing more), and the agent restarts; repeat. Nothing acknowledged may
  be lost, and every record the cut log still held (covered by a completed
  fsync) must be delivered. Knob: FAULT_R2_CUTS (CI 8, long 100).
- failed fsync (R5): while a control file exists, fdatasync of segments fails
  with EIO. A batch must get a retryable error (never an ack), the agent logs
  the failure and refuses to acknowledge while it lasts, and after the fault
  clears everything acknowledged is delivered exactly once."""
import json
import os
import random
import subprocess
import time

import pytest

import judge
from harness import (BIN, FSYNC_SHIM, PROJECT, SEED, Agent, Fleet, e2e, emit, knob, preload,
                     wait_local_drained)

ALWAYS = "txlog:\n  fsync: always\n"


def shim_agent(tmp_path, fail_file=None, config=ALWAYS):
    """An agent with the shim preloaded. trackctl shares the environment:
    harmless, it syncs no segment files (the log names files by inode, and the
    failure mode matches only `*.seg`); producers get it without the preload."""
    a = Agent(tmp_path, config=config)
    a.shim_log = str(tmp_path / "fsync.log")
    a.env.update(LD_PRELOAD=preload(FSYNC_SHIM), FSYNC_SHIM_LOG=a.shim_log)
    if fail_file:
        a.env.update(FSYNC_SHIM_FAIL=fail_file)
    return a


def durable_sizes(shim_log):
    """{(dev, ino): size covered by the last completed fsync}."""
    sizes = {}
    with open(shim_log) as f:
        for line in f:
            dev, ino, size = map(int, line.split())
            sizes[(dev, ino)] = size
    return sizes


def cut_segments(state_dir, shim_log):
    """Cuts every segment back to its last fsync point; returns bytes cut."""
    sizes = durable_sizes(shim_log)
    logdir = os.path.join(state_dir, "log")
    cut = 0
    for name in os.listdir(logdir):
        if not name.endswith(".seg"):
            continue
        path = os.path.join(logdir, name)
        st = os.stat(path)
        keep = sizes.get((st.st_dev, st.st_ino), 0)
        if st.st_size > keep:
            cut += st.st_size - keep
            os.truncate(path, keep)
    return cut


def logged_keys(state_dir, after=0):
    """(run, step) of every history record in the log as it is on disk now, above
    index `after`, and the highest index seen (a cut keeps every record a
    completed fsync covered, so earlier ones need not be read again)."""
    r = subprocess.run([BIN["trackctl"], "dump", "--state-dir", state_dir, "--after",
                        str(after)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    keys, last = set(), after
    for d in map(json.loads, r.stdout.splitlines()):
        last = max(last, d["index"])
        if d["type"] == "history":
            keys.add((d["run_id"], d["step"]))
    return keys, last


def losses_are_cut_tails(ledgers, local, cuts):
    """What a power cut may take is the tail its last fsync did not cover: every
    run survives (its start is synced before its ack under every policy), and
    each run's lost acked rows form at most one stretch per cut."""
    problems = []
    have = {(r, s) for r, rows in local.items() for s, _ in rows}
    for ledger in ledgers:
        acked = ledger.acked
        if ledger.run_id not in local:
            problems.append(f"run {ledger.run_id} lost as a whole ({len(acked)} acked rows)")
        stretches, in_gap = 0, False
        for step in acked:
            gone = (ledger.run_id, step) not in have
            stretches += gone and not in_gap
            in_gap = gone
        if stretches > cuts:
            problems.append(f"run {ledger.run_id}: acked rows lost in {stretches} stretches, "
                            f"more than the {cuts} cuts could take")
    return problems


@pytest.mark.parametrize("policy", ["always", "interval"])
def test_r2_power_loss(tmp_path, agents, policy):
    """With `always` nothing acknowledged may be lost; with `interval` (200 ms
    here, so that cuts bite) acknowledged rows of the last interval may be, and are
    counted; under both, every record a completed fsync covered survives."""
    cuts = knob("r2_cuts", 8, 100)
    rng = random.Random(SEED)
    config = ALWAYS if policy == "always" else "txlog:\n  fsync: interval\n  fsync_interval: 200ms\n"
    agent = shim_agent(tmp_path, config=config)
    agents.append(agent)
    agent.start()
    fleet = Fleet(agent, str(tmp_path / "ledgers"))
    fleet.start(n_c=4, n_py=1, sleep_us=2000, every=10)
    bytes_cut, synced, seen_index = 0, set(), 0
    for _ in range(cuts):
        time.sleep(rng.uniform(0.05, 0.6))
        agent.kill9()
        bytes_cut += cut_segments(agent.state_dir, agent.shim_log)
        keys, seen_index = logged_keys(agent.state_dir, seen_index)
        synced |= keys
        agent.start()
    fleet.stop()
    assert fleet.live() == 0, "a producer after the faults did not get through"
    ledgers = fleet.ledgers()
    ended = wait_local_drained(agent, ledgers)
    local, problems = judge.local_delivery(agent.state_dir, PROJECT)
    problems += ended
    have = {(r, s) for r, rows in local.items() for s, _ in rows}
    missing = synced - have
    if missing:
        problems.append(f"{len(missing)} records covered by a completed fsync not delivered: "
                        f"{judge._keys(missing)}")
    problems += losses_are_cut_tails(ledgers, local, cuts)
    emit(judge.judge(f"R2-{policy}", "local", ledgers, local, problems,
                     allow_lost=policy == "interval",
                     extra=f"cuts={cuts} bytes_cut={bytes_cut} fsynced_checked={len(synced)} "
                           f"seed={SEED}"))


def test_r5_failed_fsync_is_never_acknowledged(tmp_path, agents):
    """While fdatasync of segments fails with EIO, a batch gets a retryable error
    (never an ack); the agent logs the failure; once the fault clears, the
    producers (which kept logging and resending) get everything acknowledged and
    it is delivered exactly once — checked again after a power cut."""
    fail = str(tmp_path / "FAIL")
    agent = shim_agent(tmp_path, fail_file=fail)
    agents.append(agent)
    agent.start()
    fleet = Fleet(agent, str(tmp_path / "ledgers")).start(n_c=3, n_py=1, sleep_us=2000,
                                                           every=10)
    time.sleep(0.5)
    open(fail, "w").close()
    # A batch of our own while the disk fails: refused, retryable, not acked.
    session = os.urandom(16)
    rec = e2e.history_record("raw", 0, [e2e.item_double("x", 1.0)])
    (reply,) = agent.raw(e2e.batch_request(session, 1, [rec]))
    assert "error" in reply and reply["error"]["retryable"], reply
    assert "fsync failed" in agent.log()
    time.sleep(knob("r5_fault_s", 2.0, 30.0))
    os.unlink(fail)
    # Once the disk works again the same batch is acknowledged, as new.
    reply = agent.wait_for(lambda: (lambda r: r if "ack" in r else None)(
        agent.raw(e2e.batch_request(session, 1, [rec]))[0]), timeout=60,
        what="the agent to accept batches after the fault cleared")
    assert reply == {"ack": {"seq": 1, "duplicate": False}}, reply
    fleet.stop()
    assert fleet.live() == 0, "a producer after the faults did not get through"
    ledgers = fleet.ledgers()
    ended = wait_local_drained(agent, ledgers)
    local, problems = judge.local_delivery(agent.state_dir, PROJECT)
    problems += ended
    failures = agent.log().count("fsync failed")
    emit(judge.judge("R5-eio", "local", ledgers, local, problems,
                     extra=f"fsync_failures_logged={failures}"))
    # What was acknowledged was durable: a power cut now loses none of it.
    agent.kill9()
    bytes_cut = cut_segments(agent.state_dir, agent.shim_log)
    agent.start()
    ended = wait_local_drained(agent, ledgers)
    local, problems = judge.local_delivery(agent.state_dir, PROJECT)
    problems += ended
    emit(judge.judge("R5-eio+cut", "local", ledgers, local, problems,
                     extra=f"bytes_cut={bytes_cut}"))
