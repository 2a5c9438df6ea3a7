#!/usr/bin/env python3
"""Fake Weights & Biases backend for trackd's tests and benchmarks.

Python 3 standard library only. One asyncio event loop, a small hand-written
HTTP/1.1 server (keep-alive, Content-Length or chunked request bodies,
`Expect: 100-continue`, `Content-Encoding: gzip` request bodies), bound to
127.0.0.1 only.

    python3 fake_wandb.py [--port P] [--control-port C] [--api-key KEY]
                          [--entity E] [--state-file F] [--max-hold S] [-v]

At start it prints one JSON line on stdout and flushes it:

    {"port": N, "control_port": M, "api_key": "...", "entity": "...", "pid": P}

`port` serves the W&B API (and the control API under /_control/); `control_port`
serves only the control API and is never touched by faults, so a test can still
steer the fake while `port` refuses connections.

The W&B API (see shared/design/WANDB-UPSTREAM.md):
  POST /graphql                                   UpsertBucket, Viewer, RunResumeStatus,
                                                  CreateRunFiles, RunUploadUrls
  POST /files/{entity}/{project}/{run}/file_stream
  PUT  /storage/{entity}/{project}/{run}/{name}?expires=T&token=S
       the signed `uploadUrl` of a run file (stands for GCS/S3; no W&B auth)

Choices where the real backend's behaviour is not documented (the fake's own):
  * Auth: `Authorization: Basic base64("api:" + KEY)`; anything else is 401.
    The control API needs no auth.
  * file_stream for a run that was never created by UpsertBucket: 404
    (`auto_create_runs` in /_control/config turns this off).
  * Offsets: content lines replace lines offset..offset+n-1. An offset past the
    end of the file leaves a gap: the gap is padded with holes (read back as
    JSON null), counted in `gap_lines`/`gaps`/`holes`; writing into a hole later
    counts as `hole_fills`. Re-sent identical lines count as `duplicates`,
    replaced lines with different content as `conflicts`, lines past the old end
    as `appended`. received == appended + duplicates + conflicts + hole_fills.
  * `wandb-summary.json` is a file like the others; the run's summary is its
    last line, parsed.
  * file_stream answers 200 `{"exitcode": null, "limits": {}}` (the official
    clients treat the body as an opaque JSON object; the Python client reads only
    `limits`), plus `"stopped": true` once the run was stopped through the
    control API.
  * A request body over `max_request_bytes` (default 10 MiB, on the wire) is
    answered 413 and not applied.
  * An unsupported GraphQL operation is answered 400 with
    `{"errors": [{"message": "fake-wandb: unsupported GraphQL operation ..."}]}`,
    counted in /_control/stats `graphql_unsupported` and logged on stderr.

  * Run files: CreateRunFiles/RunUploadUrls answer per file an `uploadUrl` signed
    with HMAC-SHA256 (a per-process secret) over entity, project, run, name and
    expiry (`upload_url_ttl`, default 3600 s), and `uploadHeaders` ("Key:Value"
    strings, config `upload_headers`) that every PUT must carry with the issued
    value (else 400 naming the header). A bad signature or an expired URL is 403
    with a GCS-style XML body (`<Code>ExpiredToken</Code>`); no Content-Length is
    411, a body shorter than its Content-Length 400, over `max_upload_bytes`
    (default 64 MiB) 413. An unknown run in CreateRunFiles: 200 with a GraphQL
    error "run e/p/r not found" and `data.createRunFiles: null` (not verified
    against the real backend).

Control API: see README.md beside this file.
"""
import argparse
import array
import asyncio
import base64
import collections
import hashlib
import hmac
import email.utils
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import time
import urllib.parse
import zlib

DEFAULT_API_KEY = "fakewandb" + "0" * 31  # 40 characters, like a real key
DEFAULT_ENTITY = "fake-entity"
MAX_REQUEST_BYTES = 10 * 1024 * 1024
HEADER_LIMIT = 64 * 1024
JOURNAL_MAX = 10000
HISTORY = "wandb-history.jsonl"
EVENTS = "wandb-events.jsonl"
CONSOLE = "output.log"
SUMMARY = "wandb-summary.json"

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    410: "Gone", 411: "Length Required", 413: "Payload Too Large", 422: "Unprocessable Entity",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}

ADJECTIVES = ["brisk", "calm", "dainty", "eager", "fancy", "gentle", "happy", "jolly",
              "kind", "lively", "misty", "noble", "proud", "quiet", "royal", "sunny"]
NOUNS = ["river", "forest", "meadow", "comet", "galaxy", "harbor", "island", "lake",
         "moon", "ocean", "planet", "rain", "sky", "star", "sun", "wave"]

FS_PATH = re.compile(r"^/files/([^/]+)/([^/]+)/([^/]+)/file_stream/?$")
# Signed run-file upload URLs point here: /storage/{entity}/{project}/{run}/{file name}
STORAGE_PATH = re.compile(r"^/storage/([^/]+)/([^/]+)/([^/]+)/(.+)$")
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
UPLOAD_URL_TTL = 3600.0
UPLOAD_HEADERS = ["Content-Type:application/octet-stream", "X-Fake-Wandb-Upload:signed"]
_STR = {str}
GQL_OP = re.compile(r"\b(query|mutation)\s+([A-Za-z_][A-Za-z0-9_]*)")


class HTTPError(Exception):
    def __init__(self, status, message, close=False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), allow_nan=True)


class FileState:
    """One server-side file of a run: its lines, None for a hole.

    With hashed=True (config store_lines="hash", for long benchmarks) only a 64-bit
    hash of each line is kept (an array of int64, 0 for a hole): 8 bytes a line
    instead of the whole string; the counters stay exact (up to hash collisions
    between two lines written at the same offset), the content cannot be read back.
    """

    __slots__ = ("lines", "received", "appended", "duplicates", "conflicts", "hole_fills",
                 "gap_lines", "gaps", "writes", "max_line_chars", "hashed", "hole")

    def __init__(self, hashed=False):
        self.hashed = hashed
        self.hole = 0 if hashed else None
        self.lines = array.array("q") if hashed else []
        self.received = self.appended = self.duplicates = self.conflicts = 0
        self.hole_fills = self.gap_lines = self.gaps = self.writes = self.max_line_chars = 0

    def apply(self, offset, content):
        lines = self.lines
        n = len(lines)
        k = len(content)
        self.writes += 1
        self.received += k
        if k:
            m = max(map(len, content))
            if m > self.max_line_chars:
                self.max_line_chars = m
        if self.hashed:
            content = array.array("q", map(hash, content))
        if offset > n:
            pad = offset - n
            lines.extend(array.array("q", bytes(8 * pad)) if self.hashed else [None] * pad)
            self.gap_lines += pad
            self.gaps += 1
            n = offset
        m = min(offset + k, n) - offset  # lines that replace existing ones
        if m > 0:
            old = lines[offset:offset + m]
            new = content[:m] if m < k else content
            if old == new:
                self.duplicates += m
            else:
                hole = self.hole
                for o, c in zip(old, new):
                    if o == hole:
                        self.hole_fills += 1
                    elif o == c:
                        self.duplicates += 1
                    else:
                        self.conflicts += 1
            lines[offset:offset + m] = new
        else:
            m = 0
        if k > m:
            lines.extend(content[m:] if m else content)
            self.appended += k - m

    def counters(self):
        return {
            "line_count": len(self.lines), "holes": self.lines.count(self.hole),
            "received": self.received, "appended": self.appended,
            "duplicates": self.duplicates, "conflicts": self.conflicts,
            "hole_fills": self.hole_fills, "gap_lines": self.gap_lines, "gaps": self.gaps,
            "writes": self.writes, "max_line_chars": self.max_line_chars,
        }

    def to_json(self):
        d = self.counters()
        del d["line_count"], d["holes"]
        d["lines"] = list(self.lines)
        d["hashed"] = self.hashed
        return d

    @classmethod
    def from_json(cls, d):
        f = cls(bool(d.get("hashed")))
        f.lines = array.array("q", d.get("lines", [])) if f.hashed else list(d.get("lines", []))
        for k in ("received", "appended", "duplicates", "conflicts", "hole_fills",
                  "gap_lines", "gaps", "writes", "max_line_chars"):
            setattr(f, k, int(d.get(k, 0)))
        return f


