"""The service files in packaging/: systemd accepts the units, and the default
configuration documents every key with its real default."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, require_bins

PACKAGING = os.path.join(os.path.dirname(__file__), "..", "..", "packaging")


@pytest.mark.parametrize("unit", ["trackd.service", "trackd-user.service"])
def test_systemd_accepts_the_unit(tmp_path, unit):
    require_bins()
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed on this machine")
    text = open(os.path.join(PACKAGING, "systemd", unit)).read()
    # Point ExecStart at the binary just built: verify checks that it exists.
    text = text.replace("/usr/bin/trackd", os.path.abspath(BIN["trackd"]))
    path = tmp_path / unit
    path.write_text(text)
    r = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.strip() == "", r.stderr


def test_default_config_documents_every_key_with_its_default(tmp_path):
    require_bins()
    env = dict(os.environ)
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("XDG_STATE_HOME", None)
    if os.geteuid() != 0:
        pytest.skip("the system defaults are printed for root only")
    effective = subprocess.run([BIN["trackd"], "--check-config"], capture_output=True,
                               text=True, check=True, env=env).stdout
    shipped = open(os.path.join(PACKAGING, "trackd.yaml")).read()
    # The shipped file with its key lines uncommented must be a valid config whose
    # effective values are exactly the defaults.
    cfg = tmp_path / "uncommented.yaml"
    lines = []
    for line in shipped.splitlines():
        m = re.match(r"^# ( *)([a-z_]+:.*)$", line)
        if m:
            lines.append(m.group(1) + m.group(2))
    cfg.write_text("\n".join(lines) + "\n")
    again = subprocess.run([BIN["trackd"], "--config", str(cfg), "--check-config"],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr + "\n" + cfg.read_text()
    assert again.stdout == effective
    # And every key the agent knows is in the shipped file.
    known = sorted(l.split(":")[0] for l in again.stdout.splitlines() if not l.startswith("#"))
    shipped_keys = sorted(l.split(":")[0] for l in cfg.read_text().splitlines())
    assert known == shipped_keys, "packaging/trackd.yaml and the agent's keys differ"

