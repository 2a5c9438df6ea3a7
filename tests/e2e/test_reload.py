"""SIGHUP reload (agent/cmd/main.c): the configuration file is read again; the
keys config.c marks as reloadable apply to the running agent (log level,
request limits, disk budget, wandb connection settings), every other changed
key is reported as needing a restart, and a file that does not load — or whose
wandb key cannot be used — is rejected as a whole with the old settings kept.
Each effect is checked through behaviour (which requests are accepted, where
uploads go), the log, the metrics endpoint and systemd's notify socket."""
import os
import re
import signal
import socket
import sys
import time

import pytest

from conftest import (Agent, batch_request, field_bytes, finish_producer, history_record,
                      require_bins, status_request)
from test_metrics import Scraper, free_port
from test_wandb import rec_row, rec_start, send_batches

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fake-wandb"))
from fakewandb_client import FakeWandb  # noqa: E402

PROJECT = "trackd-tests"  # the producer's
KIB = 1024


class ReloadAgent(Agent):
    """An Agent with a metrics endpoint, whose config file can be rewritten and
    reloaded; reload() returns once the agent has finished reloading."""

    def __init__(self, tmp_path, config):
        self.port = free_port()
        self.base_config = f"metrics_listen: 127.0.0.1:{self.port}\n"
        super().__init__(tmp_path, config=self.base_config + config)
        self.metrics = Scraper(self.port)
        self.session = os.urandom(16)
        self.seq = 0

    def reloads(self):
        s = self.metrics.scrape()
        return (s[("trackd_config_reloads_total", (("result", "applied"),))],
                s[("trackd_config_reloads_total", (("result", "rejected"),))])

    def reload(self, config, keep_metrics=True):
        before = sum(self.reloads())
        with open(self.config_path, "w") as f:
            f.write((self.base_config if keep_metrics else "") + config)
        self.proc.send_signal(signal.SIGHUP)
        self.wait_for(lambda: sum(self.reloads()) == before + 1, what="the reload")
        return self.reloads()

    def request_of_size(self, size):
        """A batch request of exactly `size` bytes (a new seq each time)."""
        self.seq += 1
        base = batch_request(self.session, self.seq, [history_record("size", self.seq, [])])
        pad = size - len(base)
        for n in range(pad, pad - 64, -1):
            item = field_bytes(1, "s") + field_bytes(2, field_bytes(4, "x" * max(n, 0)))
            req = batch_request(self.session, self.seq, [history_record("size", self.seq, [item])])
            if len(req) == size:
                return req
        raise AssertionError("could not build a request of that size")

    def send_sizes(self, *sizes):
        return self.raw(*[self.request_of_size(n) for n in sizes])


@pytest.fixture
def ragent(tmp_path):
    require_bins()
    agents = []

    def make(config):
        a = ReloadAgent(tmp_path, config)
        agents.append(a)
        return a.start()

    yield make
    for a in agents:
        if a.proc and a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()


def acked(reply):
    return "ack" in reply


def too_large(reply, limit):
    return reply.get("error", {}).get("code") == 4 and f"limit {limit} " in \
        reply["error"]["message"] and reply["error"]["retryable"] is False