class RunState:
    def __init__(self, entity, project, name, storage_id, display_name):
        self.entity = entity
        self.project = project
        self.name = name
        self.storage_id = storage_id
        self.display_name = display_name
        self.fields = {}            # merged UpsertBucket variables (non-null)
        self.upserts = 0
        # What each UpsertBucket said of the run's name, tags and notes, in
        # order: tests count how often an update was sent.
        self.upsert_meta = []
        self.created_at = time.time()
        self.files = {}             # file name -> FileState
        self.complete = False
        self.exitcode = None
        self.complete_requests = 0
        self.exitcode_changes = 0
        self.stopped = False
        self.preempting = False
        self.dropped = 0
        self.uploaded = []
        # Run files uploaded by PUT to a signed URL: name -> dict(content, size, md5, ...)
        self.saved_files = {}
        self.file_puts = 0          # PUTs that stored a file
        self.file_replacements = 0  # of them, PUTs of a name already stored
        self.put_statuses = collections.Counter()
        self.create_run_files = 0   # CreateRunFiles calls naming this run
        self.run_upload_urls = 0    # RunUploadUrls calls naming this run
        self.upload_urls_issued = 0
        self.requests = 0           # file_stream requests applied (200)
        self.heartbeats = 0
        self.requests_after_complete = 0
        self.bytes_total = 0
        self.bytes_max = 0
        self.statuses = collections.Counter()   # file_stream responses by status
        self.faults = collections.Counter()     # faults fired on this run's path, by kind
        self.warnings = collections.Counter()   # protocol oddities seen
        self.unknown_keys = set()
        self.last_request_at = None

    def key(self):
        return (self.entity, self.project, self.name)

    def file(self, name, hashed=False):
        f = self.files.get(name)
        if f is None:
            f = self.files[name] = FileState(hashed)
        return f

    def line_count(self, name):
        f = self.files.get(name)
        return len(f.lines) if f else 0

    def summary_raw(self):
        f = self.files.get(SUMMARY)
        if not f:
            return None
        for line in reversed(f.lines):
            if line is not None:
                return line
        return None

    def summary(self):
        raw = self.summary_raw()
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"_fake_wandb_unparsable": raw}

    def config(self):
        raw = self.fields.get("config")
        if raw is None:
            return None
        if isinstance(raw, str):
            try:
                return json.loads(raw)
            except ValueError:
                return {"_fake_wandb_unparsable": raw}
        return raw

    def bucket(self, server, inserted=None):
        summary = self.summary_raw()
        return {
            "id": self.storage_id,
            "name": self.name,
            "displayName": self.display_name,
            "description": self.fields.get("description"),
            "notes": self.fields.get("notes"),
            "group": self.fields.get("groupName"),
            "jobType": self.fields.get("jobType"),
            "host": self.fields.get("host"),
            "tags": self.fields.get("tags") or [],
            "state": "finished" if self.complete else "running",
            "config": _json_string(self.fields.get("config")),
            "sweepName": self.fields.get("sweep"),
            "summaryMetrics": summary if summary is not None else "{}",
            "historyLineCount": self.line_count(HISTORY),
            "eventsLineCount": self.line_count(EVENTS),
            "logLineCount": self.line_count(CONSOLE),
            "project": server.project_obj(self.entity, self.project),
        }

    def brief(self):
        return {
            "entity": self.entity, "project": self.project, "run": self.name,
            "id": self.storage_id, "displayName": self.display_name,
            "history_lines": self.line_count(HISTORY), "events_lines": self.line_count(EVENTS),
            "console_lines": self.line_count(CONSOLE), "complete": self.complete,
            "exitcode": self.exitcode, "requests": self.requests, "stopped": self.stopped,
        }

    def read_back(self, with_lines=True):
        d = self.brief()
        d.update({
            "fields": self.fields, "config": self.config(), "tags": self.fields.get("tags"),
            "notes": self.fields.get("notes"), "upserts": self.upserts,
            "upsert_meta": self.upsert_meta,
            "summary": self.summary(), "summary_raw": self.summary_raw(),
            "complete_requests": self.complete_requests,
            "exitcode_changes": self.exitcode_changes,
            "preempting": self.preempting, "dropped": self.dropped, "uploaded": self.uploaded,
            "heartbeats": self.heartbeats, "requests_after_complete": self.requests_after_complete,
            "bytes_total": self.bytes_total, "bytes_max": self.bytes_max,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "faults": dict(self.faults), "warnings": dict(self.warnings),
            "unknown_keys": sorted(self.unknown_keys),
            "files": {name: f.counters() for name, f in self.files.items()},
            "run_files": {n: _saved_meta(f) for n, f in self.saved_files.items()},
        })
        dup = sum(f.duplicates for f in self.files.values() if f is not self.files.get(SUMMARY))
        con = sum(f.conflicts for f in self.files.values() if f is not self.files.get(SUMMARY))
        d["duplicates"] = dup
        d["conflicts"] = con
        if with_lines:
            def content(name):  # None when only hashes are kept
                f = self.files.get(name)
                if f is None:
                    return []
                return None if f.hashed else list(f.lines)
            d["history"] = content(HISTORY)
            d["events"] = content(EVENTS)
            d["console"] = content(CONSOLE)
            d["other_files"] = {n: content(n) for n in self.files
                                if n not in (HISTORY, EVENTS, CONSOLE, SUMMARY)}
            d["history_analysis"] = analyze_history(d["history"] or [])
        return d

    def to_json(self):
        return {
            "entity": self.entity, "project": self.project, "name": self.name,
            "storage_id": self.storage_id, "display_name": self.display_name,
            "fields": self.fields, "upserts": self.upserts, "created_at": self.created_at,
            "upsert_meta": self.upsert_meta,
            "files": {n: f.to_json() for n, f in self.files.items()},
            "complete": self.complete, "exitcode": self.exitcode,
            "complete_requests": self.complete_requests,
            "exitcode_changes": self.exitcode_changes, "stopped": self.stopped,
            "preempting": self.preempting, "dropped": self.dropped, "uploaded": self.uploaded,
            "requests": self.requests, "heartbeats": self.heartbeats,
            "requests_after_complete": self.requests_after_complete,
            "bytes_total": self.bytes_total, "bytes_max": self.bytes_max,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "faults": dict(self.faults), "warnings": dict(self.warnings),
            "unknown_keys": sorted(self.unknown_keys),
            "saved_files": {n: dict(_saved_meta(f), content_b64=base64.b64encode(
                f["content"]).decode()) for n, f in self.saved_files.items()},
            "file_puts": self.file_puts, "file_replacements": self.file_replacements,
            "put_statuses": dict(self.put_statuses),
            "create_run_files": self.create_run_files, "run_upload_urls": self.run_upload_urls,
            "upload_urls_issued": self.upload_urls_issued,
        }

    def files_read_back(self, with_content=True):
        files = {}
        for n, f in self.saved_files.items():
            d = _saved_meta(f)
            if with_content:
                d["content_b64"] = base64.b64encode(f["content"]).decode()
            files[n] = d
        return {"files": files, "uploaded": self.uploaded,
                "create_run_files": self.create_run_files,
                "run_upload_urls": self.run_upload_urls,
                "upload_urls_issued": self.upload_urls_issued,
                "puts": self.file_puts, "replacements": self.file_replacements,
                "put_statuses": dict(sorted(self.put_statuses.items()))}

    @classmethod
    def from_json(cls, d):
        r = cls(d["entity"], d["project"], d["name"], d["storage_id"], d["display_name"])
        r.fields = d.get("fields", {})
        r.files = {n: FileState.from_json(f) for n, f in d.get("files", {}).items()}
        for k in ("upserts", "upsert_meta", "created_at", "complete", "exitcode",
                  "complete_requests",
                  "exitcode_changes", "stopped", "preempting", "dropped", "uploaded",
                  "requests", "heartbeats", "requests_after_complete", "bytes_total",
                  "bytes_max"):
            if k in d:
                setattr(r, k, d[k])
        r.statuses = collections.Counter({int(k): v for k, v in d.get("statuses", {}).items()})
        for n, f in d.get("saved_files", {}).items():
            f = dict(f)
            f["content"] = base64.b64decode(f.pop("content_b64", ""))
            r.saved_files[n] = f
        for k in ("file_puts", "file_replacements", "create_run_files", "run_upload_urls",
                  "upload_urls_issued"):
            if k in d:
                setattr(r, k, d[k])
        r.put_statuses = collections.Counter(d.get("put_statuses", {}))
        r.faults = collections.Counter(d.get("faults", {}))
        r.warnings = collections.Counter(d.get("warnings", {}))
        r.unknown_keys = set(d.get("unknown_keys", []))
        return r


