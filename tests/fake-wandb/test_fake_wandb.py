"""Tests of the fake W&B backend itself: protocol semantics, auth, every fault kind
seen from a real HTTP client, control API read-back."""
import base64
import email.utils
import gzip
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import ENTITY, PROJECT, Api
from fakewandb_client import FakeWandb

H = "wandb-history.jsonl"


def rows(a, b):
    return [json.dumps({"loss": i / 10, "_step": i}) for i in range(a, b)]


def expect_connection_error(fn):
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected,
                        http.client.BadStatusLine, OSError)) as ei:
        fn()
    return ei.value


# ---- offsets ---------------------------------------------------------------------------

def test_offsets_append_replace_overlap(fw, api):
    api.upsert("r1")
    assert api.history("r1", 0, rows(0, 3))[0] == 200
    assert api.history("r1", 3, rows(3, 5))[0] == 200
    # Overlap: lines 3..4 re-sent identical, 5..6 new.
    assert api.history("r1", 3, rows(3, 7))[0] == 200
    # Replace line 1 with different content: a conflict, the new content wins.
    changed = json.dumps({"loss": 99, "_step": 1})
    assert api.history("r1", 1, [changed])[0] == 200
    r = fw.run(ENTITY, PROJECT, "r1")
    expected = rows(0, 7)
    expected[1] = changed
    assert r["history"] == expected
    f = r["files"][H]
    assert f == {**f, "line_count": 7, "appended": 7, "duplicates": 2, "conflicts": 1,
                 "received": 10, "holes": 0, "gaps": 0, "writes": 4}
    assert r["duplicates"] == 2 and r["conflicts"] == 1
    assert r["history_analysis"] == {"unparsable": 0, "repeated_steps": 0,
                                     "decreasing_steps": 0}


def test_idempotent_resend_counts_duplicates_not_lines(fw, api):
    api.upsert("r1")
    for _ in range(3):
        assert api.history("r1", 0, rows(0, 4))[0] == 200
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == rows(0, 4)
    assert r["files"][H]["appended"] == 4
    assert r["files"][H]["duplicates"] == 8
    assert r["files"][H]["conflicts"] == 0
    assert r["requests"] == 3


def test_gap_is_padded_with_holes_then_filled(fw, api):
    api.upsert("r1")
    assert api.history("r1", 3, rows(3, 5))[0] == 200
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == [None, None, None] + rows(3, 5)
    assert r["files"][H]["holes"] == 3 and r["files"][H]["gap_lines"] == 3
    assert r["files"][H]["gaps"] == 1
    # Filling the gap: hole_fills, not duplicates or conflicts.
    assert api.history("r1", 0, rows(0, 4))[0] == 200
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == rows(0, 5)
    f = r["files"][H]
    assert (f["holes"], f["hole_fills"], f["duplicates"], f["conflicts"]) == (0, 3, 1, 0)
    assert f["received"] == f["appended"] + f["duplicates"] + f["conflicts"] + f["hole_fills"]


def test_summary_whole_events_console_complete_exitcode_heartbeat(fw, api):
    api.upsert("r1")
    body = {"files": {
        H: {"offset": 0, "content": rows(0, 2)},
        "wandb-summary.json": {"offset": 0, "content": [json.dumps({"loss": 0.1, "_step": 1})]},
        "wandb-events.jsonl": {"offset": 0, "content": ['{"_wandb":true,"system.cpu":12.5}']},
        "output.log": {"offset": 0, "content": ["2024-01-01T00:00:00.000000 epoch 1",
                                                "ERROR 2024-01-01T00:00:01.000000 boom"]}}}
    st, _, resp = api.fs("r1", body)
    assert st == 200 and resp == {"exitcode": None, "limits": {}}
    assert api.fs("r1", {})[0] == 200  # heartbeat
    body2 = {"files": {"wandb-summary.json": {"offset": 0, "content": ['{"loss":0.05}']},
                       "output.log": {"offset": 1, "content": ["ERROR 2024 replaced"]}},
             "complete": True, "exitcode": 3}
    assert api.fs("r1", body2)[0] == 200
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["summary"] == {"loss": 0.05}
    assert r["files"]["wandb-summary.json"]["line_count"] == 1
    assert r["events"] == ['{"_wandb":true,"system.cpu":12.5}']
    assert r["console"] == ["2024-01-01T00:00:00.000000 epoch 1", "ERROR 2024 replaced"]
    assert r["files"]["output.log"]["conflicts"] == 1
    assert r["complete"] is True and r["exitcode"] == 3
    assert r["heartbeats"] == 1 and r["requests"] == 3
    assert r["warnings"] == {}
    # A request after completion is counted (a client bug, or a resume).
    assert api.fs("r1", {})[0] == 200
    assert fw.run(ENTITY, PROJECT, "r1", lines=False)["requests_after_complete"] == 1


def test_protocol_oddities_are_counted(fw, api):
    api.upsert("r1")
    assert api.fs("r1", {"exitcode": 0})[0] == 200
    assert api.fs("r1", {"complete": True})[0] == 200
    assert api.fs("r1", {"files": {"wandb-summary.json": {"offset": 2, "content": ["{}"]}},
                         "surprise": 1})[0] == 200
    r = fw.run(ENTITY, PROJECT, "r1", lines=False)
    assert r["warnings"] == {"exitcode_without_complete": 1, "complete_without_exitcode": 1,
                             "summary_offset_not_0": 1}
    assert r["unknown_keys"] == ["surprise"]