def test_log_level_and_limits_apply_restart_keys_are_reported(ragent):
    a = ragent("log_level: info\nlimits:\n  max_message_bytes: 64KiB\n")
    bad = batch_request(a.session, 10**6, [history_record("a/b", 0, [])])
    # Before: a 40 KiB batch is accepted; debug lines are not written.
    assert all(map(acked, a.send_sizes(40 * KIB)))
    a.raw(bad)
    assert "level=debug" not in a.log()

    applied, rejected = a.reload("log_level: debug\nlimits:\n  max_message_bytes: 32KiB\n"
                                 "  max_key_bytes: 8B\ningest_contexts: 4\n")
    assert (applied, rejected) == (1, 0)
    log = a.log()
    assert 'reload: log_level: info -> debug: applied' in log
    assert 'reload: limits.max_message_bytes: 64KiB -> 32KiB: applied' in log
    assert 'reload: limits.max_key_bytes: 256B -> 8B: applied' in log
    assert ('reload: ingest_contexts: 16 -> 4: needs a restart; the running value 16 stays '
            'in force') in log
    assert 'reload done: 3 change(s) applied, 1 need a restart' in log
    # The new limit at limit - 1, limit, limit + 1; the old size is refused now.
    limit = 32 * KIB
    r = a.send_sizes(limit - 1, limit, limit + 1, 40 * KIB)
    assert acked(r[0]) and acked(r[1]), r
    assert too_large(r[2], limit) and too_large(r[3], limit), r
    # A key of 9 bytes is refused, 8 accepted (max_key_bytes).
    a.seq += 1
    k9 = batch_request(a.session, a.seq, [history_record("k", 0, [
        field_bytes(1, "k" * 9) + field_bytes(2, field_bytes(4, "v"))])])
    (r9,) = a.raw(k9)
    assert r9["error"]["code"] == 4 and "key is 9 bytes, limit 8" in r9["error"]["message"], r9
    # Debug lines now.
    a.raw(bad)
    a.wait_for(lambda: 'level=debug msg="request rejected' in a.log(), what="a debug line")

    # Above the value the agent started with: needs a restart, the limit stays.
    a.reload("log_level: debug\nlimits:\n  max_message_bytes: 128KiB\n")
    assert ('reload: limits.max_message_bytes: 32KiB -> 128KiB: needs a restart (above the '
            'value the agent started with') in a.log()
    r = a.send_sizes(limit + 1)
    assert too_large(r[0], limit), r
    # Back up to the start-up value: applies.
    a.reload("log_level: warn\nlimits:\n  max_message_bytes: 64KiB\n")
    assert all(map(acked, a.send_sizes(40 * KIB, 64 * KIB)))
    # 2 + 1 over the size limit, 1 over the key limit.
    assert a.metrics.value("trackd_requests_rejected_total", reason="too_large") == 4
    assert a.proc.poll() is None
    assert a.stop() == 0


def test_budget_applies_at_once(tmp_path, ragent):
    # A wandb sink whose backend never answers holds its cursor, so the log's
    # segments stay on disk whatever the local sink does.
    key = tmp_path / "wandb.key"
    key.write_text("0123456789abcdef0123456789abcdef01234567\n")
    os.chmod(key, 0o600)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    wandb = wandb_yaml(dead, key)
    limits = "limits:\n  max_message_bytes: 4MiB\n"
    a = ragent(limits + "txlog:\n  max_bytes: 64MiB\n" + wandb)
    assert a.metrics.value("trackd_log_budget_bytes") == 64 << 20
    # A run of 18 MB (rows of three 1000 KiB strings) the backend never takes.
    big = "x" * (1000 * KIB)
    batches = [[rec_start("big")]] + [[rec_row("big", i, a=big, b=big, c=big)] for i in range(6)]
    send_batches(a, *batches)
    # Its client is gone: the agent's crash mark is in the log before we measure.
    a.wait_for(lambda: a.run_state("big") == "crashed", timeout=180, what="big crashed")
    used = a.metrics.value("trackd_log_disk_bytes")
    assert used > 16 << 20
    a.reload(limits + "txlog:\n  max_bytes: 16MiB\n" + wandb)
    assert "reload: txlog.max_bytes: 64MiB -> 16MiB: applied" in a.log()
    assert a.metrics.value("trackd_log_budget_bytes") == 16 << 20
    assert a.raw(status_request())[0]["status"]["log_max_bytes"] == 16 << 20
    (r,) = a.send_sizes(1000)
    assert r["error"]["retryable"] is True, r
    assert a.metrics.value("trackd_log_budget_refusals_total") == 1
    assert a.metrics.value("trackd_log_disk_bytes") == used  # nothing deleted
    # The client's resend goes through once the budget is raised again.
    a.reload(limits + "txlog:\n  max_bytes: 2GiB\n" + wandb)
    a.seq -= 1
    (r,) = a.send_sizes(1000)
    assert acked(r), r
    assert a.metrics.value("trackd_log_budget_bytes") == 2 << 30
    assert a.stop() == 0


@pytest.mark.parametrize("bad,why", [
    # (Line 1 of the file is metrics_listen.)
    ("log_level: loud\n", ":2:12: log_level: expected one of error, warn, info, debug"),
    ("log_level: debug\nlimts:\n  max_key_bytes: 8B\n", ':3:1: unknown key \\"limts\\"'),
    # Every key valid, the whole not: the budget must hold 4 requests.
    ("log_level: debug\nlimits:\n  max_message_bytes: 1MiB\ntxlog:\n  max_bytes: 3MiB\n",
     "txlog.max_bytes (3145728 bytes) must be at least 4 × limits.max_message_bytes"),
])
def test_invalid_config_is_rejected_as_a_whole(ragent, bad, why):
    a = ragent("limits:\n  max_message_bytes: 64KiB\n")
    assert a.reload(bad) == (0, 1)
    log = a.log()
    assert re.search(r'level=error msg="reload rejected: .*' + re.escape(why), log), log
    assert "the running configuration stays in force" in log
    assert ': applied"' not in log
    # Old settings in force: info level (no debug line), the 64 KiB limit.
    a.raw(batch_request(a.session, 10**6, [history_record("a/b", 0, [])]))
    r = a.send_sizes(64 * KIB, 64 * KIB + 1)
    assert acked(r[0]) and too_large(r[1], 64 * KIB), r
    assert "level=debug" not in a.log()
    # A good file afterwards applies normally.
    assert a.reload("log_level: debug\n") == (1, 1)
    assert a.proc.poll() is None
    assert a.stop() == 0


