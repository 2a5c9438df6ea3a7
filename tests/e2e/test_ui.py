"""trackctl ui (issue #14): the web UI in a real browser (Debian's chromium,
headless, driven by puppeteer-core from ui/node_modules through
tests/e2e/ui/check_ui.mjs), and its HTTP gate (token, cookie, Host, methods)
with plain HTTP requests.

The UI runs as an unprivileged user (nobody, in the agent's access group), so
the agent's own checks decide what it may show: runs of another uid must not
appear. TRACKD_UI_SCREENSHOT=PATH saves a screenshot of a run page there
(docs/ui-run.png was made so)."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import REPO, Agent, BIN, finish_producer, python_client_env, require_bins

NOBODY = 65534
OTHER = 65533
GROUP_GID = 29  # "audio": the agent's access group here
CHROMIUM = "/usr/bin/chromium"
NODE_MODULES = os.path.join(REPO, "ui", "node_modules")
CHECK_SCRIPT = os.path.join(REPO, "tests", "e2e", "ui", "check_ui.mjs")


def need_browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (scripts/setup-deps.sh installs chromium)")
    if not os.path.isdir(os.path.join(NODE_MODULES, "puppeteer-core")):
        pytest.skip("ui/node_modules/puppeteer-core is missing (scripts/setup-deps.sh runs npm ci)")
    if not shutil.which("node"):
        pytest.skip("node is missing (scripts/setup-deps.sh installs nodejs)")


@pytest.fixture
def shared_agent(tmp_path):
    """An agent whose socket users other than root may reach (group audio)."""
    require_bins()
    if os.geteuid() != 0:
        pytest.skip("needs root to act as other users")
    sock_dir = tempfile.mkdtemp(prefix="trackd-ui-")
    os.chmod(sock_dir, 0o755)
    os.chmod(tmp_path, 0o755)
    a = Agent(tmp_path, socket_dir=sock_dir,
              config="socket_mode: 0666\naccess:\n  group: audio\n")
    a.env["HOME"] = sock_dir  # producers running as nobody keep their spool there
    a.env["TRACKD_NO_AUTOSTART"] = "1"
    yield a
    if a.proc and a.proc.poll() is None:
        a.proc.kill()
        a.proc.wait()
    shutil.rmtree(sock_dir, ignore_errors=True)


class Ui:
    """`trackctl ui --listen 127.0.0.1:0` as `user`; url, port, token from its
    first line of output."""

    def __init__(self, agent, user=None, listen="127.0.0.1:0", extra=()):
        kw = {}
        if user:
            kw = dict(user=user[0], group=user[1], extra_groups=[])
        self.proc = subprocess.Popen([BIN["trackctl"], "ui", "--listen", listen, *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=agent.env, start_new_session=True, **kw)
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), (self.url, self.stop())
        self.port = int(self.url.split(":")[2].split("/")[0])
        self.token = self.url.split("token=")[1]
        self.cookie = f"trackd_ui_{self.port}={self.token}"

    def request(self, path, method="GET", host=None, cookie=True, headers=None, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        h = {"Host": host or f"127.0.0.1:{self.port}"}
        if cookie:
            h["Cookie"] = self.cookie
        h.update(headers or {})
        c.request(method, path, headers=h, body=body)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, dict(r.getheaders()), body

    def get_json(self, path, **kw):
        status, headers, body = self.request(path, **kw)
        return status, json.loads(body) if body else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError("trackctl ui did not stop on SIGTERM")
        err = self.proc.stderr.read()
        # 0 after SIGTERM: a clean stop (and, in sanitizer builds, no report).
        assert self.proc.returncode == 0, f"trackctl ui exited {self.proc.returncode}:\n{err}"
        return err


def produce(a, run_id, rows, uid, *extra):
    p = a.producer(run_id, rows, "--uid", uid, "--gid", GROUP_GID, *extra)
    finish_producer(p)


# A W&B-style training run through the Python package: train/ and val/
# sections, more steps than a chart's 1000 buckets (so aggregated buckets and
# their min-max band), config, tags, console output. Also what
# docs/ui-run.png shows.
DEMO_RUN = r"""
import math, random, trackd
random.seed(7)
config = {"learning_rate": 3e-4, "batch_size": 64, "optimizer": "adam", "epochs": 3}
with trackd.init(project="demo", id="ui-demo", name="resnet-baseline", config=config,
                 tags=["baseline", "resnet18"], group="sweep-1") as run:
    for step in range(3000):
        loss = 2.2 * math.exp(-step / 700) + 0.15 + random.gauss(0, 0.06)
        row = {"train/loss": loss, "train/acc": 1 - loss / 2.6 + random.gauss(0, 0.01),
               "train/lr": 3e-4 * (0.5 + 0.5 * math.cos(math.pi * step / 3000))}
        if step % 100 == 99:
            row["val/loss"] = loss + 0.08
            row["val/acc"] = 1 - (loss + 0.08) / 2.6
            print(f"epoch {step // 1000} step {step + 1}: val/loss {row['val/loss']:.4f}")
        run.log(row)
