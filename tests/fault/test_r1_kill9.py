"""R1: `kill -9` of the agent at random moments while 4 C producers and a Python
producer log through the real client library; restart at once; repeat. Judged by
the conservation oracle on both sinks: the local run store and the fake W&B
backend. Knobs: FAULT_R1_KILLS (CI 20, long 500), FAULT_R1_SLEEP_US (the
producers' pause every 10 rows), FAULT_SEED."""
import random
import time

import judge
from harness import (PROJECT, SEED, Fleet, emit, knob, make_wandb_agent, status_retrying,
                     wait_local_drained, wait_uploaded)


def test_r1_kill9_loop(tmp_path, fw, agents):
    kills = knob("r1_kills", 20, 500)
    rng = random.Random(SEED)
    agent = make_wandb_agent(tmp_path, fw)
    agents.append(agent)
    agent.start()
    fleet = Fleet(agent, str(tmp_path / "ledgers")).start(
        n_c=4, n_py=1, sleep_us=knob("r1_sleep_us", 2000, 20000), every=10)
    t0 = time.monotonic()
    for _ in range(kills):
        time.sleep(rng.uniform(0.02, 0.5))
        agent.kill9()
        time.sleep(rng.uniform(0.0, 0.2))
        agent.start()
    elapsed = time.monotonic() - t0
    fleet.stop()
    assert fleet.live() == 0, "a producer after the faults did not get through"
    ledgers = fleet.ledgers()
    ended = wait_local_drained(agent, ledgers)
    local, problems = judge.local_delivery(agent.state_dir, PROJECT)
    problems += ended
    quarantined = status_retrying(agent)["records_quarantined"]
    if quarantined:
        problems.append(f"{quarantined} records quarantined after kill -9 (nothing was damaged)")
    extra = f"kills={kills} seconds={elapsed:.0f} seed={SEED}"
    emit(judge.judge("R1", "local", ledgers, local, problems, extra=extra))
    run_ids = [lg.run_id for lg in ledgers]
    wait_uploaded(agent, fw, run_ids, timeout=600)
    up, problems, resent = judge.fake_delivery(fw, PROJECT, run_ids)
    emit(judge.judge("R1", "wandb", ledgers, up, problems, resent, extra=extra))