def _saved_meta(f):
    d = {k: f[k] for k in ("size", "md5", "md5_b64", "sha256", "puts", "content_type", "t")}
    # The SHA-256 of every PUT that stored this name, in order (a replacement
    # by the same bytes is an upload twice; by other bytes, a new version).
    d["put_sha256"] = list(f.get("put_sha256", ()))
    return d


def _storage_error(code, message, details=""):
    """An error body as Google Cloud Storage's XML API writes it."""
    return ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message>"
            "<Details>%s</Details></Error>" % (code, message, details)).encode()


def analyze_history(lines):
    """Checks on the history lines: unparsable lines, repeated or decreasing _step."""
    bad = 0
    steps = collections.Counter()
    decreasing = 0
    last = None
    for line in lines:
        if line is None:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(row, dict):
            bad += 1
            continue
        step = row.get("_step")
        if isinstance(step, int):
            steps[step] += 1
            if last is not None and step < last:
                decreasing += 1
            last = step
    return {
        "unparsable": bad,
        "repeated_steps": sum(c - 1 for c in steps.values() if c > 1),
        "decreasing_steps": decreasing,
    }


def _json_string(v):
    if v is None:
        return "{}"
    if isinstance(v, str):
        return v
    return dumps(v)


class Fault:
    KINDS = ("status", "refuse", "reset", "hang", "trickle", "delay", "expired")

    def __init__(self, fid, spec, max_hold):
        kind = spec.get("kind", "status")
        if kind not in self.KINDS:
            raise HTTPError(400, f"unknown fault kind {kind!r}; kinds: {', '.join(self.KINDS)}")
        self.id = fid
        self.kind = kind
        self.spec = dict(spec)
        self.path_prefix = spec.get("path_prefix", "/")
        self.method = spec.get("method")
        self.operation = spec.get("operation")
        self.status = int(spec.get("status", 503))
        self.retry_after = spec.get("retry_after")
        if self.retry_after is None and kind == "status" and self.status in (429, 503):
            self.retry_after = 1
        self.retry_after_date = bool(spec.get("retry_after_date", False))
        self.headers = dict(spec.get("headers") or {})
        self.body = spec.get("body")
        self.apply = bool(spec.get("apply", False))
        self.when = spec.get("when", "headers")  # reset: "headers" | "body" | "mid_body"
        if self.when not in ("headers", "body", "mid_body"):
            raise HTTPError(400, "when must be 'headers', 'body' or 'mid_body'")
        # reset when="mid_body" (storage PUT): bytes of the body read before the reset
        # (default: half of Content-Length).
        self.partial = spec.get("partial")
        self.hold = min(float(spec.get("hold", max_hold)), max_hold)
        self.byte_delay = float(spec.get("byte_delay", 0.02))
        self.chunk = max(1, int(spec.get("chunk", 1)))
        self.delay = float(spec.get("delay", 1.0))
        self.after = int(spec.get("after", 0))
        self.probability = float(spec.get("probability", 1.0))
        self.rng = random.Random(spec.get("seed", 0))
        duration = spec.get("duration")
        count = spec.get("count")
        if count is None:
            count = -1 if duration is not None else 1
        self.count = int(count)  # -1: unlimited
        self.created = time.monotonic()
        self.until = None if duration is None else self.created + float(duration)
        self.duration = duration
        self.fired = 0
        self.seen = 0
        self.cleared = False
        if kind == "refuse" and duration is None:
            raise HTTPError(400, "a refuse fault needs a duration (seconds): while it lasts "
                                 "the port does not listen, so requests cannot be counted")
        if kind == "reset" and self.when == "headers" and not self.apply and self.operation:
            raise HTTPError(400, "a reset at 'headers' cannot filter on operation "
                                 "(the body is not read); use when='body' or apply=true")

    def pre_body(self):
        return self.kind == "reset" and self.when == "headers" and not self.apply

    def active(self, now):
        if self.cleared:
            return False
        if self.until is not None and now >= self.until:
            return False
        if self.count >= 0 and self.fired >= self.count:
            return False
        return True

    def matches(self, method, path, operation):
        if not path.startswith(self.path_prefix):
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.operation and self.operation != operation:
            return False
        return True

    def try_fire(self):
        """Called on a matching request while active; True when it fires."""
        self.seen += 1
        if self.seen <= self.after:
            return False
        if self.probability < 1.0 and self.rng.random() >= self.probability:
            return False
        self.fired += 1
        return True

    def describe(self, now):
        d = dict(self.spec)
        d.update({"id": self.id, "kind": self.kind, "fired": self.fired, "seen": self.seen,
                  "active": self.active(now)})
        if self.until is not None:
            d["remaining_seconds"] = max(0.0, self.until - now)
        if self.count >= 0:
            d["remaining_count"] = max(0, self.count - self.fired)
        return d


class Conn:
    __slots__ = ("reader", "writer", "idle", "control_only", "task")

    def __init__(self, reader, writer, control_only):
        self.reader = reader
        self.writer = writer
        self.idle = True
        self.control_only = control_only
        self.task = None