"""


def demo_run(a, user):
    """Logs DEMO_RUN as `user`; False where the Python package cannot load
    this build's library (TSan): the browser checks then go on without it."""
    try:
        env = python_client_env(a.env)
    except pytest.skip.Exception:
        return False
    r = subprocess.run(["python3", "-c", DEMO_RUN], env=env, capture_output=True, text=True,
                       timeout=300, user=user[0], group=user[1], extra_groups=[], cwd=a.env["HOME"])
    assert r.returncode == 0, r.stdout + r.stderr
    return True


def test_ui_in_a_browser(shared_agent):
    need_browser()
    a = shared_agent.start()
    me = (NOBODY, GROUP_GID)
    produce(a, "ui-alpha", 40, NOBODY)
    produce(a, "ui-beta", 25, NOBODY, "--console", 1)
    produce(a, "ui-longlog", 2100, NOBODY, "--console", 1)  # more than a console page
    produce(a, "ui-theirs", 10, OTHER)
    demo = demo_run(a, me)
    stop_file = os.path.join(a.env["HOME"], "stop-live")  # nobody can read it there
    live = a.producer("ui-live", 100000, "--uid", NOBODY, "--gid", GROUP_GID,
                      "--sleep-us", 30000, "--until-file", stop_file, "--console", 5)
    ui = Ui(a, user=me)
    node = None
    try:
        a.wait_for(lambda: a.run_state("ui-live") == "running", what="live run")
        cfg = {
            "url": ui.url, "node_modules": NODE_MODULES, "chromium": CHROMIUM,
            "mine": ["ui-alpha", "ui-beta", "ui-live", "ui-longlog"] + (["ui-demo"] if demo else []),
            "demo": "ui-demo" if demo else None, "theirs": ["ui-theirs"],
            "exact": {"ui-alpha": 40, "ui-beta": 25}, "live": "ui-live",
            "compare": ["ui-alpha", "ui-beta"],
            "console": "ui-beta" if console_served(ui) else None, "long_console": "ui-longlog",
            "screenshot": os.environ.get("TRACKD_UI_SCREENSHOT") or None,
            "screenshot_run": "ui-demo" if demo else "ui-alpha",
        }
        node = subprocess.Popen(["node", CHECK_SCRIPT, json.dumps(cfg)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        out, err = node.communicate(timeout=180)
        assert node.returncode == 0, f"browser checks failed:\n{out}\n{err}"
        result = json.loads(out.strip().splitlines()[-1])
        assert result["ok"], result
        assert "ui-theirs" not in result["facts"]["table"]
        print(json.dumps(result["facts"]))
    finally:
        if node and node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)  # node and the chromium it started
            node.wait()
        open(stop_file, "w").close()
        live.communicate(timeout=60)
        ui.stop()


def console_served(ui):
    """Whether the agent answers console queries (the series/console branch)."""
    status, _ = ui.get_json("/api/console?run=ui-beta&max=1")
    return status == 200


def test_api_answers_are_the_agents_and_respect_owners(shared_agent):
    a = shared_agent.start()
    produce(a, "api-mine", 12, NOBODY)
    produce(a, "api-theirs", 5, OTHER)
    ui = Ui(a, user=(NOBODY, GROUP_GID))
    try:
        status, runs = ui.get_json("/api/runs")
        assert status == 200
        assert [r["id"] for r in runs["runs"]] == ["api-mine"]
        # The same JSON as the agent's typed reply (what trackctl --json prints).
        assert runs == a.query("runs", as_user=(NOBODY, GROUP_GID))
        status, run = ui.get_json("/api/run?run=api-mine")
        assert status == 200 and run["run"]["history_lines"] == 12
        # Another user's run: refused, and none of its data in the answer.
        status, headers, body = ui.request("/api/run?run=api-theirs")
        assert status in (403, 404) and b"history_lines" not in body, body
        status, headers, body = ui.request("/api/history?run=api-theirs")
        assert status in (403, 404) and b"_step" not in body, body
        status, err = ui.get_json("/api/run?run=no-such-run")
        assert status == 404 and "no-such-run" in err["error"]
        # Bad parameters: 400 with the reason.
        status, err = ui.get_json("/api/run")
        assert status == 400 and "run" in err["error"]
        status, err = ui.get_json("/api/series?run=api-mine&buckets=abc")
        assert status == 400 and "buckets" in err["error"]
        status, err = ui.get_json("/api/history?run=api-mine&max=99999999")
        assert status == 400
        status, _ = ui.get_json("/api/nothing")
        assert status == 404
        status, page = ui.get_json("/api/history?run=api-mine&from=10")
        assert status == 200 and [l["_step"] for l in page["lines"]] == [10, 11]
        # No CORS: nothing invites another origin to read the answers.
        _, headers, _ = ui.request("/api/runs", headers={"Origin": "http://evil.example"})
        assert not any(h.lower().startswith("access-control-") for h in headers)
        # Agent down: 503 with the reason.
        a.stop()
        status, err = ui.get_json("/api/runs")
        assert status == 503 and "agent" in err["error"], err
    finally:
        ui.stop()


def test_token_cookie_host_and_methods(agent):
    require_bins()
    agent.start()
    ui = Ui(agent)
    try:
        # No cookie, no token: 401 and no data, on every path.
        for path in ["/", "/app.js", "/api/runs"]:
            status, _, body = ui.request(path, cookie=False)
            assert status == 401 and b"runs" not in body, (path, status)
        # A wrong token, or a wrong cookie: 401.
        status, _, _ = ui.request("/?token=" + "0" * 64, cookie=False)
        assert status == 401
        status, _, _ = ui.request("/api/runs", cookie=False,
                                  headers={"Cookie": f"trackd_ui_{ui.port}={'0' * 64}"})
        assert status == 401
        # The printed URL: a cookie (HttpOnly, SameSite=Strict, Path=/) and a
        # redirect that drops the token from the address.
        status, headers, _ = ui.request(f"/?token={ui.token}", cookie=False)
        assert status == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"]
        assert cookie.startswith(ui.cookie + ";")
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"]:
            assert attr in cookie
        status, headers, body = ui.request("/")
        assert status == 200 and b"app.js" in body
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        status, _, body = ui.request("/vendor/uPlot.iife.min.js")
        assert status == 200 and b"uPlot" in body
        # DNS rebinding: a Host that is not this server is refused, even with
        # the cookie; localhost:PORT is this server.
        for host in [f"evil.example:{ui.port}", "127.0.0.1", f"127.0.0.1:{ui.port + 1}"]:
            status, _, body = ui.request("/api/runs", host=host)
            assert status == 403 and b"runs\"" not in body, host
        status, _, _ = ui.request("/api/runs", host=f"localhost:{ui.port}")
        assert status == 200
        # Read-only: GET and HEAD only.
        for method in ["POST", "PUT", "DELETE", "PATCH"]:
            status, headers, _ = ui.request("/api/runs", method=method)
            assert status == 405 and headers.get("Allow") == "GET, HEAD", method
        status, _, body = ui.request("/api/runs", method="HEAD")
        assert status == 200 and body == b""
        # No body on a GET: 400, answered before the body is read.
        status, _, _ = ui.request("/api/runs", headers={"Content-Length": "5"}, body=b"12345")
        assert status == 400
        status, _, _ = ui.request("/api/runs", headers={"Transfer-Encoding": "chunked"},
                                  body=b"0\r\n\r\n")
        assert status == 400
    finally:
        ui.stop()


# cmd_ui.c's bounds.
UI_MAX_CONNS = 32
UI_MEMORY_LIMIT = 32 << 10
UI_MAX_HEAD = 30 << 10  # README: a request head this long is always answered


def raw_answer(port, data, timeout=10):
    """Sends bytes on a fresh connection; the answer's status line, b"" when
    the connection closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            out = b""
            while b"\r\n" not in out:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError:
            return b""
        return out.split(b"\r\n")[0]


def test_request_head_bounds(agent):
    require_bins()
    agent.start()
    ui = Ui(agent)
    try:
        common = (f"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1:{ui.port}\r\n"
                  f"Cookie: {ui.cookie}\r\nX-Pad: ").encode()

        def head(n):  # a head of n bytes, CRLFs included
            return common + b"p" * (n - len(common) - 4) + b"\r\n\r\n"

        def line(n):  # a request line of n bytes, its CRLF excluded
            fixed = len(b"GET /?pad= HTTP/1.1")
            return b"GET /?pad=" + b"a" * (n - fixed) + b" HTTP/1.1\r\n\r\n"
        # Up to UI_MAX_HEAD: answered.
        for n in (UI_MAX_HEAD - 1, UI_MAX_HEAD, UI_MAX_HEAD + 1):
            assert len(head(n)) == n
            assert raw_answer(ui.port, head(n)).startswith(b"HTTP/1.1 200 "), n
        # A head that does not fit the connection's pool: libmicrohttpd's 431,
        # or 414 when the request line alone does not.
        for n in (UI_MEMORY_LIMIT - 1, UI_MEMORY_LIMIT, UI_MEMORY_LIMIT + 1):
            assert raw_answer(ui.port, head(n)).startswith(b"HTTP/1.1 431 "), n
            assert raw_answer(ui.port, line(n)).startswith(b"HTTP/1.1 414 "), n
        # Between the two: answered, refused or closed without an answer (the
        # answer's own headers no longer fit the pool), nothing else.
        for n in range(UI_MAX_HEAD + 2, UI_MEMORY_LIMIT - 1, 97):
            got = raw_answer(ui.port, head(n))
            assert got == b"" or got.split(b" ")[1] in (b"200", b"431"), (n, got)
        # The server is still fine.
        assert ui.request("/api/runs")[0] == 200
    finally:
        ui.stop()


def test_connection_limit(agent):
    require_bins()
    agent.start()
    ui = Ui(agent)  # the default idle timeout (30 s): the silent peers stay
    silent = []

    def connect():
        s = socket.create_connection(("127.0.0.1", ui.port), timeout=10)
        silent.append(s)
        return s

    def alive(s):
        """Whether the server keeps `s` open (accepted, not refused)."""
        s.settimeout(0.3)
        try:
            return s.recv(1) != b""
        except socket.timeout:
            return True
        except ConnectionError:
            return False

    def served():
        try:
            return ui.request("/api/runs")[0] == 200
        except (ConnectionError, http.client.HTTPException):
            return False
    try:
        # limit - 1 silent peers: the limit-th connection is served.
        for _ in range(UI_MAX_CONNS - 1):
            connect()
        assert served()

        # The last slot, once the served request's connection is gone.
        def fill():
            s = connect()
            if alive(s):
                return True
            silent.remove(s)
            s.close()
            return False
        agent.wait_for(fill, what="the last slot taken")
        # limit + 1: closed at once, nothing served.
        extra = socket.create_connection(("127.0.0.1", ui.port), timeout=10)
        assert not alive(extra)
        extra.close()
        assert not served()
        assert all(alive(s) for s in silent[:3])
        # A peer leaves: its slot serves again.
        silent.pop(0).close()
        agent.wait_for(served, what="a freed slot")
    finally:
        for s in silent:
            s.close()
        ui.stop()


def test_idle_timeout(agent):
    require_bins()
    agent.start()
    r = subprocess.run([BIN["trackctl"], "ui", "--idle-timeout", "0"], env=agent.env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--idle-timeout" in r.stderr
    ui = Ui(agent, extra=("--idle-timeout", "2"))
    try:
        # A silent client, one that sent half a head, and one idle after an
        # answer (keep-alive) are all closed after 2 s without activity.
        silent = socket.create_connection(("127.0.0.1", ui.port), timeout=30)
        half = socket.create_connection(("127.0.0.1", ui.port), timeout=30)
        half.sendall(b"GET /api/runs HTTP/1.1\r\nHost: ")
        kept = socket.create_connection(("127.0.0.1", ui.port), timeout=30)
        kept.sendall(f"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1:{ui.port}\r\n"
                     f"Cookie: {ui.cookie}\r\n\r\n".encode())
        start = time.monotonic()
        assert kept.recv(12) == b"HTTP/1.1 200"
        for s in (silent, half, kept):
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert b"HTTP/1.1 200" not in data or s is kept
            s.close()
        took = time.monotonic() - start
        assert 1.5 <= took < 10, took
        assert ui.request("/api/runs")[0] == 200
    finally:
        ui.stop()


def test_listen_rules(agent):
    require_bins()
    agent.start()
    # A non-loopback address needs --allow-remote.
    r = subprocess.run([BIN["trackctl"], "ui", "--listen", "0.0.0.0:0"], env=agent.env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--allow-remote" in r.stderr
    r = subprocess.run([BIN["trackctl"], "ui", "--listen", "nonsense"], env=agent.env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    # A port that is taken: a clear error naming it.
    first = Ui(agent)
    try:
        r = subprocess.run([BIN["trackctl"], "ui", "--listen", f"127.0.0.1:{first.port}"],
                           env=agent.env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "is taken" in r.stderr, r.stderr
    finally:
        first.stop()
    # --open with no display (nor xdg-open): the server still starts.
    p = subprocess.Popen([BIN["trackctl"], "ui", "--listen", "127.0.0.1:0", "--open"],
                         env=dict(agent.env, DISPLAY="", WAYLAND_DISPLAY=""),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = p.stdout.readline()
        assert url.startswith("http://127.0.0.1:")  # --open without a display: no failure
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
    assert p.returncode == 0
    assert "no display" in p.stderr.read()
