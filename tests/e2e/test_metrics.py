"""The Prometheus endpoint (metrics_listen, agent/metrics/metrics.h): a real agent
on a free loopback port, scraped with urllib and raw sockets. Every scrape is
parsed strictly (HELP and TYPE before every sample, valid names, escaped labels,
one block per family, consistent histograms), and counters are checked to move
by exactly what the test sent."""
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import (BIN, Agent, batch_request, finish_producer,
                      history_record, item_double, require_bins)

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)\Z")
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_exposition(text):
    """Strict parse of text format 0.0.4. Returns {(name, labels): value} and
    {family: type}; raises AssertionError on any deviation."""
    assert text.endswith("\n"), "the body ends with a newline"
    helps, types, samples, done, current = {}, {}, {}, set(), None
    for line in text[:-1].split("\n"):
        assert line, "no empty lines"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert NAME.match(name), f"bad metric name {name!r}"
            assert name not in helps, f"second HELP for {name}"
            assert name not in done, f"family {name} appears twice"
            assert help_text.strip(), f"empty HELP for {name}"
            if current:
                done.add(current)
            current = name
            helps[name] = help_text
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name == current and name not in types, f"TYPE {name} not right after HELP"
            assert typ in ("counter", "gauge", "histogram"), typ
            types[name] = typ
            continue
        assert not line.startswith("#"), f"unexpected comment {line!r}"
        m = SAMPLE.match(line)
        assert m, f"malformed sample line {line!r}"
        name, labels_text, value = m.groups()
        family = name
        if types.get(current) == "histogram" and name.startswith(current) and \
                name[len(current):] in HIST_SUFFIXES:
            family = current
        assert family == current, f"sample {name} outside its family block ({current})"
        assert family in helps and family in types, f"{name} without HELP/TYPE"
        if types[family] == "counter":
            assert family.endswith("_total"), f"counter {family} should end in _total"
        labels = ()
        if labels_text:
            inner = labels_text[1:-1]
            pairs = LABEL.findall(inner)
            assert ",".join(f'{k}="{v}"' for k, v in pairs) == inner, f"bad labels {inner!r}"
            labels = tuple(pairs)
        v = float(value)
        if types[family] == "counter":
            assert v >= 0 and v == int(v), f"{name} {value}"
        key = (name, labels)
        assert key not in samples, f"duplicate series {key}"
        samples[key] = v
    # Histograms: cumulative buckets ascending by le, +Inf equal to _count.
    for family, typ in types.items():
        if typ != "histogram":
            continue
        buckets = [(float(dict(lab)["le"]), v) for (n, lab), v in samples.items()
                   if n == family + "_bucket"]
        assert buckets and buckets[-1][0] == float("inf"), family
        les = [b[0] for b in buckets]
        assert les == sorted(les), family
        counts = [b[1] for b in buckets]
        assert counts == sorted(counts), f"{family} buckets not cumulative"
        assert counts[-1] == samples[(family + "_count", ())], family
        assert samples[(family + "_sum", ())] >= 0
    return samples, types


