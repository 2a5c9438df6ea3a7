"""Shared harness for the end-to-end tests: real `trackd` processes on temporary
state dirs and sockets, driven by the built binaries named in the environment
(set by ctest, see tests/CMakeLists.txt)."""
import json
import os
import signal
import struct
import subprocess
import time
import uuid

import pytest

BIN = {name: os.environ.get(var) for name, var in [
    ("trackd", "TRACKD_BIN"), ("trackctl", "TRACKCTL_BIN"), ("train", "TRAIN_BIN"),
    ("producer", "PRODUCER_BIN"), ("rawclient", "RAWCLIENT_BIN")]}

# Fault loops take an iteration count: small in CI, larger on demand.
ITERATIONS = int(os.environ.get("TRACKD_TEST_ITERATIONS") or 0)
# Set by scripts/tsan.sh: every process is 5-15x slower, and what the run
# looks for is races, not a parser's every case (the normal and ASan runs have
# those), so exhaustive loops may sample their cases there.
UNDER_TSAN = os.environ.get("TRACKD_TEST_SANITIZER") == "thread"


def require_bins():
    missing = [k for k, v in BIN.items() if not v or not os.path.exists(v)]
    if missing:
        pytest.fail(f"binaries not found (run through ctest): {missing}")


class Agent:
    """One trackd process. The state dir and socket survive restarts."""

    def __init__(self, tmp_path, config="", socket_dir=None):
        self.dir = tmp_path
        self.state_dir = str(tmp_path / "state")
        self.url = f"ipc://{socket_dir or tmp_path}/trackd.sock"
        self.config_path = str(tmp_path / "trackd.yaml")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.proc = None
        self.log_path = str(tmp_path / "agent.log")
        self.env = dict(os.environ, TRACKD_SOCKET=self.url)

    def start(self, wait=True):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [BIN["trackd"], "--config", self.config_path, "--state-dir", self.state_dir,
             "--listen", self.url], stdout=log, stderr=log, env=self.env)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            r = subprocess.run([BIN["trackctl"], "status", "--json"], env=self.env,
                               capture_output=True, text=True)
            if r.returncode == 0:
                return json.loads(r.stdout)
            time.sleep(0.05)
        raise AssertionError(f"agent not ready after {timeout}s:\n{self.log()}")

    def status(self):
        r = subprocess.run([BIN["trackctl"], "status", "--json"], env=self.env,
                           capture_output=True, text=True, check=True)
        return json.loads(r.stdout)

    def raw_status(self, attempts=10):
        """The StatusReply as rawclient prints it. A status request waits behind
        the batches queued before it: on a loaded machine it may miss rawclient's
        5 s timeout, so it is asked again."""
        for _ in range(attempts):
            reply = self.raw(status_request())[0]
            if "status" in reply:
                return reply["status"]
        raise AssertionError(f"no status after {attempts} attempts: {reply}")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout=30):
        """SIGTERM; returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"agent did not stop within {timeout}s")
        return self.proc.returncode

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def dump(self, history_only=False):
        cmd = [BIN["trackctl"], "dump", "--state-dir", self.state_dir]
        if history_only:
            cmd.append("--history")
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]

    def producer(self, run_id, rows, *extra):
        return subprocess.Popen(
            [BIN["producer"], "--run-id", run_id, "--rows", str(rows), *map(str, extra)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)

    def query(self, kind, as_user=None, **kw):
        """One query; returns the agent's JSON answer, or {"error": …}."""
        (reply,) = self.raw(query_request(kind, **kw), as_user=as_user)
        return reply.get("query", reply)

    def wait_for(self, predicate, timeout=30, what="condition"):
        """Polls until predicate() is truthy; asserts arrival, not speed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def run_state(self, run_id):
        r = self.query("run", run=run_id)
        return r["run"]["state"] if "run" in r else None

    def raw(self, *payloads, as_user=None):
        """Sends each payload (bytes) as one request on one connection; returns
        the parsed replies. as_user=(uid, gid) acts as another user."""
        files = []
        for i, p in enumerate(payloads):
            path = self.dir / f"raw-{time.monotonic_ns()}-{i}.bin"
            path.write_bytes(p)
            os.chmod(path, 0o644)
            files.append(str(path))
        who = ["--as", f"{as_user[0]}:{as_user[1]}"] if as_user else []
        r = subprocess.run([BIN["rawclient"], *who, self.url, *files], capture_output=True,
                           text=True, check=True)
        return [json.loads(line) for line in r.stdout.splitlines()]


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def python_client_env(base_env):
    """Environment for Debian's python3 running the Python package against this
    build's libtrackd (beside the agent binary under test). An ASan build's
    library loads only with the ASan runtime preloaded (the interpreter's own
    leaks are not ours); a TSan build's cannot load at all (static TLS), so the
    test is skipped: the C clients cover the same paths under TSan."""
    build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(BIN["trackd"]))))
    lib = os.path.join(build, "client-shim", "libtrackd.so")
    env = dict(base_env, PYTHONPATH=os.path.join(REPO, "client-shim", "python"), TRACKD_LIB=lib)
    ldd = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    for line in ldd.splitlines():
        if "libtsan" in line:
            pytest.skip("Debian's python3 cannot load a TSan-built libtrackd (static TLS)")
        if "libasan" in line and "=>" in line:
            env.update(LD_PRELOAD=line.split("=>")[1].split()[0], ASAN_OPTIONS="detect_leaks=0")
    return env


# ---- no process outlives its test --------------------------------------------
#
# Each test runs with TRACKD_TEST_MARK=<fresh token> in its environment, which
# every process it starts inherits: agents, clients, the private agents clients
# start detached, fake backends, processes of other uids (read as root). After
# the test (and its fixtures' teardowns), a live process carrying the token is
# a leak: the test fails with its command line and the process is killed. The
# token, not the executable's name, decides, so other suites running on the
# same machine are never blamed. Processes started with a cleared environment
# (env -i, systemd units) are out of its sight.

LEAK_GRACE_S = 5  # a process told to stop at teardown may take this long to go


def processes_marked(mark):
    """{pid: command line} of live processes whose environment holds mark."""
    needle = f"TRACKD_TEST_MARK={mark}".encode()
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone, or not ours to read
        if cmd:  # a zombie has none: it has exited
            found[int(d)] = cmd
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind():
    mark = uuid.uuid4().hex
    os.environ["TRACKD_TEST_MARK"] = mark
    yield
    del os.environ["TRACKD_TEST_MARK"]
    deadline = time.monotonic() + LEAK_GRACE_S
    left = processes_marked(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = processes_marked(mark)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        pytest.fail("the test left processes behind (killed now):\n" +
                    "\n".join(f"  {pid}: {cmd}" for pid, cmd in sorted(left.items())),
                    pytrace=False)


@pytest.fixture
def make_agent(tmp_path):
    """make_agent(config="", **kw) → Agent(tmp_path, …), started; every one
    made is stopped (killed if need be) after the test. test_wandb.py has its
    own, uploading to the fake backend."""
    made = []

    def make(config="", **kw):
        require_bins()
        a = Agent(tmp_path, config=config, **kw)
        made.append(a)
        return a.start()
    yield make
    for a in made:
        if a.proc and a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()


@pytest.fixture
def agent(tmp_path):
    require_bins()
    a = Agent(tmp_path)
    yield a
    if a.proc and a.proc.poll() is None:
        a.proc.kill()
        a.proc.wait()


def finish_producer(p, timeout=120):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"producer failed ({p.returncode}): {out} {err}"
    return json.loads(out.strip().splitlines()[-1])


def history_by_run(records):
    """{run_id: [step, …]} in log order."""
    runs = {}
    for r in records:
        if r["type"] == "history":
            runs.setdefault(r["run_id"], []).append(r["step"])
    return runs


# ---- hand-made protobuf (the wire format is simple enough to write here) ----

def varint(v):
    if v < 0:  # int64 fields: two's complement, ten bytes
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_double(num, d):
    return bytes([(num << 3) | 1]) + struct.pack("<d", d)


def field_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint((num << 3) | 2) + varint(len(b)) + b


def item_double(key, x):
    import struct
    value = varint((1 << 3) | 1) + struct.pack("<d", x)
    return field_bytes(1, key) + field_bytes(2, value)


def history_record(run_id, step, items):
    row = field_varint(1, step) + b"".join(field_bytes(4, it) for it in items)
    return field_bytes(1, run_id) + field_bytes(3, row)


def batch_request(session, seq, records, version=1):
    batch = field_bytes(1, session) + field_varint(2, seq) + b"".join(
        field_bytes(3, r) for r in records)
    return field_varint(1, version) + field_bytes(2, batch)


def status_request():
    return field_varint(1, 1) + field_bytes(3, b"")


# Query's typed requests: the oneof field number of each kind, and the
# request's own field numbers (trackd.proto).
_QUERY_FIELD = {"runs": 10, "run": 11, "history": 12, "rename": 13, "wandb": 14, "retry": 15,
                "sync": 16, "sync_status": 17, "series": 18, "console": 19}


def query_request(kind, run=None, project=None, state=None, keys=(), from_line=None,
                  max_lines=None, name=None, force=None, offset=None, limit=None, x=None,
                  x_min=None, x_max=None, buckets=None, grep=None, tags=None, notes=None):
    r = b""
    if kind == "runs":
        if project is not None:
            r += field_bytes(1, project)
        if state is not None:
            r += field_bytes(2, state)
        if offset is not None:
            r += field_varint(3, offset)
        if limit is not None:
            r += field_varint(4, limit)
    elif run is not None:
        r += field_bytes(1, run)
    if kind == "history":
        for k in keys:
            r += field_bytes(2, k)
        if from_line is not None:
            r += field_varint(3, from_line)
        if max_lines is not None:
            r += field_varint(4, max_lines)
    if kind == "series":
        for k in keys:
            r += field_bytes(2, k)
        if x is not None:
            r += field_bytes(3, x)
        if x_min is not None:
            r += field_double(4, x_min)
        if x_max is not None:
            r += field_double(5, x_max)
        if buckets is not None:
            r += field_varint(6, buckets)
    if kind == "console":
        if from_line is not None:
            r += field_varint(2, from_line)
        if max_lines is not None:
            r += field_varint(3, max_lines)
        if grep is not None:
            r += field_bytes(4, grep)
    if kind == "rename" and name is not None:
        r += field_bytes(2, name)
    if kind == "rename" and tags is not None:  # a list (possibly empty) replaces the tags
        r += field_varint(3, 1) + b"".join(field_bytes(4, t) for t in tags)
    if kind == "rename" and notes is not None:
        r += field_bytes(5, notes)
    if kind == "sync" and force is not None:
        r += field_varint(2, 1 if force else 0)
    return field_varint(1, 1) + field_bytes(4, field_bytes(_QUERY_FIELD[kind], r))


def legacy_query_request(kind, run=None):
    """A query as clients before typed queries sent it: Query{kind, run}."""
    q = field_bytes(1, kind)
    if run is not None:
        q += field_bytes(2, run)
    return field_varint(1, 1) + field_bytes(4, q)
