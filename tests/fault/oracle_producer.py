"""oracle_producer.py — the Python twin of oracle_producer.c: logs rows through the
`trackd` package (client-shim/python, ctypes over libtrackd) and keeps the same
ledger (see oracle_producer.c for the row content and the ledger format).
One difference: the package does not raise when the library refuses a row for a
full buffer (it counts it for the finish report, as wandb does not raise either),
so such a row is written as H too; the judge then checks the count
(records_refused_full), not the keys. Files (--files-every K): file k is written
to a scratch dir as oracle/f<k>.bin (judge.expected_file: the same bytes as the
C producer's) and saved with run.save(path, base_path=scratch, policy="now"); a
file the package's full file queue refused is not raised either (it warns once):
the ledger says S, and the judge counts it as handed off, not acknowledged.

    python3 oracle_producer.py --run-id ID --ledger FILE [--rows N] [--stop-file F]
                               [--sleep-us U] [--every K] [--timeout-ms T] [--project P]
                               [--files-every K] [--file-max-bytes M]
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client-shim", "python"))
import trackd  # noqa: E402

sys.path.insert(0, HERE)
from judge import expected_file, oracle_file_size  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--ledger", required=True)
    ap.add_argument("--rows", type=int, default=-1)
    ap.add_argument("--stop-file")
    ap.add_argument("--sleep-us", type=int, default=0)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--timeout-ms", type=int, default=600000)
    ap.add_argument("--project", default="trackd-fault")
    ap.add_argument("--files-every", type=int, default=0)
    ap.add_argument("--file-max-bytes", type=int, default=3145739)
    ap.add_argument("--max-spool-bytes", type=int, default=None)
    a = ap.parse_args()
    if a.rows < 0 and not a.stop_file:
        ap.error("--rows or --stop-file is required")
    handed = refused = saved = refused_files = 0
    kinds = []  # handed-off records in order: "H" row, "S" file
    scratch = tempfile.mkdtemp(prefix="oracle-files-") if a.files_every else None
    with open(a.ledger, "w") as ledger:
        run = trackd.init(project=a.project, id=a.run_id, resume="allow", console=False,
                          max_spool_bytes=a.max_spool_bytes)
        i = 0
        while a.rows < 0 or i < a.rows:
            if a.stop_file and i % 64 == 0 and os.path.exists(a.stop_file):
                break
            try:
                run.log({"i": i, "v": i * 0.25, "s": f"{a.run_id}/{i}"}, step=i, commit=True)
                handed += 1
                kinds.append("H")
                ledger.write(f"H {i}\n")
            except trackd.errors.TrackdError as e:
                refused += 1
                ledger.write(f"X {i} {type(e).__name__}\n")
            if a.files_every and (i + 1) % a.files_every == 0:
                k = i // a.files_every
                name = f"oracle/f{k}.bin"
                data = expected_file(a.run_id, k, oracle_file_size(a.run_id, k, a.file_max_bytes))
                path = os.path.join(scratch, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
                try:
                    run.save(path, base_path=scratch, policy="now")
                    saved += 1
                    kinds.append("S")
                    ledger.write(f"S {k} {name} {len(data)} {hashlib.sha256(data).hexdigest()}\n")
                except trackd.errors.TrackdError as e:
                    refused_files += 1
                    ledger.write(f"XS {k} {name} {type(e).__name__} record\n")
                if name in run._deferred:
                    # No room in the file queue yet: saved once there is (it
                    # reads the file then, so it stays until the end).
                    print(f"deferred {name}", file=sys.stderr, flush=True)
                else:
                    os.unlink(path)
            i += 1
            if a.sleep_us and i % max(1, a.every) == 0:
                time.sleep(a.sleep_us / 1e6)
        run.finish(timeout=a.timeout_ms / 1000)
        rep = run.finish_report
        acked_rows = min(handed, max(0, rep["records_acked"] - 1))
        extra = {}
        if a.files_every:
            acked_records = min(len(kinds), max(0, rep["records_acked"] - 1))
            acked_rows = kinds[:acked_records].count("H")
            extra = {"acked_records": acked_records, "saved": saved,
                     "refused_files": refused_files}
        ledger.write("F " + json.dumps({**extra,
            "run_id": a.run_id, "status": rep["status"], "handed": handed, "refused": refused,
            "acked_rows": acked_rows, "logged": rep["records_logged"],
            "acked": rep["records_acked"], "unacked": rep["records_unacked"],
            "spooled": rep["records_spooled"], "refused_full": rep["records_refused_full"],
            "rejected": rep["records_rejected"]}) + "\n")
    return 0 if rep["records_unacked"] == 0 and rep["records_rejected"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
