#!/usr/bin/env python3
"""Measure the fake W&B backend's own maximum (not a test).

Starts fake_wandb.py (or uses --url of a running one), creates one run per client,
then N concurrent keep-alive clients post file_stream requests of --lines history
lines each, with consecutive offsets, for --seconds. Prints requests/s and lines/s
as text and, last, one JSON line. Checks afterwards that the fake holds exactly the
lines that were acknowledged (no loss, no duplicates).

    python3 tests/fake-wandb/bench_fake.py [--clients 4] [--lines 1000] [--seconds 5]
                                           [--procs 1] [--gzip] [--url http://127.0.0.1:P
                                           --control-url http://127.0.0.1:C/_control]

Client work runs in --procs processes (threads inside), so the client can be kept off
the server's core; on a 2-core machine the default (1 process) leaves one core each.
"""
import argparse
import base64
import gzip
import json
import multiprocessing
import os
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_wandb import DEFAULT_API_KEY  # noqa: E402
from fakewandb_client import FakeWandb  # noqa: E402

ENTITY = "bench"
PROJECT = "bench"


def make_lines(n, width):
    pad = "x" * max(0, width - 80)
    return [json.dumps({"loss": 0.5 / (i + 1), "acc": i / n, "_step": i,
                        "_runtime": i * 0.01, "_timestamp": 1.7e9 + i, "pad": pad},
                       separators=(",", ":")) for i in range(n)]


def http_post(sock, host, path, body, headers, rfile):
    head = [f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"]
    for k, v in headers.items():
        head.append(f"{k}: {v}\r\n")
    head.append("\r\n")
    sock.sendall("".join(head).encode() + body)
    status_line = rfile.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = rfile.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    return status, rfile.read(length)


def worker(args):
    (host, port, api_key, runs, lines_per_req, width, seconds, use_gzip, start_at) = args
    content = json.dumps(make_lines(lines_per_req, width), separators=(",", ":")).encode()
    auth = "Basic " + base64.b64encode(("api:" + api_key).encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    results = []

    def one(run):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = sock.makefile("rb")
        path = f"/files/{ENTITY}/{PROJECT}/{run}/file_stream"
        offset = 0
        n = 0
        nbytes = 0
        lat = []
        while time.time() < start_at:
            time.sleep(0.001)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            body = (b'{"files":{"wandb-history.jsonl":{"offset":' + str(offset).encode()
                    + b',"content":' + content + b"}}}")
            if use_gzip:
                body = gzip.compress(body, 1)
            t0 = time.monotonic()
            status, _ = http_post(sock, host, path, body, headers, rfile)
            lat.append(time.monotonic() - t0)
            if status != 200:
                raise RuntimeError(f"status {status}")
            offset += lines_per_req
            n += 1
            nbytes += len(body)
        sock.close()
        results.append((run, n, offset, nbytes, lat))

    threads = [threading.Thread(target=one, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def control(url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def graphql_upsert(base, api_key, run):
    q = {"query": "mutation UpsertBucket($name: String, $project: String, $entity: String) "
                  "{ upsertBucket(input: {name: $name, modelName: $project, entityName: "
                  "$entity}) { bucket { id } } }",
         "variables": {"name": run, "project": PROJECT, "entity": ENTITY}}
    auth = "Basic " + base64.b64encode(("api:" + api_key).encode()).decode()
    req = urllib.request.Request(base + "/graphql", data=json.dumps(q).encode(), method="POST",
                                 headers={"Authorization": auth,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--lines", type=int, default=1000, help="history lines per request")
    ap.add_argument("--width", type=int, default=100, help="approximate bytes per line")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--procs", type=int, default=1, help="client processes")
    ap.add_argument("--gzip", action="store_true", help="gzip request bodies")
    ap.add_argument("--store-hash", action="store_true",
                    help="the fake keeps 8-byte hashes of lines, not the lines")
    ap.add_argument("--url", help="base URL of a running fake (default: start one)")
    ap.add_argument("--control-url", help="its control URL (with --url)")
    ap.add_argument("--api-key")
    a = ap.parse_args()

    fw = None
    if a.url:
        base = a.url.rstrip("/")
        ctl = (a.control_url or base + "/_control").rstrip("/")
        control(ctl, "GET", "/health")  # fails early if the control URL is wrong
        api_key = a.api_key or DEFAULT_API_KEY
    else:
        fw = FakeWandb().start()
        base, ctl, api_key = fw.base_url, fw.control_url, fw.api_key
    u = urllib.parse.urlparse(base)
    host, port = u.hostname, u.port

    if a.store_hash:
        control(ctl, "POST", "/config", {"store_lines": "hash"})
    stamp = str(int(time.time() * 1000))
    runs = [f"b{stamp}-{i}" for i in range(a.clients)]
    for r in runs:
        graphql_upsert(base, api_key, r)
    procs = max(1, min(a.procs, a.clients))
    groups = [runs[i::procs] for i in range(procs)]
    start_at = time.time() + 0.3
    jobs = [(host, port, api_key, g, a.lines, a.width, a.seconds, a.gzip, start_at)
            for g in groups]
    if procs == 1:
        results = worker(jobs[0])
    else:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            results = [x for part in pool.map(worker, jobs) for x in part]

    total_req = sum(r[1] for r in results)
    total_lines = sum(r[2] for r in results)
    total_bytes = sum(r[3] for r in results)
    lat = sorted(x for r in results for x in r[4])
    secs = a.seconds
    # Conservation check: the fake holds exactly what was acknowledged.
    problems = []
    for run, n, offset, _, _ in results:
        d = control(ctl, "GET", f"/runs/{ENTITY}/{PROJECT}/{run}?lines=0")
        f = d["files"].get("wandb-history.jsonl", {})
        if f.get("line_count", 0) != offset or d["duplicates"] or d["conflicts"]:
            problems.append((run, offset, f))
    stats = control(ctl, "GET", "/stats")
    rss = None
    if fw is not None:
        try:
            with open(f"/proc/{fw.proc.pid}/status") as f:
                rss = next(int(x.split()[1]) // 1024 for x in f if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
        fw.stop()
    out = {
        "clients": a.clients, "lines_per_request": a.lines, "seconds": secs,
        "gzip": a.gzip, "requests": total_req, "lines": total_lines,
        "requests_per_s": round(total_req / secs, 1),
        "lines_per_s": round(total_lines / secs),
        "mib_per_s": round(total_bytes / secs / 2 ** 20, 1),
        "latency_ms_p50": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
        "latency_ms_p99": round(lat[int(len(lat) * 0.99)] * 1000, 2) if lat else None,
        "max_request_bytes_seen": stats["max_request_bytes_seen"],
        "server_rss_mib": rss,
        "consistent": not problems,
    }
    print(f"fake-wandb bench: {a.clients} clients x {a.lines} lines/request, {secs:g} s"
          f"{' (gzip)' if a.gzip else ''}")
    print(f"  {out['requests_per_s']} requests/s, {out['lines_per_s']} lines/s, "
          f"{out['mib_per_s']} MiB/s, p50 {out['latency_ms_p50']} ms, "
          f"p99 {out['latency_ms_p99']} ms")
    print(f"  state check: {'ok' if not problems else problems}")
    print(json.dumps(out))
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