def test_bad_requests_rejected_whole(fw, api):
    api.upsert("r1")
    bad = [
        {"files": {H: {"offset": -1, "content": ["{}"]}}},
        {"files": {H: {"offset": 0, "content": ["{}", 5]}}},
        {"files": {H: {"offset": "0", "content": ["{}"]}}},
        {"files": {H: {"offset": 0, "content": ["{}"]}, "x": {"offset": 0, "content": "no"}}},
        {"files": [1]},
        {"complete": "yes"},
    ]
    for b in bad:
        st, _, obj = api.fs("r1", b)
        assert st == 400, (b, obj)
    st, _, _ = api.fs("r1", b"{not json", raw=True)
    assert st == 400
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == [] and r["requests"] == 0


def test_file_stream_unknown_run_is_404_unless_auto_create(fw, api):
    st, _, obj = api.history("nosuch", 0, rows(0, 1))
    assert st == 404 and "UpsertBucket" in obj["error"]
    fw.configure(auto_create_runs=True)
    try:
        assert api.history("nosuch", 0, rows(0, 1))[0] == 200
        assert fw.run(ENTITY, PROJECT, "nosuch")["history"] == rows(0, 1)
    finally:
        fw.configure(auto_create_runs=False)


def test_stopped_run_answers_stopped(fw, api):
    api.upsert("r1")
    fw.stop_run(ENTITY, PROJECT, "r1")
    st, _, obj = api.fs("r1", {})
    assert st == 200 and obj["stopped"] is True


# ---- GraphQL ---------------------------------------------------------------------------

def test_upsert_bucket_create_update_and_resume_counts(fw, api):
    cfg = {"lr": {"value": 0.01}, "_wandb": {"value": {"t": {"1": [1]}}}}
    b = api.upsert("r1", displayName="my run", notes="n", tags=["a", "b"],
                   config=json.dumps(cfg), groupName="g", jobType="train", host="h")
    assert b["inserted"] is True
    bucket = b["bucket"]
    assert bucket["name"] == "r1" and bucket["displayName"] == "my run"
    assert bucket["project"]["name"] == PROJECT
    assert bucket["project"]["entity"]["name"] == ENTITY
    assert bucket["historyLineCount"] == 0 and bucket["id"]
    api.history("r1", 0, rows(0, 5))
    b2 = api.upsert("r1", notes="n2")
    assert b2["inserted"] is False
    assert b2["bucket"]["historyLineCount"] == 5
    assert b2["bucket"]["id"] == bucket["id"]
    # Update by storage id alone.
    st, _, obj = api.graphql("mutation UpsertBucket($id: String, $tags: [String!]) "
                             "{ upsertBucket(input: {id: $id, tags: $tags}) { bucket { name } } }",
                             {"id": bucket["id"], "tags": ["c"]})
    assert st == 200 and obj["data"]["upsertBucket"]["bucket"]["name"] == "r1"
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["config"] == cfg
    assert r["notes"] == "n2" and r["tags"] == ["c"] and r["displayName"] == "my run"
    assert r["fields"]["groupName"] == "g" and r["fields"]["jobType"] == "train"
    assert r["upserts"] == 3


def test_upsert_defaults_entity_project_display_name(fw, api):
    st, _, obj = api.graphql("mutation UpsertBucket($name: String) "
                             "{ upsertBucket(input: {name: $name}) { bucket { id } } }",
                             {"name": "r9"})
    assert st == 200
    b = obj["data"]["upsertBucket"]["bucket"]
    assert b["project"]["name"] == "uncategorized"
    assert b["project"]["entity"]["name"] == fw.entity
    assert b["displayName"].endswith("-1")
    st, _, obj = api.graphql("mutation UpsertBucket($name: String) "
                             "{ upsertBucket(input: {name: $name}) { bucket { id } } }",
                             {"name": "bad/name"})
    assert st == 400


def test_viewer_resume_status_and_unknown_operation(fw, api):
    st, _, obj = api.graphql("query Viewer { viewer { id entity flags teams { edges { node "
                             "{ name } } } } }")
    assert st == 200 and obj["data"]["viewer"]["entity"] == fw.entity
    api.upsert("r1")
    api.history("r1", 0, rows(0, 3))
    q = ("query RunResumeStatus($project: String, $entity: String, $name: String!) { model("
         "name: $project, entityName: $entity) { bucket(name: $name, missingOk: true) { id "
         "historyLineCount } } }")
    st, _, obj = api.graphql(q, {"project": PROJECT, "entity": ENTITY, "name": "r1"})
    assert st == 200 and obj["data"]["model"]["bucket"]["historyLineCount"] == 3
    st, _, obj = api.graphql(q, {"project": PROJECT, "entity": ENTITY, "name": "zz"})
    assert st == 200 and obj["data"]["model"]["bucket"] is None
    st, _, obj = api.graphql("query ServerInfo { serverInfo { latestLocalVersionInfo "
                             "{ outOfDate } } }")
    assert st == 400
    assert "unsupported GraphQL operation 'ServerInfo'" in obj["errors"][0]["message"]
    assert fw.stats()["graphql_unsupported"] == {"ServerInfo": 1}


