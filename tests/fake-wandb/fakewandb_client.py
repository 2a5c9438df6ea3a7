"""Start the fake W&B backend as a subprocess and drive its control API.

    from fakewandb_client import FakeWandb
    with FakeWandb() as fw:                 # starts fake_wandb.py, reads its ports
        fw.base_url                         # http://127.0.0.1:PORT, for the client under test
        fw.api_key
        fw.add_fault(kind="status", status=503, retry_after=2, path_prefix="/files/", count=3)
        fw.run("fake-entity", "proj", "abc123")   # what the run holds
        fw.wait_for(lambda: fw.run_or_none(...) ...)

Standard library only. The control calls go to the fake's control port, which
faults never touch (so they work while the API port refuses connections).
"""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "fake_wandb.py")


class FakeWandbError(Exception):
    pass


class FakeWandb:
    def __init__(self, api_key=None, entity=None, state_file=None, port=0, max_hold=None,
                 extra_args=(), python=None, start_timeout=15.0, verbose=False):
        cmd = [python or sys.executable, SERVER, "--port", str(port)]
        if api_key:
            cmd += ["--api-key", api_key]
        if entity:
            cmd += ["--entity", entity]
        if state_file:
            cmd += ["--state-file", str(state_file)]
        if max_hold is not None:
            cmd += ["--max-hold", str(max_hold)]
        if verbose:
            cmd.append("-v")
        cmd += list(extra_args)
        self.cmd = cmd
        self.start_timeout = start_timeout
        self.proc = None
        self.stderr_lines = []
        self.info = None

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        t = threading.Thread(target=self._pump_stderr, daemon=True)
        t.start()
        result = {}

        def read_first_line():
            result["line"] = self.proc.stdout.readline()

        r = threading.Thread(target=read_first_line, daemon=True)
        r.start()
        r.join(self.start_timeout)
        line = result.get("line")
        if not line:
            self.stop()
            raise FakeWandbError(f"fake_wandb did not start: {''.join(self.stderr_lines)}")
        self.info = json.loads(line)
        self.port = self.info["port"]
        self.control_port = self.info["control_port"]
        self.api_key = self.info["api_key"]
        self.entity = self.info["entity"]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.control_url = f"http://127.0.0.1:{self.control_port}/_control"
        return self

    def _pump_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if len(self.stderr_lines) > 2000:
                del self.stderr_lines[:1000]

    def stop(self, timeout=10.0):
        """Ask the server to shut down (it saves its state file if it has one); kill it
        if it does not exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None and self.info is not None:
            try:
                self.call("POST", "/shutdown", timeout=2.0)
            except Exception:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        rc = self.proc.returncode
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:
                pass
        return rc

    def kill(self):
        """SIGKILL: the backend vanishes without saving anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- control API -------------------------------------------------------------------
    def call(self, method, path, body=None, timeout=10.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.control_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raise FakeWandbError(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}")

    def health(self):
        return self.call("GET", "/health")

    def add_fault(self, **spec):
        """One fault; returns its id. Spec keys: kind (status|refuse|reset|hang|trickle|
        delay|expired), status, retry_after, retry_after_date, headers, body, path_prefix,
        method, operation, count, duration, after, probability, seed, apply,
        when (headers|body|mid_body), partial, hold, byte_delay, chunk, delay."""
        return self.call("POST", "/faults", spec)["ids"][0]

    def faults(self):
        return self.call("GET", "/faults")

    def clear_faults(self, fault_id=None):
        return self.call("DELETE", "/faults" if fault_id is None else f"/faults/{fault_id}")

    def runs(self):
        return self.call("GET", "/runs")["runs"]

    def run(self, entity, project, name, lines=True):
        p = "/".join(urllib.parse.quote(x, safe="") for x in (entity, project, name))
        return self.call("GET", f"/runs/{p}" + ("" if lines else "?lines=0"))

    def run_or_none(self, entity, project, name, lines=True):
        try:
            return self.run(entity, project, name, lines)
        except FakeWandbError as e:
            if ": 404 " in str(e):
                return None
            raise

    def stop_run(self, entity, project, name, stopped=True):
        p = "/".join(urllib.parse.quote(x, safe="") for x in (entity, project, name))
        return self.call("POST", f"/runs/{p}/stop", {"stopped": stopped})

    def run_files(self, entity, project, name, content=True):
        """The run's files uploaded by PUT: {"files": {name: {size, md5 (hex), md5_b64,
        sha256, puts, content_type, t, content_b64 (unless content=False)}}, "uploaded"
        (file_stream's list), "create_run_files", "run_upload_urls", "upload_urls_issued",
        "puts", "replacements", "put_statuses"}."""
        p = "/".join(urllib.parse.quote(x, safe="") for x in (entity, project, name))
        return self.call("GET", f"/runs/{p}/files" + ("" if content else "?content=0"))

    def run_file_bytes(self, entity, project, name, file_name, timeout=30.0):
        """The stored bytes of one run file (raw, byte-exact)."""
        p = "/".join(urllib.parse.quote(x, safe="") for x in (entity, project, name))
        url = (self.control_url + f"/runs/{p}/files/raw?"
               + urllib.parse.urlencode({"name": file_name}))
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            raise FakeWandbError(f"GET {url}: {e.code} {e.read().decode(errors='replace')}")

    def uploaded(self, entity, project, name):
        """The file names the run's file_stream requests listed in `uploaded`, in order."""
        return self.run_files(entity, project, name, content=False)["uploaded"]

    def expire_urls_after(self, seconds):
        """Upload URLs issued from now on expire after `seconds` (default 3600)."""
        return self.configure(upload_url_ttl=seconds)

    def requests(self, run=None, limit=None, path_prefix=None):
        q = {}
        if run:
            q["run"] = run
        if limit:
            q["limit"] = str(limit)
        if path_prefix:
            q["path_prefix"] = path_prefix
        qs = ("?" + urllib.parse.urlencode(q)) if q else ""
        return self.call("GET", "/requests" + qs)["requests"]

    def stats(self):
        return self.call("GET", "/stats")

    def configure(self, **cfg):
        return self.call("POST", "/config", cfg)

    def reset(self):
        return self.call("POST", "/reset")

    def save(self, path=None):
        return self.call("POST", "/save", {"path": str(path)} if path else {})

    def wait_for(self, predicate, timeout=10.0, interval=0.02, what="condition"):
        """Poll until predicate() is truthy; returns its value or raises after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)