class Scraper:
    def __init__(self, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/metrics"

    def scrape(self, timeout=10):
        with urllib.request.urlopen(self.url, timeout=timeout) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            body = r.read().decode()
        samples, _ = parse_exposition(body)
        return samples

    def value(self, name, **labels):
        return self.scrape().get((name, tuple(labels.items())))

    def raw(self, data, timeout=10):
        """Sends bytes on a fresh connection; returns the whole answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk


@pytest.fixture
def magent(tmp_path):
    require_bins()
    port = free_port()
    # No system metrics: the counters are checked against exactly what the
    # clients send, and the sampler's own records (one per live run and pass,
    # at times that follow the machine's speed) would count too.
    a = Agent(tmp_path, config=f"metrics_listen: 127.0.0.1:{port}\n"
                               "txlog:\n  max_bytes: 64MiB\n"
                               "system_metrics:\n  enabled: false\n")
    a.metrics = Scraper(port)
    a.start()
    yield a
    if a.proc and a.proc.poll() is None:
        a.proc.kill()
        a.proc.wait()


def test_counters_move_exactly_with_what_clients_send(magent):
    a, m = magent, magent.metrics
    s0 = m.scrape()
    assert s0[("trackd_records_acked_total", ())] == 0
    assert s0[("trackd_log_budget_bytes", ())] == 64 << 20
    assert s0[("trackd_build_info", (("version", a.status()["version"]),))] == 1

    # Hand-made batches: 3 stored batches of 1, 2 and 4 records, a resend, and
    # one refusal of each kind the test can provoke.
    session = os.urandom(16)
    batches = [[history_record("m", 10 * b + i, [item_double("x", i)]) for i in range(n)]
               for b, n in enumerate((1, 2, 4))]
    reqs = [batch_request(session, i + 1, b) for i, b in enumerate(batches)]
    rec = history_record("m", 0, [item_double("x", 1.0)])
    replies = a.raw(*reqs, reqs[1], b"\xff\xff\xff", batch_request(session, 9, [rec], version=2),
                    batch_request(session, 0, [rec]))
    assert [("ack" in r) for r in replies] == [True] * 4 + [False] * 3
    s1 = m.scrape()
    assert s1[("trackd_records_acked_total", ())] == 7
    assert s1[("trackd_batches_acked_total", (("result", "stored"),))] == 3
    assert s1[("trackd_batches_acked_total", (("result", "duplicate"),))] == 1
    rejected = {dict(k[1])["reason"]: v for k, v in s1.items()
                if k[0] == "trackd_requests_rejected_total"}
    assert rejected == {"malformed": 1, "unsupported_version": 1, "invalid": 1,
                        "too_large": 0, "permission": 0}
    # One log entry per stored batch; its bytes are the frames written.
    assert s1[("trackd_log_records_appended_total", ())] == 3
    assert s1[("trackd_log_bytes_appended_total", ())] > sum(len(r) for r in reqs)

    # Real clients: exactly what they report acknowledged.
    procs = [a.producer(f"p{i}", 500 * (i + 1)) for i in range(3)]
    bad = a.producer("bad", 50, "--exit-code", 2)
    reports = [finish_producer(p) for p in procs] + [finish_producer(bad)]
    assert all(r["acked"] == r["logged"] > r["rows"] for r in reports)
    a.wait_for(lambda: a.run_state("bad") == "failed", what="bad failed")
    # Run "m" never sent a start: its acked records are kept in a recovered run,
    # crashed once the raw client that sent them was gone.
    a.wait_for(lambda: a.run_state("m") == "crashed", what="recovered run m crashed")
    for rid in ("p0", "p1", "p2"):
        a.wait_for(lambda: a.run_state(rid) == "finished", what=f"{rid} finished")
    s2 = m.scrape()
    assert s2[("trackd_records_acked_total", ())] == 7 + sum(r["acked"] for r in reports)
    stored = s2[("trackd_batches_acked_total", (("result", "stored"),))]
    assert s2[("trackd_log_records_appended_total", ())] == \
        stored + s2[("trackd_internal_batches_total", ())]
    assert s2[("trackd_runs_ended_total", (("state", "finished"),))] == 3
    assert s2[("trackd_runs_ended_total", (("state", "failed"),))] == 1
    assert s2[("trackd_runs_ended_total", (("state", "crashed"),))] == 1
    assert s2[("trackd_runs_running", ())] == 0
    assert s2[("trackd_local_runs_recovered_total", ())] == 1
    assert s2[("trackd_local_records_orphaned_total", ())] == 0

    # A client killed mid-run: running while it logs, crashed once it is gone.
    victim = a.producer("victim", 10**6, "--sleep-us", 1000, "--every", 10)
    a.wait_for(lambda: m.value("trackd_runs_running") == 1, what="victim running")
    assert m.value("trackd_clients_connected") >= 1
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    a.wait_for(lambda: m.value("trackd_runs_ended_total", state="crashed") == 2,
               what="crash counted")
    s3 = m.scrape()
    assert s3[("trackd_runs_running", ())] == 0
    assert s3[("trackd_local_crashes_detected_total", ())] == 2

    # The local sink catches up: nothing behind its durable cursor, which is
    # where the log ends.
    def caught_up():
        s = m.scrape()
        return s[("trackd_sink_backlog_records", (("sink", "local"),))] == 0 and s
    s4 = a.wait_for(caught_up, what="local sink caught up")
    assert s4[("trackd_sink_backlog_bytes", (("sink", "local"),))] == 0
    assert s4[("trackd_sink_cursor_index", (("sink", "local"),))] == \
        s4[("trackd_log_durable_index", ())]
    # fsync: interval synced the appends, each timed.
    assert s4[("trackd_log_fsync_duration_seconds_count", ())] > 0
    st = a.status()
    assert s4[("trackd_log_disk_bytes", ())] == st["log_bytes"]
    assert s4[("trackd_clients_connected", ())] == 0  # every producer is gone
    assert a.stop() == 0


def test_http_contract(magent):
    m = magent.metrics
    # HEAD: the headers of GET, no body.
    head = m.raw(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").decode()
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    length = int(re.search(r"Content-Length: (\d+)", head).group(1))
    assert length > 0 and head.endswith("\r\n\r\n")
    # Query strings are ignored; HTTP/1.0 is answered.
    assert m.raw(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{m.port}/other", timeout=10)
    assert e.value.code == 404
    for method in ("POST", "PUT", "DELETE"):
        req = urllib.request.Request(m.url, data=b"x" if method != "DELETE" else None,
                                     method=method)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 405
        assert e.value.headers["Allow"] == "GET, HEAD"
    # libmicrohttpd's own answers (metrics.h).
    assert m.raw(b"GET /metrics HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    assert m.raw(b"GET /metrics HTTP/1.x\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert m.raw(b"GET metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    # No target at all: closed without an answer (still a bad request).
    assert m.raw(b"GARBAGE\r\n\r\n") == b""

    # Request heads (metrics.h): MAX_HEAD = 7168 bytes (CRLFs included) always
    # answered; a request line of MEMORY_LIMIT - 1 = 8191 bytes (its CRLF
    # excluded) or a head of as many bytes always refused.
    MAX_HEAD, MEMORY_LIMIT = 7168, 8192

    def line_head(n):  # a head of n bytes: one long request line
        fixed = len("GET /metrics? HTTP/1.1\r\n\r\n")
        return b"GET /metrics?" + b"a" * (n - fixed) + b" HTTP/1.1\r\n\r\n"

    def header_head(n):  # a head of n bytes: one long header
        fixed = len("GET /metrics HTTP/1.1\r\nX-Pad: \r\n\r\n")
        return b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"p" * (n - fixed) + b"\r\n\r\n"
    bad = 3  # 505 and 2 × 400 above; GARBAGE
    bad += 1
    for n in (MAX_HEAD - 1, MAX_HEAD, MAX_HEAD + 1):
        for head in (line_head(n), header_head(n)):
            assert len(head) == n
            assert m.raw(head).startswith(b"HTTP/1.1 200 "), n
    for n in (MEMORY_LIMIT - 1, MEMORY_LIMIT, MEMORY_LIMIT + 1):
        assert m.raw(line_head(n + 4)).startswith(b"HTTP/1.1 414 "), n
        assert m.raw(header_head(n)).startswith(b"HTTP/1.1 431 "), n
        bad += 2
    # Between the two: answered, refused, or closed without an answer (the
    # answer's headers no longer fit the pool), never anything else, and
    # once refused, refused for every longer head.
    for make, refusal in ((line_head, b"HTTP/1.1 414 "), (header_head, b"HTTP/1.1 431 ")):
        refused = False
        for n in range(MAX_HEAD + 2, MEMORY_LIMIT - 1, 61):
            try:
                got = m.raw(make(n))
            except ConnectionResetError:  # closed with the head unread
                got = b""
            assert got.startswith(b"HTTP/1.1 200 ") or got.startswith(refusal) or got == b"", n
            assert not (refused and not got.startswith(refusal)), n
            refused = got.startswith(refusal)
            bad += 0 if got.startswith(b"HTTP/1.1 200 ") else 1
    # Far over: refused as soon as the pool is full, without waiting for the
    # line's end.
    assert m.raw(b"GET /" + b"a" * 100000).startswith(b"HTTP/1.1 414 ")
    bad += 1
    s = m.scrape()
    # 404, 3 × 405, and the refusals counted above.
    assert s[("trackd_metrics_bad_requests_total", ())] == 1 + 3 + bad


def test_silent_scrapers_block_nobody(magent):
    m = magent.metrics
    # One connection that sends nothing: another scrape is answered meanwhile.
    silent = socket.create_connection(("127.0.0.1", m.port))
    assert m.scrape(timeout=4)[("trackd_metrics_scrapes_total", ())] >= 1
    # Half a request, then nothing: same.
    half = socket.create_connection(("127.0.0.1", m.port))
    half.sendall(b"GET /metr")
    m.scrape(timeout=4)
    # All 8 slots taken by silent peers: the 9th connection is closed at once,
    # counted; the slots come back when the peers go.
    # 7 silent peers: the 8th connection (the limit) is served.
    others = [socket.create_connection(("127.0.0.1", m.port)) for _ in range(5)]
    refused = m.scrape(timeout=4)[("trackd_metrics_connections_refused_total", ())]
    others.append(socket.create_connection(("127.0.0.1", m.port)))
    extra = socket.create_connection(("127.0.0.1", m.port))
    extra.settimeout(4)
    assert extra.recv(100) == b""
    extra.close()
    for s in others + [half]:
        s.close()

    def scrape_once_free():
        # The server sees the peers go on its next round; until then a new
        # connection may still find every slot taken (and be refused, counted).
        try:
            return m.scrape(timeout=4)
        except (ConnectionError, urllib.error.URLError):
            return None
    s = magent.wait_for(scrape_once_free, what="slots free again")
    assert s[("trackd_metrics_connections_refused_total", ())] >= refused + 1
    # The first silent peer is dropped after the 5 s limit, and counted.
    silent.settimeout(30)
    assert silent.recv(100) == b""
    silent.close()
    assert m.scrape()[("trackd_metrics_timeouts_total", ())] >= 1


@pytest.mark.parametrize("address", ["0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464",
                                     "localhost:9464", "127.0.0.1:0", "127.0.0.1"])
def test_non_loopback_address_is_a_config_error(tmp_path, address):
    require_bins()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'metrics_listen: "{address}"\n')
    r = subprocess.run([BIN["trackd"], "--config", str(cfg), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "c.yaml:1:17: metrics_listen: expected a loopback address and port" in r.stderr
    assert "no authentication" in r.stderr


def test_port_in_use_stops_the_start_with_a_clear_error(tmp_path):
    require_bins()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        a = Agent(tmp_path, config=f"metrics_listen: 127.0.0.1:{port}\n")
        a.start(wait=False)
        assert a.proc.wait(timeout=30) == 1
        assert f"cannot serve metrics on 127.0.0.1:{port}" in a.log()
        assert "Address already in use" in a.log()


def test_ipv6_loopback(tmp_path):
    require_bins()
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with socket.socket(socket.AF_INET6) as s:
        try:
            s.bind(("::1", 0))
        except OSError:
            pytest.skip("::1 is not configured on this machine")
        port = s.getsockname()[1]
    a = Agent(tmp_path, config=f'metrics_listen: "[::1]:{port}"\n').start()
    try:
        with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=10) as r:
            parse_exposition(r.read().decode())
    finally:
        assert a.stop() == 0