# ---- auth ------------------------------------------------------------------------------

def test_auth(fw, api):
    api.upsert("r1")
    for key in ("wrong", ""):
        st, _, _ = Api(fw, key=key).history("r1", 0, rows(0, 1))
        assert st == 401
    st, _, _ = api.history("r1", 0, rows(0, 1), headers={"Authorization": ""})
    assert st == 401
    other_user = "Basic " + base64.b64encode(("bob:" + fw.api_key).encode()).decode()
    st, _, _ = api.history("r1", 0, rows(0, 1), headers={"Authorization": other_user})
    assert st == 401
    st, _, _ = Api(fw, key="wrong").graphql("query Viewer { viewer { entity } }")
    assert st == 401
    assert fw.run(ENTITY, PROJECT, "r1")["history"] == []
    assert fw.stats()["auth_failures"] == 5
    assert api.history("r1", 0, rows(0, 1))[0] == 200


# ---- HTTP details ----------------------------------------------------------------------

def test_keep_alive_gzip_chunked_expect(fw, api):
    api.upsert("r1")
    before = fw.stats()["connections"]
    body = json.dumps({"files": {H: {"offset": 0, "content": rows(0, 50)}}}).encode()
    st, _, _ = api.fs("r1", gzip.compress(body), raw=True, headers={"Content-Encoding": "gzip"})
    assert st == 200
    for i in range(5):
        assert api.history("r1", 50 + i, rows(50 + i, 51 + i))[0] == 200
    assert fw.stats()["connections"] == before  # all on the one keep-alive connection
    # Chunked body with Expect: 100-continue, over a raw socket.
    body = json.dumps({"files": {H: {"offset": 55, "content": rows(55, 57)}}}).encode()
    s = socket.create_connection(("127.0.0.1", fw.port), timeout=5)
    s.sendall((f"POST /files/{ENTITY}/{PROJECT}/r1/file_stream HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: {api.auth()}\r\nTransfer-Encoding: chunked\r\n"
               "Expect: 100-continue\r\n\r\n").encode())
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:]))
    resp = b""
    while b"\r\n\r\n" not in resp:
        resp += s.recv(4096)
    assert resp.startswith(b"HTTP/1.1 200 ")
    s.close()
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == rows(0, 57)
    assert fw.stats()["gzip_requests"] == 1


def test_oversize_request_is_413_and_not_applied(fw, api):
    api.upsert("r1")
    fw.configure(max_request_bytes=2000)
    try:
        big = rows(0, 100)
        st, _, obj = api.history("r1", 0, big)
        assert st == 413, obj
        assert api.history("r1", 0, rows(0, 2))[0] == 200  # connection still usable
        st, _, _ = api.history("r1", 0, big, headers={"Expect": "100-continue"})
        assert st == 413
    finally:
        fw.configure(max_request_bytes=10 * 1024 * 1024)
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == rows(0, 2)
    assert r["statuses"]["413"] == 2 and r["bytes_max"] > 2000
    s = fw.stats()
    assert s["oversize_requests"] == 2 and s["max_request_bytes_seen"] > 2000


# ---- faults: status codes --------------------------------------------------------------

@pytest.mark.parametrize("status,retry_after", [
    (500, None), (502, None), (503, 7), (429, 3), (400, None), (401, None), (404, None)])
def test_status_fault_by_count(fw, api, status, retry_after):
    api.upsert("r1")
    spec = {"kind": "status", "status": status, "path_prefix": "/files/", "count": 2}
    if retry_after is not None:
        spec["retry_after"] = retry_after
    fid = fw.add_fault(**spec)
    for _ in range(2):
        st, hdrs, obj = api.history("r1", 0, rows(0, 1))
        assert st == status and "injected fault" in obj["error"]
        if retry_after is not None:
            assert hdrs["retry-after"] == str(retry_after)
        else:
            assert "retry-after" not in hdrs
    # GraphQL does not match the prefix; the third file_stream request goes through.
    api.upsert("r1")
    assert api.history("r1", 0, rows(0, 1))[0] == 200
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == rows(0, 1) and r["requests"] == 1
    assert r["faults"] == {"status": 2} and r["statuses"][str(status)] == 2
    f = fw.faults()
    assert f["faults"] == [] and f["expired"][-1]["id"] == fid
    assert f["expired"][-1]["fired"] == 2


def test_retry_after_defaults_and_http_date(fw, api):
    api.upsert("r1")
    fw.add_fault(kind="status", status=503, path_prefix="/files/")
    st, hdrs, _ = api.history("r1", 0, rows(0, 1))
    assert st == 503 and hdrs["retry-after"] == "1"
    fw.add_fault(kind="status", status=429, retry_after=30, retry_after_date=True,
                 headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "30"})
    t0 = time.time()
    st, hdrs, _ = api.history("r1", 0, rows(0, 1))
    assert st == 429 and hdrs["ratelimit-remaining"] == "0"
    when = email.utils.parsedate_to_datetime(hdrs["retry-after"]).timestamp()
    assert t0 + 28 <= when <= t0 + 32


def test_status_fault_apply_true_applies_then_fails(fw, api):
    """The request is processed, then answered 500: a retry makes duplicates."""
    api.upsert("r1")
    fw.add_fault(kind="status", status=500, apply=True, path_prefix="/files/")
    assert api.history("r1", 0, rows(0, 3))[0] == 500
    assert api.history("r1", 0, rows(0, 3))[0] == 200
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == rows(0, 3) and r["files"][H]["duplicates"] == 3


