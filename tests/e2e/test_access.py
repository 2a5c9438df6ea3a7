"""R13, multi-user machines: who may log, and whose runs they may touch. The
suite runs as root; producers and raw clients drop to other uids."""
import json
import os
import shutil
import tempfile

import pytest

from conftest import Agent, history_by_run, require_bins

NOBODY = 65534
OTHER = 65533
GROUP_GID = 29  # "audio": an existing group nobody here is a member of


@pytest.fixture
def shared_agent(tmp_path):
    require_bins()
    if os.geteuid() != 0:
        pytest.skip("needs root to act as other users")
    sock_dir = tempfile.mkdtemp(prefix="trackd-access-")
    os.chmod(sock_dir, 0o755)
    os.chmod(tmp_path, 0o755)
    a = Agent(tmp_path, socket_dir=sock_dir,
              config="socket_mode: 0666\naccess:\n  group: audio\n")
    a.env["HOME"] = sock_dir  # producers running as nobody keep their spool there
    yield a
    if a.proc and a.proc.poll() is None:
        a.proc.kill()
        a.proc.wait()
    shutil.rmtree(sock_dir, ignore_errors=True)


def test_a_uid_outside_the_group_is_refused_and_counted(shared_agent):
    a = shared_agent.start()
    p = a.producer("outsider", 10, "--uid", NOBODY, "--gid", NOBODY, "--timeout-ms", 5000)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0, out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["rejected"] > 0 and report["acked"] == 0, report
    assert "outsider" not in history_by_run(a.dump())
    assert a.status()["requests_rejected"] >= 1
    reply = a.query("runs", as_user=(NOBODY, NOBODY))
    assert reply["error"]["code"] == 6  # PERMISSION_DENIED


def test_runs_belong_to_their_user(shared_agent):
    a = shared_agent.start()
    mine = a.producer("mine", 20, "--uid", NOBODY, "--gid", GROUP_GID)
    out, err = mine.communicate(timeout=60)
    assert mine.returncode == 0, out + err
    a.wait_for(lambda: a.run_state("mine") == "finished", what="finished")
    # Another member of the group can neither append to nor read it.
    intruder = a.producer("mine", 5, "--first-step", 100, "--uid", OTHER, "--gid", GROUP_GID,
                          "--timeout-ms", 5000)
    out, err = intruder.communicate(timeout=60)
    assert intruder.returncode != 0
    report = json.loads(out.strip().splitlines()[-1])
    assert report["rejected"] > 0 and report["acked"] == 0, report
    steps = [r["step"] for r in a.dump(history_only=True) if r["run_id"] == "mine"]
    assert steps == list(range(20))
    denied = a.query("run", run="mine", as_user=(OTHER, GROUP_GID))
    assert denied["error"]["code"] == 6 and "another user" in denied["error"]["message"]
    assert a.query("history", run="mine", as_user=(OTHER, GROUP_GID))["error"]["code"] == 6
    assert a.query("runs", as_user=(OTHER, GROUP_GID)) == {"runs": []}
    # Its owner and root see it.
    assert [r["id"] for r in a.query("runs", as_user=(NOBODY, GROUP_GID))["runs"]] == ["mine"]
    assert a.query("run", run="mine")["run"]["uid"] == NOBODY
    # The owner survives an agent restart (rebuilt from the log).
    a.kill9()
    a.start()
    again = a.producer("mine", 5, "--first-step", 100, "--uid", OTHER, "--gid", GROUP_GID,
                       "--timeout-ms", 5000)
    again.communicate(timeout=60)
    assert again.returncode != 0


def test_only_the_owner_or_root_updates_a_run(shared_agent):
    a = shared_agent.start()
    mine = a.producer("owned", 3, "--uid", NOBODY, "--gid", GROUP_GID)
    out, err = mine.communicate(timeout=60)
    assert mine.returncode == 0, out + err
    a.wait_for(lambda: a.run_state("owned") == "finished", what="finished")
    before = a.query("run", run="owned")["run"]
    denied = a.query("rename", run="owned", name="mine now", tags=["x"], notes="hijacked",
                     as_user=(OTHER, GROUP_GID))
    assert denied["error"]["code"] == 6 and "another user" in denied["error"]["message"], denied
    assert not [r for r in a.dump() if r["run_id"] == "owned" and r["type"] == "rename"]
    # Its owner may; so may root (the suite's own uid).
    ok = a.query("rename", run="owned", tags=["by-owner"], notes="n", as_user=(NOBODY, GROUP_GID))
    assert ok == {"ok": True}, ok
    a.wait_for(lambda: a.query("run", run="owned")["run"].get("tags") == ["by-owner"],
               what="the owner's update")
    assert a.query("rename", run="owned", notes="by root") == {"ok": True}
    a.wait_for(lambda: a.query("run", run="owned")["run"].get("notes") == "by root",
               what="root's update")
    after = a.query("run", run="owned")["run"]
    assert after["display_name"] == before["display_name"] and after["tags"] == ["by-owner"]
