"""examples/train.py with the fake W&B backend as the agent's upstream: each run
the example makes is on the backend exactly as in the local store (history rows,
summary, console, config, complete and exit code)."""
import importlib.util
import os
import sys

from conftest import REPO, harness

sys.path.insert(0, str(REPO / "tests" / "fake-wandb"))
from fakewandb_client import FakeWandb  # noqa: E402

# The wandb e2e helpers (fake config, upload waits, the exactly-once judge) are
# reused as they are; they import the e2e harness under the name "conftest",
# which here is this package's conftest: lend them the harness while loading.
_spec = importlib.util.spec_from_file_location("trackd_e2e_wandb",
                                               REPO / "tests" / "e2e" / "test_wandb.py")
wandb_e2e = importlib.util.module_from_spec(_spec)
_own_conftest = sys.modules["conftest"]
sys.modules["conftest"] = harness
try:
    _spec.loader.exec_module(wandb_e2e)
finally:
    sys.modules["conftest"] = _own_conftest


def test_train_example_on_the_backend_equals_the_local_run(tmp_path, env):
    fw = FakeWandb(max_hold=30).start()
    a = None
    try:
        key = tmp_path / "wandb.key"
        key.write_text(fw.api_key + "\n")
        os.chmod(key, 0o600)
        a = harness.Agent(tmp_path, config=wandb_e2e.wandb_yaml(fw, key)).start()
        env.run((REPO / "examples" / "train.py").read_text(), TRACKD_SOCKET=a.url,
                TRACKD_PROJECT=wandb_e2e.PROJECT)
        def both_finished():
            runs = a.query("runs")["runs"]
            return len(runs) == 2 and all(r["state"] == "finished" for r in runs) and runs
        runs = a.wait_for(both_finished, what="the example's two runs, finished")
        for r in runs:
            wandb_e2e.wait_uploaded(a, fw, r["id"])
            up = wandb_e2e.assert_exactly_once(a, fw, r["id"], exitcode=0)
            config = {k: v["value"] for k, v in up["config"].items() if k != "_wandb"}
            if len(up["history"]) == 10:  # the training loop
                assert config == {"epochs": 10, "learning_rate": 0.01}
                assert up["summary"]["final_loss"] == round(up["summary"]["loss"], 5)
            else:  # the one-row run
                assert len(up["history"]) == 1 and config == {}
        assert a.stop() == 0
    finally:
        if a and a.proc and a.proc.poll() is None:
            a.proc.kill()
        fw.stop()