def test_fault_after_probability_operation_method(fw, api):
    api.upsert("r1")
    fw.add_fault(kind="status", status=502, path_prefix="/files/", after=2, count=1)
    got = [api.history("r1", i, rows(i, i + 1))[0] for i in range(4)]
    assert got == [200, 200, 502, 200]
    fw.add_fault(kind="status", status=500, operation="UpsertBucket", count=1)
    st, _, _ = api.graphql("query Viewer { viewer { entity } }")
    assert st == 200
    st, _, _ = api.graphql("mutation UpsertBucket($name: String) { upsertBucket(input: "
                           "{name: $name}) { bucket { id } } }", {"name": "r1"})
    assert st == 500
    fw.add_fault(kind="status", status=500, method="GET", count=1)
    assert api.history("r1", 4, rows(4, 5))[0] == 200
    fw.clear_faults()
    fw.add_fault(kind="status", status=503, probability=0.5, seed=7, count=-1,
                 path_prefix="/files/")
    got = [api.history("r1", 5, rows(5, 6))[0] for _ in range(40)]
    assert 5 < got.count(503) < 35 and got.count(200) == 40 - got.count(503)


def test_time_window_expires(fw, api):
    api.upsert("r1")
    fw.add_fault(kind="status", status=503, retry_after=1, duration=0.5, path_prefix="/files/")
    st, _, _ = api.history("r1", 0, rows(0, 1))
    assert st == 503
    start = time.monotonic()
    statuses = []

    def ok():
        st = api.history("r1", 0, rows(0, 1))[0]
        statuses.append(st)
        return st == 200
    fw.wait_for(ok, timeout=5, interval=0.05, what="the window to end")
    assert time.monotonic() - start >= 0.3  # it did last; the fake ended it by itself
    assert set(statuses[:-1]) <= {503}
    assert fw.faults()["faults"] == []


def test_clear_one_fault(fw, api):
    api.upsert("r1")
    a = fw.add_fault(kind="status", status=500, count=-1, path_prefix="/files/")
    fw.add_fault(kind="status", status=502, count=-1, path_prefix="/graphql")
    assert api.history("r1", 0, rows(0, 1))[0] == 500
    fw.clear_faults(a)
    assert api.history("r1", 0, rows(0, 1))[0] == 200
    assert api.graphql("query Viewer { viewer { entity } }")[0] == 502


# ---- faults: connection level ----------------------------------------------------------

def test_connection_refused_window(fw, api):
    api.upsert("r1")
    assert api.history("r1", 0, rows(0, 1))[0] == 200  # an open keep-alive connection
    fw.add_fault(kind="refuse", duration=0.6)
    assert fw.health()["refusing"] is True  # the control port still answers
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fw.port), timeout=2).close()
    # The idle keep-alive connection was closed: the client must reconnect: refused.
    expect_connection_error(lambda: api.history("r1", 1, rows(1, 2)))

    def accepts():
        try:
            socket.create_connection(("127.0.0.1", fw.port), timeout=2).close()
            return True
        except ConnectionRefusedError:
            return False
    fw.wait_for(accepts, timeout=5, what="the port to listen again")
    assert api.history("r1", 1, rows(1, 2))[0] == 200
    assert fw.run(ENTITY, PROJECT, "r1")["history"] == rows(0, 2)
    # Clearing the faults ends a refuse window at once.
    fw.add_fault(kind="refuse", duration=60)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fw.port), timeout=2).close()
    fw.clear_faults()
    socket.create_connection(("127.0.0.1", fw.port), timeout=2).close()
    assert fw.stats()["faults_fired"]["refuse"] == 2


def test_reset_mid_request(fw, api):
    api.upsert("r1")
    fw.add_fault(kind="reset", path_prefix="/files/")
    err = expect_connection_error(lambda: api.history("r1", 0, rows(0, 2000)))
    assert isinstance(err, (ConnectionResetError, BrokenPipeError)), repr(err)
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == [] and r["faults"] == {"reset": 1}
    # After the body, and after applying it: the retry then makes duplicates.
    fw.add_fault(kind="reset", when="body", path_prefix="/files/")
    expect_connection_error(lambda: api.history("r1", 0, rows(0, 3)))
    assert fw.run(ENTITY, PROJECT, "r1")["history"] == []
    fw.add_fault(kind="reset", apply=True, path_prefix="/files/")
    err = expect_connection_error(lambda: api.history("r1", 0, rows(0, 3)))
    assert isinstance(err, ConnectionResetError), repr(err)
    assert api.history("r1", 0, rows(0, 3))[0] == 200
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] == rows(0, 3) and r["files"][H]["duplicates"] == 3


