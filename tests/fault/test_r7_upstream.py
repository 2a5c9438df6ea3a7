"""R7 and R8 through the oracle: producers log while the fake W&B backend first
refuses connections for longer than the sink's backoff cap (R8: `retry_max` is
1 s here; the outage FAULT_R8_OUTAGE_S, CI 8 s, long 600 s), then answers with a
mix of every retryable fault class of its control API (R7: 500, 502,
503+Retry-After, 429+Retry-After, resets before and after the request was
applied, no answer, slow trickle). Nothing may be dropped because of elapsed
time or retry counts: the fake must end up with every acknowledged row exactly
once by offset. (tests/e2e/test_wandb.py checks each class alone, permanent
ones and Retry-After timing; this one checks conservation under all of them.)"""
import time

import judge
from harness import SEED, Fleet, emit, end_faults_and_read_fake, knob, make_wandb_agent

MIX = [
    dict(kind="status", status=500),
    dict(kind="status", status=502),
    dict(kind="status", status=503, retry_after=1),
    dict(kind="status", status=429, retry_after=1),
    dict(kind="reset", when="headers"),
    dict(kind="reset", when="body"),
    dict(kind="reset", apply=True),
    dict(kind="hang", apply=True, hold=10),
    dict(kind="hang", hold=10),
    dict(kind="trickle", byte_delay=0.05),
    dict(kind="status", status=500, path_prefix="/graphql"),
]


def test_r7_r8_outage_then_fault_mix(tmp_path, fw, agents):
    outage = knob("r8_outage_s", 8, 600)
    mix_s = knob("r7_mix_s", 10, 120)
    agent = make_wandb_agent(tmp_path, fw)
    agents.append(agent)
    agent.start()
    fleet = Fleet(agent, str(tmp_path / "ledgers")).start(
        n_c=3, n_py=1, sleep_us=knob("r7_sleep_us", 5000, 20000), every=10)
    fw.add_fault(kind="refuse", duration=outage)
    time.sleep(outage)
    fw.wait_for(lambda: not fw.health()["refusing"], timeout=30, what="the outage to end")
    # Each class fires on a share of the requests, until the window ends.
    for i, spec in enumerate(MIX):
        fw.add_fault(**{"path_prefix": "/files/", **spec, "probability": 0.08,
                        "seed": SEED + i, "duration": mix_s})
    time.sleep(mix_s)
    ledgers, up, problems, resent = end_faults_and_read_fake(agent, fw, fleet, timeout=600)
    fired = fw.call("GET", "/stats").get("faults_fired") or {}
    fired = ",".join(f"{k}:{v}" for k, v in sorted(fired.items()))
    emit(judge.judge("R7R8", "wandb", ledgers, up, problems, resent,
                     extra=f"outage_s={outage} mix_s={mix_s} faults_fired={fired} seed={SEED}"))