class Server:
    def __init__(self, args):
        self.host = "127.0.0.1"
        self.port = args.port
        self.control_port = args.control_port
        self.api_key = args.api_key
        self.state_file = args.state_file
        self.verbose = args.verbose
        self.max_hold = args.max_hold
        self.auth_header = "Basic " + base64.b64encode(
            ("api:" + self.api_key).encode()).decode()
        self.config = {
            "entity": args.entity,
            "max_request_bytes": MAX_REQUEST_BYTES,
            "auto_create_runs": False,
            "journal_bodies": False,
            "journal_max": JOURNAL_MAX,
            "store_lines": "full",
            "file_stream_response": {"exitcode": None, "limits": {}},
            "extra_api_keys": [],
            "max_upload_bytes": MAX_UPLOAD_BYTES,
            "upload_url_ttl": UPLOAD_URL_TTL,
            "upload_headers": list(UPLOAD_HEADERS),
        }
        self.url_secret = os.urandom(16)
        self.main_server = None
        self.ctl_server = None
        self.conns = set()
        self.refusing_until = None
        self.reopen_handle = None
        self.stop_event = None
        self.next_fault_id = 1
        self.reset_state()

    # ---- state -------------------------------------------------------------------------
    def reset_state(self):
        self.runs = {}
        self.by_storage_id = {}
        self.faults = []
        self.expired_faults = []
        self.journal = collections.deque(maxlen=self.config["journal_max"])
        self.seq = 0
        self.stats = {
            "requests": 0, "graphql_requests": 0, "file_stream_requests": 0,
            "control_requests": 0, "other_requests": 0, "auth_failures": 0,
            "bad_requests": 0, "oversize_requests": 0, "max_request_bytes_seen": 0,
            "bytes_total": 0, "gzip_requests": 0, "connections": 0, "control_connections": 0,
            "expect_continue": 0, "storage_requests": 0, "file_puts": 0,
            "file_puts_rejected": 0, "create_run_files": 0, "run_upload_urls": 0,
        }
        self.statuses = collections.Counter()
        self.fault_hits = collections.Counter()
        self.graphql_ops = collections.Counter()
        self.graphql_unsupported = collections.Counter()
        self.auth_keys = collections.Counter()
        self.started = time.monotonic()
        self._fs_ok_body = None

    def get_run(self, entity, project, name):
        return self.runs.get((entity, project, name))

    def project_obj(self, entity, project):
        pid = base64.b64encode(f"Project:v1:{project}:{entity}".encode()).decode()
        eid = base64.b64encode(f"Entity:{entity}".encode()).decode()
        return {"id": pid, "name": project, "entity": {"id": eid, "name": entity}}

    def new_display_name(self, entity, project):
        n = 1 + sum(1 for k in self.runs if k[0] == entity and k[1] == project)
        rng = random.Random(hash((entity, project, n)) & 0xFFFF)
        return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}-{n}"

    def save_state(self, path=None):
        path = path or self.state_file
        if not path:
            raise HTTPError(400, "no state file (start with --state-file or pass {\"path\": ...})")
        data = {"version": 1, "runs": [r.to_json() for r in self.runs.values()]}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
        return path

    def load_state(self, path):
        with open(path) as f:
            data = json.load(f)
        for d in data.get("runs", []):
            r = RunState.from_json(d)
            self.runs[r.key()] = r
            self.by_storage_id[r.storage_id] = r

    # ---- listeners ---------------------------------------------------------------------
    async def start(self):
        self.stop_event = asyncio.Event()
        await self._open_main()
        self.port = self.main_server.sockets[0].getsockname()[1]
        self.ctl_server = await asyncio.start_server(
            lambda r, w: self._on_conn(r, w, True), self.host, self.control_port,
            limit=HEADER_LIMIT, reuse_address=True)
        self.control_port = self.ctl_server.sockets[0].getsockname()[1]

    async def _open_main(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        sock.setblocking(False)
        self.main_server = await asyncio.start_server(
            lambda r, w: self._on_conn(r, w, False), sock=sock, limit=HEADER_LIMIT)

    def _refuse(self, seconds):
        now = time.monotonic()
        until = now + seconds
        if self.refusing_until is None or until > self.refusing_until:
            self.refusing_until = until
        if self.main_server is not None:
            self.main_server.close()
            self.main_server = None
        # Idle keep-alive connections go too, so a client must reconnect (and be refused).
        for c in list(self.conns):
            if not c.control_only and c.idle:
                c.writer.close()
        if self.reopen_handle:
            self.reopen_handle.cancel()
        loop = asyncio.get_running_loop()
        self.reopen_handle = loop.call_later(self.refusing_until - now,
                                             lambda: asyncio.ensure_future(self._reopen()))

    async def _reopen(self):
        if self.reopen_handle:
            self.reopen_handle.cancel()
            self.reopen_handle = None
        self.refusing_until = None
        for attempt in range(100):
            if self.main_server is not None:
                return
            try:
                await self._open_main()
            except OSError as e:  # someone took the port meanwhile: keep trying a while
                if attempt == 99:
                    print(f"fake-wandb: cannot listen again on port {self.port}: {e}",
                          file=sys.stderr, flush=True)
                    raise
                await asyncio.sleep(0.1)

    # ---- connections -------------------------------------------------------------------
    async def _on_conn(self, reader, writer, control_only):
        conn = Conn(reader, writer, control_only)
        conn.task = asyncio.current_task()
        self.conns.add(conn)
        self.stats["control_connections" if control_only else "connections"] += 1
        try:
            while True:
                conn.idle = True
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    await self._send(writer, 431, {"error": "headers too large"}, close=True)
                    break
                conn.idle = False
                try:
                    keep = await self._request(conn, head)
                except HTTPError as e:
                    self.stats["bad_requests"] += 1
                    await self._send(writer, e.status, {"error": e.message}, close=True)
                    break
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, OSError):
            pass  # the client went away (or we are shutting down)
        except Exception as e:  # a bug in the fake: say so loudly, keep serving others
            print(f"fake-wandb: internal error: {e!r}", file=sys.stderr, flush=True)
            import traceback
            traceback.print_exc()
            try:
                await self._send(writer, 500, {"error": f"fake-wandb internal error: {e!r}"},
                                 close=True)
            except Exception:
                pass
        finally:
            self.conns.discard(conn)
            try:
                writer.close()
            except Exception:
                pass

    @staticmethod
    def _parse_head(head):
        try:
            text = head.decode("latin-1")
        except Exception:
            raise HTTPError(400, "bad request head")
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HTTPError(400, f"bad request line {lines[0][:100]!r}")
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise HTTPError(400, f"bad header line {line[:100]!r}")
            name = name.strip().lower()
            value = value.strip()
            if name in headers:
                headers[name] += ", " + value
            else:
                headers[name] = value
        return method.upper(), target, version, headers

    async def _read_body(self, conn, headers, limit):
        """Returns (raw_body, wire_size). Raises HTTPError(413) when over `limit`."""
        reader, writer = conn.reader, conn.writer
        te = headers.get("transfer-encoding", "").lower()
        expect = headers.get("expect", "").lower() == "100-continue"
        if "chunked" in te:
            if expect:
                self.stats["expect_continue"] += 1
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            chunks = []
            total = 0
            while True:
                try:
                    line = await reader.readuntil(b"\r\n")
                except asyncio.LimitOverrunError:
                    raise HTTPError(400, "bad chunk header", close=True)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise HTTPError(400, "bad chunk size", close=True)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                total += size
                if total > limit * 4:
                    raise HTTPError(413, "request body too large", close=True)
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(chunks)
            return body, total
        cl = headers.get("content-length")
        if cl is None:
            return b"", 0
        try:
            n = int(cl)
        except ValueError:
            raise HTTPError(400, "bad content-length", close=True)
        if n < 0:
            raise HTTPError(400, "bad content-length", close=True)
        if n > limit:
            if n > limit * 4 or expect:
                # Do not read it: answer now and close (with Expect the client waits for us).
                raise HTTPError(413, f"request body too large: {n} > {limit} bytes", close=True)
        if expect and n:
            self.stats["expect_continue"] += 1
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(n) if n else b""
        return body, n

    def _decode_body(self, body, headers, limit):
        enc = headers.get("content-encoding", "").lower().strip()
        if not enc or enc == "identity":
            return body
        if enc in ("gzip", "x-gzip", "deflate"):
            self.stats["gzip_requests"] += 1
            wbits = 16 + zlib.MAX_WBITS if enc != "deflate" else zlib.MAX_WBITS
            d = zlib.decompressobj(wbits)
            try:
                out = d.decompress(body, limit * 16 + 1)
            except zlib.error as e:
                raise HTTPError(400, f"bad {enc} body: {e}")
            if len(out) > limit * 16:
                raise HTTPError(413, "decompressed body too large")
            return out
        raise HTTPError(400, f"unsupported content-encoding {enc!r}")

    async def _request(self, conn, head):
        method, target, version, headers = self._parse_head(head)
        writer = conn.writer
        keep = version == "HTTP/1.1"
        c = headers.get("connection", "").lower()
        if "close" in c:
            keep = False
        elif "keep-alive" in c:
            keep = True
        path, _, query = target.partition("?")
        now = time.monotonic()

        if path.startswith("/_control"):
            self.stats["control_requests"] += 1
            body, _ = await self._read_body(conn, headers, 64 * 1024 * 1024)
            body = self._decode_body(body, headers, 64 * 1024 * 1024)
            status, obj = await self._control(method, path, query, body)
            await self._send(writer, status, obj, close=not keep,
                             content_type="application/octet-stream"
                             if isinstance(obj, _Raw) else "application/json")
            if obj is _SHUTDOWN:
                self.stop_event.set()
                return False
            return keep
        if conn.control_only:
            body, _ = await self._read_body(conn, headers, 64 * 1024 * 1024)
            await self._send(writer, 404, {"error": "control port: only /_control/ here"},
                             close=not keep)
            return keep
        if self.refusing_until is not None:
            # A request on a connection opened before the refuse window: drop it.
            conn.writer.transport.abort()
            return False

        self.stats["requests"] += 1
        self.seq += 1
        seq = self.seq
        m = FS_PATH.match(path)
        run_key = None
        if m:
            run_key = tuple(urllib.parse.unquote(x) for x in m.groups())
        sm = STORAGE_PATH.match(path)
        if sm:
            run_key = tuple(urllib.parse.unquote(x) for x in sm.groups()[:3])
        entry = {"seq": seq, "t": time.time(), "method": method, "path": path,
                 "run": "/".join(run_key) if run_key else None,
                 "user_agent": headers.get("user-agent")}
        self.journal.append(entry)

        # Faults that act before the body is read.
        fault = self._match_fault(method, path, None, now, pre_body=True)
        if fault is not None:
            self._count_fault(fault, run_key, entry)
            await self._reset(conn)
            return False
        if sm:
            return await self._storage(conn, method, path, query, headers, entry, run_key,
                                       urllib.parse.unquote(sm.group(4)), keep)

        limit = self.config["max_request_bytes"]
        try:
            raw, wire = await self._read_body(conn, headers, limit)
        except HTTPError as e:
            if e.status != 413:
                raise
            self._oversize(int(headers.get("content-length") or 0), run_key, entry)
            await self._respond(conn, entry, run_key, 413, {"error": e.message}, False)
            return False
        entry["bytes"] = wire
        self.stats["bytes_total"] += wire
        if wire > self.stats["max_request_bytes_seen"]:
            self.stats["max_request_bytes_seen"] = wire
        if wire > limit:
            self._oversize(wire, run_key, entry)
            await self._respond(conn, entry, run_key, 413,
                                {"error": f"request body too large: {wire} > {limit} bytes"},
                                keep)
            return keep
        body = self._decode_body(raw, headers, limit)
        if self.config["journal_bodies"]:
            entry["body"] = body.decode("utf-8", "replace")
        operation = None
        parsed = None
        if path == "/graphql" and method == "POST":
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                operation = graphql_operation(parsed)
            entry["operation"] = operation

        fault = self._match_fault(method, path, operation, now, pre_body=False)
        if fault is not None:
            self._count_fault(fault, run_key, entry)
            if fault.kind == "reset" and not fault.apply:
                await self._reset(conn)
                return False
            if fault.kind == "status" and not fault.apply:
                return await self._fault_status(conn, fault, entry, run_key, keep)
            if fault.kind == "hang" and not fault.apply:
                await self._hang(conn, fault)
                return False
            if fault.kind == "delay":
                await asyncio.sleep(fault.delay)

        # Normal processing.
        if not self._authorized(headers.get("authorization")):
            self.stats["auth_failures"] += 1
            status, obj = 401, {"error": "unauthorized: expected Basic base64('api:' + key)"}
        elif path == "/graphql":
            if method != "POST":
                status, obj = 405, {"error": "POST only"}
            else:
                self.stats["graphql_requests"] += 1
                status, obj = self._graphql(parsed, body)
        elif run_key is not None:
            if method != "POST":
                status, obj = 405, {"error": "POST only"}
            else:
                self.stats["file_stream_requests"] += 1
                status, obj = self._file_stream(run_key, body, wire, entry)
        else:
            self.stats["other_requests"] += 1
            status, obj = 404, {"error": f"fake-wandb: no route for {method} {path}"}

        if fault is not None:
            if fault.kind == "reset":
                await self._reset(conn)
                return False
            if fault.kind == "hang":
                await self._hang(conn, fault)
                return False
            if fault.kind == "status":
                return await self._fault_status(conn, fault, entry, run_key, keep)
            if fault.kind == "trickle":
                data = self._response_bytes(status, obj, not keep)
                await self._trickle(conn, data, fault)
                self._record_status(entry, run_key, status)
                return keep
        await self._respond(conn, entry, run_key, status, obj, keep)
        return keep

    def _authorized(self, value):
        """The --api-key, or one of config `extra_api_keys` (a key rotation);
        counts the requests each key authorised in stats `auth_keys`."""
        key = self.api_key if value == self.auth_header else None
        if key is None and value:
            scheme, _, cred = value.strip().partition(" ")
            try:
                user = base64.b64decode(cred.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                user = ""
            if scheme.lower() == "basic" and user.startswith("api:"):
                key = user[4:]
        if key is None or (key != self.api_key and key not in self.config["extra_api_keys"]):
            return False
        self.auth_keys[key] += 1
        return True

    # ---- faults ------------------------------------------------------------------------
    def _prune_faults(self, now):
        """Move faults whose count or window ran out to the expired list."""
        live = [f for f in self.faults if f.active(now)]
        if len(live) != len(self.faults):
            self.expired_faults.extend(f for f in self.faults if f not in live)
            del self.expired_faults[:-100]
            self.faults = live

    def _match_fault(self, method, path, operation, now, pre_body):
        """The first active fault that matches this request and fires, or None. A
        request consumes at most one fault."""
        if not self.faults:
            return None
        self._prune_faults(now)
        for f in self.faults:
            if f.kind == "refuse" or f.pre_body() != pre_body:
                continue
            if f.matches(method, path, operation) and f.try_fire():
                return f
        return None

    def _count_fault(self, fault, run_key, entry):
        self.fault_hits[fault.kind] += 1
        entry["fault"] = {"id": fault.id, "kind": fault.kind}
        if run_key is not None:
            r = self.runs.get(run_key)
            if r is not None:
                r.faults[fault.kind] += 1

    async def _reset(self, conn):
        sock = conn.writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        conn.writer.transport.abort()

    async def _hang(self, conn, fault):
        """Hold the connection without answering until the client gives up (EOF) or
        the hold time ends; then close without a response."""
        async def drain_until_eof():
            while await conn.reader.read(65536):
                pass
        try:
            await asyncio.wait_for(drain_until_eof(), timeout=fault.hold)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        conn.writer.transport.abort()

    async def _fault_status(self, conn, fault, entry, run_key, keep):
        status = fault.status
        hdrs = dict(fault.headers)
        if fault.retry_after is not None:
            if fault.retry_after_date:
                hdrs["Retry-After"] = email.utils.formatdate(
                    time.time() + float(fault.retry_after), usegmt=True)
            else:
                ra = fault.retry_after
                hdrs["Retry-After"] = str(int(ra)) if float(ra) == int(float(ra)) else str(ra)
        body = fault.body if fault.body is not None else {
            "error": f"fake-wandb injected fault {fault.id}: status {status}"}
        await self._respond(conn, entry, run_key, status, body, keep, hdrs)
        return keep

    async def _trickle(self, conn, data, fault):
        w = conn.writer
        for i in range(0, len(data), fault.chunk):
            w.write(data[i:i + fault.chunk])
            await w.drain()
            if i + fault.chunk < len(data):
                await asyncio.sleep(fault.byte_delay)

    # ---- responses ---------------------------------------------------------------------
    def _response_bytes(self, status, obj, close, headers=None,
                        content_type="application/json"):
        if isinstance(obj, (bytes, bytearray)):
            body = bytes(obj)
        elif isinstance(obj, str):
            body = obj.encode()
        else:
            body = dumps(obj).encode()
        reason = REASONS.get(status, "Status")
        h = [f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
             f"Content-Length: {len(body)}\r\n"]
        if close:
            h.append("Connection: close\r\n")
        if headers:
            for k, v in headers.items():
                h.append(f"{k}: {v}\r\n")
        h.append("\r\n")
        return "".join(h).encode("latin-1") + body

    async def _send(self, writer, status, obj, close=False, headers=None,
                    content_type="application/json"):
        writer.write(self._response_bytes(status, obj, close, headers, content_type))
        await writer.drain()

    def _record_status(self, entry, run_key, status):
        self.statuses[status] += 1
        entry["status"] = status
        if run_key is not None:
            r = self.runs.get(run_key)
            if r is not None:
                r.statuses[status] += 1

    async def _respond(self, conn, entry, run_key, status, obj, keep, headers=None,
                       content_type="application/json"):
        self._record_status(entry, run_key, status)
        if self.verbose:
            print(f"fake-wandb: {entry['method']} {entry['path']} -> {status}",
                  file=sys.stderr, flush=True)
        await self._send(conn.writer, status, obj, close=not keep, headers=headers,
                         content_type=content_type)

    def _oversize(self, size, run_key, entry):
        self.stats["oversize_requests"] += 1
        if size > self.stats["max_request_bytes_seen"]:
            self.stats["max_request_bytes_seen"] = size
        entry["bytes"] = size
        if run_key is not None:
            r = self.runs.get(run_key)
            if r is not None:
                r.bytes_max = max(r.bytes_max, size)

    # ---- W&B API -----------------------------------------------------------------------
    def _graphql(self, parsed, body):
        if parsed is None:
            return 400, {"errors": [{"message": "fake-wandb: body is not JSON"}]}
        if isinstance(parsed, list):
            out = [self._graphql_one(p)[1] for p in parsed]
            return 200, out
        return self._graphql_one(parsed)

    def _graphql_one(self, req):
        if not isinstance(req, dict) or not isinstance(req.get("query"), str):
            return 400, {"errors": [{"message": "fake-wandb: expected {query, variables}"}]}
        op = graphql_operation(req)
        variables = req.get("variables") or {}
        if not isinstance(variables, dict):
            return 400, {"errors": [{"message": "fake-wandb: variables must be an object"}]}
        self.graphql_ops[op or "?"] += 1
        if op == "UpsertBucket":
            return self._upsert_bucket(variables)
        if op == "Viewer":
            e = self.config["entity"]
            return 200, {"data": {"viewer": {
                "id": base64.b64encode(f"User:{e}".encode()).decode(),
                "entity": e, "username": e, "email": f"{e}@example.invalid",
                "flags": "{}", "admin": False,
                "teams": {"edges": [{"node": {"name": e}}]}}}}
        if op == "RunResumeStatus":
            return self._resume_status(variables)
        if op == "CreateRunFiles":
            return self._create_run_files(variables)
        if op == "RunUploadUrls":
            return self._run_upload_urls(variables)
        self.graphql_unsupported[op or "?"] += 1
        msg = (f"fake-wandb: unsupported GraphQL operation {op!r} (supported: UpsertBucket, "
               f"Viewer, RunResumeStatus, CreateRunFiles, RunUploadUrls)")
        print(msg, file=sys.stderr, flush=True)
        return 400, {"errors": [{"message": msg}], "data": None}

    def _upsert_bucket(self, v):
        entity = v.get("entity") or self.config["entity"]
        project = v.get("project") or "uncategorized"
        name = v.get("name")
        run = None
        if v.get("id"):
            run = self.by_storage_id.get(v["id"])
            if run is None and not name:
                return 200, {"errors": [{"message": f"run with id {v['id']!r} not found"}],
                             "data": {"upsertBucket": None}}
        if run is None:
            if not name:
                name = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                               for _ in range(8))
            if any(ch in name for ch in "/\\#?%:"):
                return 400, {"errors": [{"message": f"invalid run name {name!r}"}]}
            run = self.runs.get((entity, project, name))
        inserted = run is None
        if inserted:
            sid = base64.b64encode(f"Run:v1:{name}:{project}:{entity}".encode()).decode()
            run = RunState(entity, project, name, sid,
                           v.get("displayName") or self.new_display_name(entity, project))
            self.runs[run.key()] = run
            self.by_storage_id[sid] = run
        run.upserts += 1
        run.upsert_meta.append({k: v.get(k) for k in ("displayName", "tags", "notes")})
        for k, val in v.items():
            if k in ("entity", "project", "name", "id") or val is None:
                continue
            run.fields[k] = val
        if v.get("displayName"):
            run.display_name = v["displayName"]
        b = run.bucket(self)
        return 200, {"data": {"upsertBucket": {"bucket": b, "inserted": inserted}}}

    def _resume_status(self, v):
        entity = v.get("entity") or self.config["entity"]
        project = v.get("project") or "uncategorized"
        run = self.runs.get((entity, project, v.get("name")))
        model = self.project_obj(entity, project)
        if run is None:
            model["bucket"] = None
        else:
            b = run.bucket(self)
            hist = run.files.get(HISTORY)
            tail = [x for x in (hist.lines[-10:] if hist else []) if x is not None]
            b["historyTail"] = dumps(tail)
            ev = run.files.get(EVENTS)
            b["eventsTail"] = dumps([x for x in (ev.lines[-10:] if ev else []) if x is not None])
            b["wandbConfig"] = dumps({})
            model["bucket"] = b
        return 200, {"data": {"model": model}}

    # ---- run files: signed upload URLs and the storage PUT -------------------------------
    def _sign(self, run_key, name, expires):
        msg = "\n".join(list(run_key) + [name, expires]).encode()
        return hmac.new(self.url_secret, msg, hashlib.sha256).hexdigest()

    def _upload_url(self, run, name):
        expires = "%.3f" % (time.time() + float(self.config["upload_url_ttl"]))
        path = "/".join(urllib.parse.quote(x, safe="") for x in run.key())
        qs = urllib.parse.urlencode({"expires": expires,
                                     "token": self._sign(run.key(), name, expires)})
        run.upload_urls_issued += 1
        return (f"http://{self.host}:{self.port}/storage/{path}/"
                f"{urllib.parse.quote(name, safe='/')}?{qs}")

    def _files_run(self, v, project_key, run_key):
        entity = v.get("entity") or self.config["entity"]
        project = v.get(project_key) or "uncategorized"
        name = v.get(run_key)
        files = v.get("files")
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            return None, (400, {"errors": [{"message": "files must be a list of non-empty "
                                                       "strings"}], "data": None})
        run = self.runs.get((entity, project, name))
        if run is None:
            return None, (200, {"errors": [{"message": f"run {entity}/{project}/{name} not found",
                                            "path": ["createRunFiles"]}], "data": None})
        return run, None

    def _create_run_files(self, v):
        """mutation CreateRunFiles($entity, $project, $run, $files: [String!]!)."""
        self.stats["create_run_files"] += 1
        run, err = self._files_run(v, "project", "run")
        if err:
            if err[1].get("errors") and err[0] == 200:
                err[1]["data"] = {"createRunFiles": None}
            return err
        run.create_run_files += 1
        return 200, {"data": {"createRunFiles": {
            "runID": run.storage_id,
            "uploadHeaders": list(self.config["upload_headers"]),
            "files": [{"name": f, "uploadUrl": self._upload_url(run, f)} for f in v["files"]],
        }}}

    def _run_upload_urls(self, v):
        """query RunUploadUrls($name: project, $run, $entity, $files): the older query."""
        self.stats["run_upload_urls"] += 1
        run, err = self._files_run(v, "name", "run")
        if err:
            if err[0] == 200:  # as RunResumeStatus: the project, its bucket null
                model = self.project_obj(v.get("entity") or self.config["entity"],
                                         v.get("name") or "uncategorized")
                model["bucket"] = None
                return 200, {"data": {"model": model}}
            return err
        run.run_upload_urls += 1
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return 200, {"data": {"model": {"bucket": {
            "id": run.storage_id,
            "files": {"uploadHeaders": list(self.config["upload_headers"]),
                      "edges": [{"node": {"name": f, "url": self._upload_url(run, f),
                                          "updatedAt": now}} for f in v["files"]]}}}}}

    async def _storage(self, conn, method, path, query, headers, entry, run_key, name, keep):
        """PUT {signed uploadUrl}: what cloud storage (GCS/S3) does with a signed URL."""
        self.stats["storage_requests"] += 1
        reader = conn.reader
        run = self.runs.get(run_key)

        async def fail(status, code, message, details="", close=False):
            self.stats["file_puts_rejected"] += 1
            if run is not None:
                run.put_statuses[str(status)] += 1
            entry["error"] = code
            await self._respond(conn, entry, run_key, status,
                                _storage_error(code, message, details), keep and not close,
                                content_type="application/xml; charset=UTF-8")
            return keep and not close

        fault = self._match_fault(method, path, None, time.monotonic(), pre_body=False)
        if fault is not None:
            self._count_fault(fault, run_key, entry)
            if run is not None:
                run.put_statuses["fault_" + fault.kind] += 1
        cl = headers.get("content-length")
        if method != "PUT":
            return await fail(405, "MethodNotAllowed", f"{method} on an upload URL: PUT only",
                              close=True)
        if cl is None:
            return await fail(411, "MissingContentLength",
                              "You must provide the Content-Length HTTP header.", close=True)
        try:
            n = int(cl)
            if n < 0:
                raise ValueError
        except ValueError:
            return await fail(400, "InvalidArgument", f"bad Content-Length {cl!r}", close=True)
        limit = int(self.config["max_upload_bytes"])
        if n > limit:
            return await fail(413, "EntityTooLarge",
                              f"Content-Length {n} > max_upload_bytes {limit}", close=True)
        if fault is not None and fault.kind == "reset" and fault.when == "mid_body":
            part = n // 2 if fault.partial is None else min(int(fault.partial), n)
            if headers.get("expect", "").lower() == "100-continue":
                conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if part:
                await reader.readexactly(part)
            await self._reset(conn)
            return False
        if headers.get("expect", "").lower() == "100-continue" and n:
            self.stats["expect_continue"] += 1
            conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks, got = [], 0
        while got < n:
            c = await reader.read(min(1 << 20, n - got))
            if not c:
                break
            chunks.append(c)
            got += len(c)
        entry["bytes"] = got
        self.stats["bytes_total"] += got
        if got < n:
            return await fail(400, "IncompleteBody",
                              f"Content-Length {n} but the body ended after {got} bytes",
                              close=True)
        body = b"".join(chunks)
        if fault is not None and not (fault.apply and fault.kind in ("reset", "hang", "status")):
            if fault.kind == "reset":
                await self._reset(conn)
                return False
            if fault.kind == "hang":
                await self._hang(conn, fault)
                return False
            if fault.kind == "status":
                if run is not None:
                    run.put_statuses[str(fault.status)] += 1
                return await self._fault_status(conn, fault, entry, run_key, keep)
            if fault.kind == "expired":
                return await fail(403, "ExpiredToken", "Invalid argument.",
                                  "The provided token has expired (fake-wandb injected fault).")
            if fault.kind == "delay":
                await asyncio.sleep(fault.delay)
        q = urllib.parse.parse_qs(query)
        expires = q.get("expires", [""])[0]
        token = q.get("token", [""])[0]
        if not token or not hmac.compare_digest(token, self._sign(run_key, name, expires)):
            return await fail(403, "SignatureDoesNotMatch",
                              "The request signature we calculated does not match the "
                              "signature you provided.")
        try:
            exp = float(expires)
        except ValueError:
            exp = 0.0
        if time.time() > exp:
            return await fail(403, "ExpiredToken", "Invalid argument.",
                              f"The provided token has expired. Request signature expired at: "
                              f"{expires}")
        for h in self.config["upload_headers"]:
            k, _, want = h.partition(":")
            have = headers.get(k.strip().lower())
            if have is None:
                return await fail(400, "MissingHeader",
                                  f"upload header {k.strip()} is missing (issued in "
                                  f"uploadHeaders: {h})")
            if have != want.strip():
                return await fail(400, "InvalidHeader",
                                  f"upload header {k.strip()} is {have!r}, issued "
                                  f"{want.strip()!r}")
        if run is None:
            return await fail(404, "NoSuchKey", f"run {'/'.join(run_key)} not found")
        md5 = hashlib.md5(body)
        old = run.saved_files.get(name)
        if old is not None:
            run.file_replacements += 1
        run.saved_files[name] = {
            "content": body, "size": n, "md5": md5.hexdigest(),
            "md5_b64": base64.b64encode(md5.digest()).decode(),
            "sha256": hashlib.sha256(body).hexdigest(),
            "puts": (old["puts"] if old else 0) + 1,
            "put_sha256": (list(old.get("put_sha256", ())) if old else [])
            + [hashlib.sha256(body).hexdigest()],
            "content_type": headers.get("content-type"), "t": time.time()}
        run.file_puts += 1
        run.put_statuses["200"] += 1
        self.stats["file_puts"] += 1
        if fault is not None and fault.apply:  # stored, then the answer is lost or wrong
            if fault.kind == "reset":
                await self._reset(conn)
                return False
            if fault.kind == "hang":
                await self._hang(conn, fault)
                return False
            if fault.kind == "status":
                return await self._fault_status(conn, fault, entry, run_key, keep)
        if fault is not None and fault.kind == "trickle":
            data = self._response_bytes(200, b"", not keep, {"ETag": f'"{md5.hexdigest()}"'})
            await self._trickle(conn, data, fault)
            self._record_status(entry, run_key, 200)
            return keep
        await self._respond(conn, entry, run_key, 200, b"", keep,
                            {"ETag": f'"{md5.hexdigest()}"'}, content_type="text/plain")
        return keep

    def _file_stream(self, run_key, body, wire, entry):
        run = self.runs.get(run_key)
        if run is None:
            if not self.config["auto_create_runs"]:
                return 404, {"error": f"run {'/'.join(run_key)} not found (UpsertBucket first)"}
            e, p, n = run_key
            sid = base64.b64encode(f"Run:v1:{n}:{p}:{e}".encode()).decode()
            run = RunState(e, p, n, sid, self.new_display_name(e, p))
            self.runs[run_key] = run
            self.by_storage_id[sid] = run
        try:
            req = json.loads(body) if body else {}
        except ValueError as ex:
            return 400, {"error": f"body is not JSON: {ex}"}
        if not isinstance(req, dict):
            return 400, {"error": "body must be a JSON object"}
        files = req.get("files")
        if files is None:
            files = {}
        if not isinstance(files, dict):
            return 400, {"error": "files must be an object"}
        # Validate everything before applying anything: a request applies whole or not at all.
        for fname, fd in files.items():
            if not isinstance(fd, dict):
                return 400, {"error": f"files[{fname!r}] must be an object"}
            off = fd.get("offset")
            content = fd.get("content")
            if type(off) is not int or off < 0:
                return 400, {"error": f"files[{fname!r}].offset must be an integer >= 0"}
            if not isinstance(content, list) or (content and set(map(type, content)) != _STR):
                return 400, {"error": f"files[{fname!r}].content must be a list of strings"}
        complete = req.get("complete")
        exitcode = req.get("exitcode")
        if complete is not None and not isinstance(complete, bool):
            return 400, {"error": "complete must be a boolean"}
        if exitcode is not None and type(exitcode) is not int:
            return 400, {"error": "exitcode must be an integer"}
        for k in req:
            if k not in ("files", "complete", "exitcode", "preempting", "dropped", "uploaded",
                         "failed"):
                run.unknown_keys.add(k)

        run.requests += 1
        run.bytes_total += wire
        if wire > run.bytes_max:
            run.bytes_max = wire
        run.last_request_at = time.time()
        if run.complete:
            run.requests_after_complete += 1
        lines = 0
        summ = []
        hashed = self.config["store_lines"] == "hash"
        for fname, fd in files.items():
            content = fd["content"]
            run.file(fname, hashed and fname != SUMMARY).apply(fd["offset"], content)
            lines += len(content)
            summ.append([fname, fd["offset"], len(content)])
            if fname == SUMMARY and fd["offset"] != 0:
                run.warnings["summary_offset_not_0"] += 1
        entry["files"] = summ
        if lines == 0 and not complete:
            run.heartbeats += 1
            entry["heartbeat"] = True
        if complete:
            if exitcode is None:
                run.warnings["complete_without_exitcode"] += 1
            if run.complete and exitcode != run.exitcode:
                run.exitcode_changes += 1
            run.complete = True
            run.exitcode = exitcode
            run.complete_requests += 1
            entry["complete"] = True
            entry["exitcode"] = exitcode
        elif exitcode is not None:
            run.warnings["exitcode_without_complete"] += 1
        if req.get("preempting"):
            run.preempting = True
        d = req.get("dropped")
        if type(d) is int:
            run.dropped += d
        up = req.get("uploaded")
        if isinstance(up, list):
            run.uploaded.extend(x for x in up if isinstance(x, str))
        if run.stopped:
            resp = dict(self.config["file_stream_response"])
            resp["stopped"] = True
            return 200, resp
        if self._fs_ok_body is None:
            self._fs_ok_body = dumps(self.config["file_stream_response"]).encode()
        return 200, self._fs_ok_body

    # ---- control API -------------------------------------------------------------------
    async def _control(self, method, path, query, body):
        try:
            args = json.loads(body) if body.strip() else {}
        except ValueError:
            return 400, {"error": "control body must be JSON"}
        q = urllib.parse.parse_qs(query)
        parts = [urllib.parse.unquote(p) for p in path.split("/")[2:] if p != ""]
        now = time.monotonic()
        try:
            if parts == ["health"] and method == "GET":
                return 200, {"ok": True, "port": self.port, "control_port": self.control_port,
                             "refusing": self.refusing_until is not None,
                             "uptime": now - self.started}
            if parts == ["faults"]:
                if method == "GET":
                    self._prune_faults(now)
                    return 200, {"faults": [f.describe(now) for f in self.faults],
                                 "expired": [f.describe(now) for f in self.expired_faults]}
                if method == "POST":
                    specs = args if isinstance(args, list) else [args]
                    added = []
                    for spec in specs:
                        if not isinstance(spec, dict):
                            raise HTTPError(400, "a fault is a JSON object")
                        f = Fault(self.next_fault_id, spec, self.max_hold)
                        self.next_fault_id += 1
                        if f.kind == "refuse":
                            f.fired = 1
                            self.fault_hits["refuse"] += 1
                            self._refuse(float(f.duration))
                        self.faults.append(f)
                        added.append(f.describe(now))
                    return 200, {"added": added, "ids": [a["id"] for a in added]}
                if method == "DELETE":
                    return 200, await self._clear_faults(None)
            if len(parts) == 2 and parts[0] == "faults" and method == "DELETE":
                return 200, await self._clear_faults(int(parts[1]))
            if parts == ["runs"] and method == "GET":
                return 200, {"runs": [r.brief() for r in self.runs.values()]}
            if len(parts) >= 4 and parts[0] == "runs":
                run = self.runs.get(tuple(parts[1:4]))
                if run is None:
                    return 404, {"error": f"no run {'/'.join(parts[1:4])}"}
                if len(parts) == 4 and method == "GET":
                    with_lines = q.get("lines", ["1"])[0] not in ("0", "false", "no")
                    return 200, run.read_back(with_lines)
                if len(parts) == 5 and parts[4] == "files" and method == "GET":
                    with_content = q.get("content", ["1"])[0] not in ("0", "false", "no")
                    return 200, run.files_read_back(with_content)
                if len(parts) == 6 and parts[4:] == ["files", "raw"] and method == "GET":
                    f = run.saved_files.get(q.get("name", [""])[0])
                    if f is None:
                        return 404, {"error": f"no run file {q.get('name', [''])[0]!r}"}
                    return 200, _Raw(f["content"])
                if len(parts) == 5 and parts[4] == "stop" and method == "POST":
                    run.stopped = bool(args.get("stopped", True)) if isinstance(args, dict) \
                        else True
                    return 200, {"stopped": run.stopped}
            if parts == ["requests"] and method == "GET":
                items = list(self.journal)
                if "run" in q:
                    items = [e for e in items if e.get("run") == q["run"][0]]
                if "path_prefix" in q:
                    items = [e for e in items if e["path"].startswith(q["path_prefix"][0])]
                if "limit" in q:
                    items = items[-int(q["limit"][0]):]
                return 200, {"requests": items, "total": self.seq}
            if parts == ["stats"] and method == "GET":
                return 200, self.stats_obj(now)
            if parts == ["config"]:
                if method == "POST":
                    if not isinstance(args, dict):
                        raise HTTPError(400, "config is a JSON object")
                    for k, val in args.items():
                        if k not in self.config:
                            raise HTTPError(400, f"unknown config key {k!r}; keys: "
                                                 f"{', '.join(sorted(self.config))}")
                        self.config[k] = val
                    self._fs_ok_body = None
                    if "journal_max" in args:
                        self.journal = collections.deque(self.journal,
                                                         maxlen=int(args["journal_max"]))
                    return 200, self.config
                if method == "GET":
                    return 200, self.config
            if parts == ["reset"] and method == "POST":
                await self._clear_faults(None)
                self.reset_state()
                return 200, {"reset": True}
            if parts == ["save"] and method == "POST":
                p = self.save_state(args.get("path") if isinstance(args, dict) else None)
                return 200, {"saved": p, "runs": len(self.runs)}
            if parts == ["shutdown"] and method == "POST":
                return 200, _SHUTDOWN
        except HTTPError as e:
            return e.status, {"error": e.message}
        except (ValueError, TypeError, KeyError) as e:
            return 400, {"error": f"bad control request: {e!r}"}
        return 404, {"error": f"no control route {method} {path}"}

    async def _clear_faults(self, fid):
        cleared = 0
        for f in self.faults:
            if fid is None or f.id == fid:
                f.cleared = True
                cleared += 1
        self.faults = [f for f in self.faults if not f.cleared]
        if self.refusing_until is not None and not any(f.kind == "refuse" for f in self.faults):
            await self._reopen()
        return {"cleared": cleared}

    def stats_obj(self, now):
        d = dict(self.stats)
        d.update({
            "uptime": now - self.started,
            "runs": len(self.runs),
            "open_connections": sum(1 for c in self.conns if not c.control_only),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "faults_fired": dict(self.fault_hits),
            "graphql_operations": dict(self.graphql_ops),
            "graphql_unsupported": dict(self.graphql_unsupported),
            "auth_keys": dict(self.auth_keys),
            "refusing": self.refusing_until is not None,
        })
        return d

    async def shutdown(self):
        if self.reopen_handle:
            self.reopen_handle.cancel()
        for s in (self.main_server, self.ctl_server):
            if s is not None:
                s.close()
        for c in list(self.conns):
            if c.task is not None and c.task is not asyncio.current_task():
                c.task.cancel()
        if self.state_file:
            try:
                self.save_state()
            except OSError as e:
                print(f"fake-wandb: could not save state: {e}", file=sys.stderr, flush=True)