def test_no_response_until_client_gives_up(fw, api):
    api.upsert("r1")
    base = fw.stats()["open_connections"]
    fw.add_fault(kind="hang", path_prefix="/files/")
    slow = Api(fw, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(socket.timeout):
        slow.history("r1", 0, rows(0, 1))
    assert time.monotonic() - t0 >= 0.25
    # The fake lets go of the connection once the client closed it.
    fw.wait_for(lambda: fw.stats()["open_connections"] <= base, timeout=5,
                what="the held connection to be released")
    assert fw.run(ENTITY, PROJECT, "r1")["history"] == []
    # Bounded hold: the fake closes without answering after `hold` seconds.
    fw.add_fault(kind="hang", hold=0.3, path_prefix="/files/")
    patient = Api(fw, timeout=10)
    t0 = time.monotonic()
    expect_connection_error(lambda: patient.history("r1", 0, rows(0, 1)))
    assert 0.25 <= time.monotonic() - t0 < 5
    assert api.history("r1", 0, rows(0, 1))[0] == 200


def test_slow_trickle_and_delay(fw, api):
    api.upsert("r1")
    fw.add_fault(kind="trickle", byte_delay=0.002, path_prefix="/files/")
    s = socket.create_connection(("127.0.0.1", fw.port), timeout=5)
    body = json.dumps({"files": {H: {"offset": 0, "content": rows(0, 1)}}}).encode()
    s.sendall((f"POST /files/{ENTITY}/{PROJECT}/r1/file_stream HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: {api.auth()}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
              + body)
    t0 = time.monotonic()
    pieces = []
    data = b""
    expected = b'{"exitcode":null,"limits":{}}'
    while not data.endswith(expected):
        chunk = s.recv(4096)
        assert chunk, data
        pieces.append(chunk)
        data += chunk
    elapsed = time.monotonic() - t0
    s.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Length: {len(expected)}\r\n".encode() in data
    assert len(pieces) > len(data) // 4  # it came in many small pieces
    assert elapsed >= (len(data) - 1) * 0.002 * 0.8
    # A client whose timeout is shorter than the gaps gives up (the request was applied).
    fw.add_fault(kind="trickle", byte_delay=0.5, path_prefix="/files/")
    with pytest.raises(socket.timeout):
        Api(fw, timeout=0.2).history("r1", 1, rows(1, 2))
    fw.add_fault(kind="delay", delay=0.3, path_prefix="/files/")
    t0 = time.monotonic()
    assert api.history("r1", 2, rows(2, 3))[0] == 200
    assert time.monotonic() - t0 >= 0.25
    assert fw.run(ENTITY, PROJECT, "r1")["history"] == rows(0, 3)


def test_bad_fault_specs_rejected(fw):
    from fakewandb_client import FakeWandbError
    for spec in ({"kind": "explode"}, {"kind": "refuse"},
                 {"kind": "reset", "operation": "UpsertBucket"}):
        with pytest.raises(FakeWandbError, match="400"):
            fw.add_fault(**spec)


# ---- control API -----------------------------------------------------------------------

def test_read_back_runs_requests_stats_reset(fw, api):
    api.upsert("a", project="p1")
    api.upsert("b", project="p2")
    api.history("a", 0, rows(0, 2), project="p1")
    api.fs("b", {}, project="p2")
    runs = {(r["project"], r["run"]): r for r in fw.runs()}
    assert set(runs) == {("p1", "a"), ("p2", "b")}
    assert runs[("p1", "a")]["history_lines"] == 2
    reqs = fw.requests(run=f"{ENTITY}/p1/a")
    assert [q["files"] for q in reqs] == [[[H, 0, 2]]]
    assert reqs[0]["status"] == 200 and reqs[0]["bytes"] > 0
    hb = fw.requests(run=f"{ENTITY}/p2/b")
    assert hb[0]["heartbeat"] is True
    assert [q.get("operation") for q in fw.requests(path_prefix="/graphql")] == \
        ["UpsertBucket", "UpsertBucket"]
    s = fw.stats()
    assert s["file_stream_requests"] == 2 and s["graphql_requests"] == 2
    assert s["statuses"] == {"200": 4}
    fw.configure(journal_bodies=True)
    try:
        api.history("a", 2, rows(2, 3), project="p1")
        body = json.loads(fw.requests(limit=1)[0]["body"])
        assert body["files"][H]["content"] == rows(2, 3)
    finally:
        fw.configure(journal_bodies=False)
    fw.reset()
    assert fw.runs() == [] and fw.stats()["requests"] == 0
    assert fw.run_or_none(ENTITY, "p1", "a") is None


def test_hash_storage_mode_keeps_counts(fw, api):
    fw.configure(store_lines="hash")
    try:
        api.upsert("r1")
        api.history("r1", 2, rows(2, 4))
        api.history("r1", 0, rows(0, 3))
        api.history("r1", 3, [json.dumps({"other": 1})])
        api.fs("r1", {"files": {"wandb-summary.json": {"offset": 0, "content": ['{"a":1}']}}})
    finally:
        fw.configure(store_lines="full")
    r = fw.run(ENTITY, PROJECT, "r1")
    assert r["history"] is None and r["summary"] == {"a": 1}
    f = r["files"][H]
    assert (f["line_count"], f["holes"], f["hole_fills"], f["duplicates"], f["conflicts"],
            f["appended"]) == (4, 0, 2, 1, 1, 2)


def test_state_file_survives_restart(tmp_path):
    state = tmp_path / "state.json"
    with FakeWandb(state_file=state) as fw:
        api = Api(fw)
        api.upsert("r1", config=json.dumps({"x": {"value": 1}}))
        api.history("r1", 0, rows(0, 3))
        api.fs("r1", {"complete": True, "exitcode": 0})
        api.close()
        port = fw.port
    assert state.exists()
    with FakeWandb(state_file=state) as fw2:
        r = fw2.run(ENTITY, PROJECT, "r1")
        assert r["history"] == rows(0, 3) and r["complete"] and r["exitcode"] == 0
        assert r["config"] == {"x": {"value": 1}}
        api = Api(fw2)
        b = api.upsert("r1")
        assert b["inserted"] is False and b["bucket"]["historyLineCount"] == 3
        api.close()
    assert port  # (a new port each start: port 0)


def test_control_port_serves_only_control(fw):
    c = http.client.HTTPConnection("127.0.0.1", fw.control_port, timeout=5)
    c.request("POST", "/graphql", "{}")
    r = c.getresponse()
    assert r.status == 404
    r.read()
    c.request("GET", "/_control/health")
    assert json.loads(c.getresponse().read())["ok"] is True
    c.close()
    # The control API answers on the API port too, without auth, never faulted.
    fw.add_fault(kind="status", status=500, count=-1)
    c = http.client.HTTPConnection("127.0.0.1", fw.port, timeout=5)
    c.request("GET", "/_control/health")
    assert c.getresponse().status == 200
    c.close()


def test_client_vanishing_mid_body_and_garbage(fw, api):
    api.upsert("r1")
    s = socket.create_connection(("127.0.0.1", fw.port), timeout=5)
    s.sendall((f"POST /files/{ENTITY}/{PROJECT}/r1/file_stream HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: {api.auth()}\r\nContent-Length: 1000\r\n\r\n"
               '{"files":').encode())
    s.close()
    s = socket.create_connection(("127.0.0.1", fw.port), timeout=5)
    s.sendall(b"NONSENSE\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    s.close()
    assert api.history("r1", 0, rows(0, 1))[0] == 200
    assert fw.run(ENTITY, PROJECT, "r1")["history"] == rows(0, 1)


# ---- run files: CreateRunFiles, RunUploadUrls, the signed-URL PUT ----------------------

CREATE_RUN_FILES = """mutation CreateRunFiles($entity: String!, $project: String!,
  $run: String!, $files: [String!]!) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run,
    files: $files}) {
    runID
    uploadHeaders
    files { name uploadUrl }
  }
}"""

RUN_UPLOAD_URLS = """query RunUploadUrls($name: String!, $files: [String]!, $entity: String,
  $run: String!, $description: String) {
  model(name: $name, entityName: $entity) {
    bucket(name: $run, desc: $description) {
      id
      files(names: $files) {
        uploadHeaders
        edges { node { name url(upload: true) updatedAt } }
      }
    }
  }
}"""


def create_files(api, run, names):
    """CreateRunFiles as W&B's client sends it: ({name: uploadUrl}, {header: value})."""
    st, _, obj = api.graphql(CREATE_RUN_FILES, {"entity": ENTITY, "project": PROJECT,
                                                "run": run, "files": names})
    assert st == 200 and "errors" not in obj, obj
    d = obj["data"]["createRunFiles"]
    assert [f["name"] for f in d["files"]] == names
    hdrs = dict(h.split(":", 1) for h in d["uploadHeaders"])
    return {f["name"]: f["uploadUrl"] for f in d["files"]}, hdrs


def put(url, data, headers, timeout=5.0):
    """One PUT over a fresh http.client connection: (status, body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("PUT", u.path + "?" + u.query, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def raw_put(url, head_lines, body, shut_write=False, timeout=5.0):
    """A hand-written PUT (to send a wrong or missing Content-Length): (status, body)."""
    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        head = f"PUT {u.path}?{u.query} HTTP/1.1\r\nHost: x\r\n" + "".join(
            h + "\r\n" for h in head_lines) + "\r\n"
        s.sendall(head.encode() + body)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
            if b"\r\n\r\n" in data:
                h, _, rest = data.partition(b"\r\n\r\n")
                m = re.search(rb"content-length: *(\d+)", h, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def test_create_run_files_put_with_curl_and_urllib_read_back_exact(fw, api, tmp_path):
    api.upsert("rf")
    big = os.urandom(3 * 1024 * 1024 + 17)    # curl sends Expect: 100-continue for it
    small = b"\x00line one\nline two\r\n\xff"
    names = ["big.bin", "media/images/img_0_abc.png", "empty.txt"]
    urls, hdrs = create_files(api, "rf", names)
    assert hdrs == {"Content-Type": "application/octet-stream",
                    "X-Fake-Wandb-Upload": "signed"}
    for u in urls.values():
        assert u.startswith(f"http://127.0.0.1:{fw.port}/storage/")
        assert "expires=" in u and "token=" in u
    # curl -T: an independent client.
    src = tmp_path / "big.bin"
    src.write_bytes(big)
    cmd = ["curl", "-sS", "-T", str(src), "-o", "/dev/null", "-w", "%{http_code}"]
    for k, v in hdrs.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [urls["big.bin"]], capture_output=True, timeout=60, text=True)
    assert out.stdout == "200", out
    # urllib
    req = urllib.request.Request(urls["media/images/img_0_abc.png"], data=small,
                                 method="PUT", headers=hdrs)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["ETag"] == '"%s"' % hashlib.md5(small).hexdigest()
    assert put(urls["empty.txt"], b"", hdrs)[0] == 200
    rb = fw.run_files(ENTITY, PROJECT, "rf")
    assert set(rb["files"]) == set(names)
    for name, data in (("big.bin", big), ("media/images/img_0_abc.png", small),
                       ("empty.txt", b"")):
        f = rb["files"][name]
        assert f["size"] == len(data)
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
        assert f["md5"] == hashlib.md5(data).hexdigest()
        assert f["md5_b64"] == base64.b64encode(hashlib.md5(data).digest()).decode()
        assert f["puts"] == 1
        assert base64.b64decode(f["content_b64"]) == data
        raw = fw.run_file_bytes(ENTITY, PROJECT, "rf", name)
        assert hashlib.sha256(raw).hexdigest() == hashlib.sha256(data).hexdigest()
    assert rb["create_run_files"] == 1 and rb["run_upload_urls"] == 0
    assert rb["puts"] == 3 and rb["replacements"] == 0
    st = fw.stats()
    assert st["create_run_files"] == 1 and st["file_puts"] == 3
    assert st["graphql_operations"]["CreateRunFiles"] == 1
    assert "content_b64" not in fw.run_files(ENTITY, PROJECT, "rf", content=False)["files"][
        "big.bin"]
    with pytest.raises(Exception, match="404"):
        fw.run_file_bytes(ENTITY, PROJECT, "rf", "nope")


def test_run_upload_urls_older_query_and_unknown_run(fw, api):
    api.upsert("ru")
    st, _, obj = api.graphql(RUN_UPLOAD_URLS, {"name": PROJECT, "run": "ru", "entity": ENTITY,
                                               "files": ["a.txt"]})
    assert st == 200, obj
    fl = obj["data"]["model"]["bucket"]["files"]
    hdrs = dict(h.split(":", 1) for h in fl["uploadHeaders"])
    url = fl["edges"][0]["node"]["url"]
    assert fl["edges"][0]["node"]["name"] == "a.txt"
    assert put(url, b"abc", hdrs)[0] == 200
    rb = fw.run_files(ENTITY, PROJECT, "ru")
    assert rb["run_upload_urls"] == 1 and rb["create_run_files"] == 0
    assert fw.stats()["run_upload_urls"] == 1
    # Unknown run: a GraphQL error naming it, no data.
    st, _, obj = api.graphql(CREATE_RUN_FILES, {"entity": ENTITY, "project": PROJECT,
                                                "run": "ghost", "files": ["a"]})
    assert st == 200 and obj["data"]["createRunFiles"] is None
    assert "not found" in obj["errors"][0]["message"] and "ghost" in obj["errors"][0]["message"]
    st, _, obj = api.graphql(RUN_UPLOAD_URLS, {"name": PROJECT, "run": "ghost",
                                               "entity": ENTITY, "files": ["a"]})
    assert st == 200 and obj["data"]["model"]["bucket"] is None and "errors" not in obj
    st, _, obj = api.graphql(CREATE_RUN_FILES, {"entity": ENTITY, "project": PROJECT,
                                                "run": "ru", "files": "a"})
    assert st == 400


def test_put_checks_issued_headers_and_signature(fw, api):
    api.upsert("rh")
    urls, hdrs = create_files(api, "rh", ["f.txt", "g.txt"])
    url = urls["f.txt"]
    h = dict(hdrs)
    del h["X-Fake-Wandb-Upload"]
    st, body = put(url, b"x", h)
    assert st == 400 and b"X-Fake-Wandb-Upload" in body and b"missing" in body
    h = dict(hdrs, **{"Content-Type": "text/plain"})
    st, body = put(url, b"x", h)
    assert st == 400 and b"Content-Type" in body
    # A URL's token is for its own name: used for another, or altered, it is refused.
    wrong = url.replace("/f.txt?", "/g.txt?")
    st, body = put(wrong, b"x", hdrs)
    assert st == 403 and b"SignatureDoesNotMatch" in body
    st, body = put(url.replace("token=", "token=0"), b"x", hdrs)
    assert st == 403
    rb = fw.run_files(ENTITY, PROJECT, "rh")
    assert rb["files"] == {} and rb["puts"] == 0
    assert rb["put_statuses"] == {"400": 2, "403": 2}
    assert fw.stats()["file_puts_rejected"] == 4
    assert put(url, b"x", hdrs)[0] == 200


def test_put_content_length_missing_short_and_over_limit(fw, api):
    api.upsert("rc")
    urls, hdrs = create_files(api, "rc", ["f"])
    hl = [f"{k}: {v}" for k, v in hdrs.items()]
    st, body = raw_put(urls["f"], hl + ["Transfer-Encoding: chunked"], b"3\r\nabc\r\n0\r\n\r\n")
    assert st == 411 and b"Content-Length" in body
    st, body = raw_put(urls["f"], hl + ["Content-Length: 10"], b"abc", shut_write=True)
    assert st == 400 and b"Content-Length 10" in body and b"after 3 bytes" in body
    fw.configure(max_upload_bytes=1000)
    try:
        st, body = put(urls["f"], b"y" * 1001, hdrs)
        assert st == 413 and b"1001" in body
        assert put(urls["f"], b"y" * 1000, hdrs)[0] == 200
    finally:
        fw.configure(max_upload_bytes=64 * 1024 * 1024)
    assert fw.run_files(ENTITY, PROJECT, "rc")["files"]["f"]["size"] == 1000


def test_expired_url_is_403_then_a_fresh_url_works(fw, api):
    api.upsert("rx")
    fw.expire_urls_after(0.3)
    try:
        urls, hdrs = create_files(api, "rx", ["f"])
        time.sleep(0.5)
        st, body = put(urls["f"], b"data", hdrs)
        assert st == 403 and b"<Code>ExpiredToken</Code>" in body
    finally:
        fw.expire_urls_after(3600)
    urls2, hdrs = create_files(api, "rx", ["f"])
    assert urls2["f"] != urls["f"]
    assert put(urls2["f"], b"data", hdrs)[0] == 200
    rb = fw.run_files(ENTITY, PROJECT, "rx")
    assert rb["create_run_files"] == 2 and rb["files"]["f"]["puts"] == 1


def test_put_faults_status_reset_mid_body_stall_expired(fw, api):
    api.upsert("rq")
    urls, hdrs = create_files(api, "rq", ["f"])
    url = urls["f"]
    data = os.urandom(256 * 1024)
    # 5xx
    fw.add_fault(kind="status", status=503, path_prefix="/storage/", method="PUT")
    assert put(url, data, hdrs)[0] == 503
    # connection reset after part of the body
    fw.add_fault(kind="reset", when="mid_body", partial=1000, path_prefix="/storage/")
    expect_connection_error(lambda: put(url, data, hdrs))
    # stall past the client's timeout
    fw.add_fault(kind="hang", hold=5, path_prefix="/storage/")
    t0 = time.monotonic()
    expect_connection_error(lambda: put(url, data, hdrs, timeout=0.5))
    assert time.monotonic() - t0 < 4
    # forced expiry
    fw.add_fault(kind="expired", path_prefix="/storage/")
    st, body = put(url, data, hdrs)
    assert st == 403 and b"ExpiredToken" in body
    assert fw.run_files(ENTITY, PROJECT, "rq")["files"] == {}
    # then it works, and the bytes are whole
    assert put(url, data, hdrs)[0] == 200
    rb = fw.run_files(ENTITY, PROJECT, "rq")
    assert hashlib.sha256(base64.b64decode(rb["files"]["f"]["content_b64"])).hexdigest() == \
        hashlib.sha256(data).hexdigest()
    assert rb["puts"] == 1
    ps = rb["put_statuses"]
    for k in ("fault_status", "fault_reset", "fault_hang", "fault_expired"):
        assert ps[k] == 1, ps
    assert ps["503"] == 1 and ps["403"] == 1 and ps["200"] == 1
    run = fw.run(ENTITY, PROJECT, "rq", lines=False)
    assert run["faults"] == {"status": 1, "reset": 1, "hang": 1, "expired": 1}
    # apply=true: stored, then the answer is lost: the client's retry is a replacement.
    fw.add_fault(kind="reset", when="body", apply=True, path_prefix="/storage/")
    expect_connection_error(lambda: put(url, b"again", hdrs))
    rb = fw.run_files(ENTITY, PROJECT, "rq")
    assert rb["puts"] == 2 and rb["replacements"] == 1
    assert base64.b64decode(rb["files"]["f"]["content_b64"]) == b"again"
    fired = fw.stats()["faults_fired"]
    assert all(fired[k] == 1 for k in ("status", "hang", "expired")), fired
    assert fired["reset"] == 2


def test_replacement_counting_and_uploaded_list(fw, api):
    api.upsert("rr")
    urls, hdrs = create_files(api, "rr", ["a.txt", "b.txt"])
    assert put(urls["a.txt"], b"v1", hdrs)[0] == 200
    assert put(urls["b.txt"], b"b", hdrs)[0] == 200
    assert put(urls["a.txt"], b"version 2", hdrs)[0] == 200
    assert api.fs("rr", {"files": {}, "uploaded": ["a.txt", "b.txt"]})[0] == 200
    assert api.fs("rr", {"files": {}, "uploaded": ["a.txt"]})[0] == 200
    rb = fw.run_files(ENTITY, PROJECT, "rr")
    assert rb["puts"] == 3 and rb["replacements"] == 1
    assert rb["files"]["a.txt"]["puts"] == 2 and rb["files"]["b.txt"]["puts"] == 1
    assert base64.b64decode(rb["files"]["a.txt"]["content_b64"]) == b"version 2"
    assert rb["uploaded"] == ["a.txt", "b.txt", "a.txt"]
    assert fw.uploaded(ENTITY, PROJECT, "rr") == rb["uploaded"]
    assert fw.run(ENTITY, PROJECT, "rr", lines=False)["run_files"]["a.txt"]["size"] == 9


def test_run_files_survive_state_file_restart(tmp_path):
    state = tmp_path / "state.json"
    with FakeWandb(state_file=str(state)) as fw:
        a = Api(fw)
        a.upsert("rs")
        urls, hdrs = create_files(a, "rs", ["f.bin"])
        assert put(urls["f.bin"], b"\x01\x02persist", hdrs)[0] == 200
        a.close()
    with FakeWandb(state_file=str(state)) as fw:
        assert fw.run_file_bytes(ENTITY, PROJECT, "rs", "f.bin") == b"\x01\x02persist"
        assert fw.run_files(ENTITY, PROJECT, "rs")["puts"] == 1