def test_reload_notifies_systemd(tmp_path):
    require_bins()
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    a = ReloadAgent(tmp_path, "")
    a.env.update(NOTIFY_SOCKET=path)
    a.start()
    try:
        while "READY=1" not in sock.recv(4096).decode():
            pass
        a.proc.send_signal(signal.SIGHUP)
        first = sock.recv(4096).decode()
        assert first.startswith("RELOADING=1\nMONOTONIC_USEC="), first
        usec = int(re.search(r"MONOTONIC_USEC=(\d+)", first).group(1))
        assert abs(usec - time.monotonic_ns() // 1000) < 60 * 10**6
        second = sock.recv(4096).decode()
        assert second.startswith("READY=1\nSTATUS=ready (reloaded: 0 applied, 0 need a restart)")
        # A rejected reload also ends in READY=1: the agent goes on.
        with open(a.config_path, "a") as f:
            f.write("bogus: 1\n")
        a.proc.send_signal(signal.SIGHUP)
        assert sock.recv(4096).decode().startswith("RELOADING=1\n")
        assert sock.recv(4096).decode().startswith("READY=1\nSTATUS=ready (reload rejected")
    finally:
        assert a.stop() == 0


# ---- wandb: uploads move to another backend ---------------------------------------------

API_KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def two_fakes():
    fakes = [FakeWandb(api_key=API_KEY, entity="ent").start() for _ in range(2)]
    yield fakes
    for fw in fakes:
        fw.stop()


def wandb_yaml(base_url, key_path, **over):
    cfg = {
        "enabled": "true", "base_url": base_url, "api_key_file": str(key_path),
        "transmit_interval": "100ms", "heartbeat_interval": "1s", "upsert_debounce": "100ms",
        "connect_timeout": "1s", "request_timeout": "3s", "stall_timeout": "1s",
        "retry_min": "100ms", "retry_max": "1s",
    }
    cfg.update(over)
    return "sinks:\n  wandb:\n" + "".join(f"    {k}: {v}\n" for k, v in cfg.items())


def uploaded(fw, run_id, rows):
    def done():
        r = fw.run_or_none("ent", PROJECT, run_id, False)
        return r and r["history_lines"] >= rows and r["complete"]
    return done


def test_wandb_base_url_and_key_reload(tmp_path, ragent, two_fakes):
    fw1, fw2 = two_fakes
    key = tmp_path / "wandb.key"
    key.write_text(API_KEY + "\n")
    os.chmod(key, 0o600)
    a = ragent(wandb_yaml(fw1.base_url, key))
    finish_producer(a.producer("before", 200))
    fw1.wait_for(uploaded(fw1, "before", 200), timeout=60, what="before on fw1")

    # A request in flight across the reload keeps the headers it started with
    # (they are freed when it ends, not when they are replaced): fw1 accepts it.
    fault = fw1.add_fault(kind="delay", delay=5, path_prefix="/files/", count=1)
    during = a.producer("during", 100, "--sleep-us", 20000)
    def fired():
        listing = fw1.faults()
        return any(f["id"] == fault and f["fired"]
                   for f in listing["faults"] + listing["expired"])
    fw1.wait_for(fired, timeout=60, what="a delayed request to fw1")
    applied, _ = a.reload(wandb_yaml(fw2.base_url, key, retry_max="2s"))
    assert applied == 1
    fw1.wait_for(lambda: (fw1.run_or_none("ent", PROJECT, "during", False) or
                          {"history_lines": 0})["history_lines"] > 0,
                 timeout=60, what="the delayed request answered")
    finish_producer(during)
    log = a.log()
    assert (f'reload: sinks.wandb.base_url: \\"{fw1.base_url}\\" -> \\"{fw2.base_url}\\": '
            'applied') in log
    assert "reload: sinks.wandb.retry_max: 1s -> 2s: applied" in log
    assert f"wandb sink: settings reloaded; uploading to {fw2.base_url}" in log
    finish_producer(a.producer("after", 300))
    fw2.wait_for(uploaded(fw2, "after", 300), timeout=60, what="after on fw2")
    assert fw1.run_or_none("ent", PROJECT, "after", False) is None
    assert fw2.run_or_none("ent", PROJECT, "before", False) is None
    assert a.query("wandb")["base_url"] == fw2.base_url

    # A key file others may read: the whole reload is refused (base_url too).
    open_key = tmp_path / "open.key"
    open_key.write_text(API_KEY + "\n")
    os.chmod(open_key, 0o644)
    assert a.reload(wandb_yaml(fw1.base_url, open_key))[1] == 1
    assert re.search(r'level=error msg="reload rejected: sinks.wandb: .*open\.key', a.log())
    assert a.query("wandb")["base_url"] == fw2.base_url
    finish_producer(a.producer("still", 50))
    fw2.wait_for(uploaded(fw2, "still", 50), timeout=60, what="still on fw2")
    # Keys fixed at start are reported, not applied.
    a.reload(wandb_yaml(fw2.base_url, key, retry_max="2s", max_parallel_requests=4))
    assert "reload: sinks.wandb.max_parallel_requests: 16 -> 4: needs a restart" in a.log()
    assert API_KEY not in a.log()
    assert a.stop() == 0


# ---- wandb: a rotated API key file (issue #12 item 5) -----------------------------------

NEW_KEY = "fedcba9876543210fedcba9876543210fedcba98"
OPEN_KEY = "0000000000111111111122222222223333333333"


@pytest.fixture
def one_fake():
    fw = FakeWandb(api_key=API_KEY, entity="ent").start()
    yield fw
    fw.stop()


def test_sighup_rereads_a_rotated_key_file(tmp_path, ragent, one_fake):
    """The key file is rewritten in place (same path, so no config key changes)
    and SIGHUP is sent: the new key is read, checked as at start and applied —
    requests after the reload carry it. Rewritten readable by others, it is
    refused at reload and the key in force stays."""
    fw = one_fake
    key = tmp_path / "wandb.key"
    key.write_text(API_KEY + "\n")
    os.chmod(key, 0o600)
    config = wandb_yaml(fw.base_url, key)
    a = ragent(config)
    finish_producer(a.producer("old-key", 50))
    fw.wait_for(uploaded(fw, "old-key", 50), timeout=60, what="old-key uploaded")

    # The backend takes both keys while the user rotates.
    fw.configure(extra_api_keys=[NEW_KEY, OPEN_KEY])
    key.write_text(NEW_KEY + "\n")
    applied, rejected = a.reload(config)
    assert rejected == 0
    used = dict(fw.stats()["auth_keys"])
    finish_producer(a.producer("new-key", 50))
    fw.wait_for(uploaded(fw, "new-key", 50), timeout=60, what="new-key uploaded")
    after = fw.stats()["auth_keys"]
    assert after.get(API_KEY, 0) == used.get(API_KEY, 0), "the old key was used after the reload"
    assert after.get(NEW_KEY, 0) > used.get(NEW_KEY, 0), after
    log = a.log()
    assert f"reload: sinks.wandb API key (file {key}): re-read: a new key, applied" in log, log

    # Rewritten as 0644: refused as at start, the key in force (NEW_KEY) stays.
    key.write_text(OPEN_KEY + "\n")
    os.chmod(key, 0o644)
    assert a.reload(config)[1] == rejected + 1
    assert re.search(r'level=error msg="reload rejected: sinks.wandb: .*wandb\.key is accessible '
                     r'by group or others.*the API key in use, stay in force', a.log()), a.log()
    used = dict(fw.stats()["auth_keys"])
    finish_producer(a.producer("kept-key", 50))
    fw.wait_for(uploaded(fw, "kept-key", 50), timeout=60, what="kept-key uploaded")
    after = fw.stats()["auth_keys"]
    assert after.get(NEW_KEY, 0) > used.get(NEW_KEY, 0), after
    assert OPEN_KEY not in after, after

    # Unchanged at the next reload: said so, nothing else happens.
    os.chmod(key, 0o600)
    key.write_text(NEW_KEY + "\n")
    a.reload(config)
    assert f"reload: sinks.wandb API key (file {key}): re-read: unchanged" in a.log()
    for k in (API_KEY, NEW_KEY, OPEN_KEY):
        assert k not in a.log()
    assert a.stop() == 0