class _Raw(bytes):
    """A control answer sent as raw bytes (a run file's content)."""


class _Shutdown(dict):
    pass


_SHUTDOWN = _Shutdown(shutdown=True)


def graphql_operation(req):
    op = req.get("operationName")
    if isinstance(op, str) and op:
        return op
    q = req.get("query")
    if not isinstance(q, str):
        return None
    m = GQL_OP.search(q)
    if m:
        return m.group(2)
    if "upsertBucket" in q:
        return "UpsertBucket"
    if "viewer" in q:
        return "Viewer"
    return None


async def amain(args):
    srv = Server(args)
    if args.state_file and os.path.exists(args.state_file):
        srv.load_state(args.state_file)
    await srv.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, srv.stop_event.set)
    print(json.dumps({"port": srv.port, "control_port": srv.control_port,
                      "api_key": srv.api_key, "entity": srv.config["entity"],
                      "pid": os.getpid()}), flush=True)
    await srv.stop_event.wait()
    await asyncio.sleep(0.05)  # let the shutdown answer go out
    await srv.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="W&B API port (0: pick one)")
    ap.add_argument("--control-port", type=int, default=0,
                    help="control-only port, never faulted (0: pick one)")
    ap.add_argument("--api-key", default=os.environ.get("FAKE_WANDB_API_KEY", DEFAULT_API_KEY))
    ap.add_argument("--entity", default=DEFAULT_ENTITY, help="the viewer's default entity")
    ap.add_argument("--state-file", help="load state from it at start if it exists; "
                                         "save to it at shutdown and on /_control/save")
    ap.add_argument("--max-hold", type=float, default=120.0,
                    help="longest a 'hang' fault holds a connection (seconds)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log each request on stderr")
    args = ap.parse_args(argv)
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
