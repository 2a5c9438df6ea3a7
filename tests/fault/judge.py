"""The conservation judge (RELIABILITY.md): compares what producers handed off and
what the agent acknowledged (their ledgers, see oracle_producer.c) with what was
delivered (the local sink's history.jsonl files, the fake W&B backend's runs),
after faults stopped and the backlog drained. Keys are (run, step).

The five rules, as checked here:
  1. every acknowledged row was delivered, with exactly the content the producer
     logged (computed from its key) — else `lost` (or `corrupt`);
  2. nothing was delivered that was never handed off — else `phantom`;
  3. no row is delivered twice (after the backend's offsets: a line rewritten at
     the same offset is one line; the fake counts conflicting rewrites) — else
     `duplicates`;
  4. what was refused is counted exactly: rows the library refused (ledger X
     lines) equal its records_refused_full count, and a row handed off but never
     acknowledged is either delivered or counted as unacked by td_finish — else
     `uncounted`;
  5. liveness: a row logged after the faults gets through (the scenario adds a
     `live` producer; the judge requires every one of its rows).

Files (R17; producers run with --files-every): the same rules, keyed by (run,
file name), judged by SHA-256 — the local sink's `files/<name>` in the run dir,
the fake backend's read-back bytes:
  1. every acknowledged saved file (an S line in the acknowledged prefix of the
     run's records: a file's record is acknowledged only after the agent holds
     its bytes complete) is delivered with the producer's SHA-256 (which must be
     expected_file's) — else `files_lost` (or `files_corrupt`);
  2. no file delivered that was not saved (a refused save included) — else
     `files_phantom`;
  3. no file uploaded twice: on the fake, the PUTs that stored a name with the
     same bytes (`put_sha256`) count once; more is `files_dup` — except the
     re-PUTs the scenario saw were allowed (the agent died between the fake
     storing a file and the agent recording it: `files_reput_window`); a PUT
     the fake did not complete (a fault) is not a PUT;
  4. a refused save is counted: `XS … record` ones with the refused rows
     against the library's counts, `XS … queue` ones (the file queue, not a
     record) by the caller's error alone (`files_refused`); refusals the library
     counted but the ledger could not name (the Python package does not raise)
     excuse as many missing files (counted in `files_refused`); a saved file neither
     acknowledged nor delivered must be within the library's unacked count
     (shared with rows);
  5. liveness: the live producer's files all arrive.

Verdict line (one per sink):
  VERDICT <scenario> <sink> PASS|FAIL handed=… acked=… delivered=… duplicates=…
          refused_counted=… unacked_counted=… lost=… phantom=… corrupt=… uncounted=… [extra]
On FAIL, `problems` names the exact keys.
"""
import glob
import hashlib
import json
import os

USER_KEYS = ("i", "v", "s", "pad")


def expected_row(run_id, step, pad_bytes=0):
    row = {"i": step, "v": step * 0.25, "s": f"{run_id}/{step}"}
    if pad_bytes:
        row["pad"] = chr(ord("a") + step % 26) * pad_bytes
    return row


# Files the agent writes itself into a run's files/ (not saved by a producer).
STANDARD_FILES = {"config.yaml", "wandb-summary.json", "output.log", "wandb-metadata.json",
                  "requirements.txt", "diff.patch"}
FILE_SIZES = (1, 100, 4096, 65543, 262147, 1048579, 3145739)


def oracle_file_size(run_id, k, cap=3145739):
    """File k's size (oracle_producer.c oracle_file_size): by FNV-1a of the run id."""
    h = 2166136261
    for b in run_id.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return min(FILE_SIZES[((h + k) & 0xFFFFFFFF) % len(FILE_SIZES)], cap)


def expected_file(run_id, k, size):
    """File k's bytes (oracle_producer.c oracle_file_fill): 4096-byte blocks, block
    j = "<run>/<k>/<j>\\n" then the letter chosen by (k + j), cut at size."""
    out = []
    for j in range((size + 4095) // 4096):
        head = f"{run_id}/{k}/{j}\n".encode()
        out.append((head + bytes([ord("a") + (k + j) % 26]) * 4096)[:4096])
    return b"".join(out)[:size]


class Ledger:
    """One producer's ledger file."""

    def __init__(self, path, pad_bytes=0, allow_unfinished=False):
        self.path = path
        self.pad_bytes = pad_bytes
        self.handed = []
        self.refused = []
        self.final = None
        self.seq = []            # handed-off records in order: ("H", step) / ("S", name)
        self.saved = {}          # name -> (k, size, sha256 hex)
        self.files_refused = []  # (k, name, error, "queue"|"record")
        with open(path) as f:
            for line in f:
                kind, _, rest = line.rstrip("\n").partition(" ")
                if kind == "H":
                    self.handed.append(int(rest))
                    self.seq.append(("H", int(rest)))
                elif kind == "X":
                    self.refused.append(int(rest.split()[0]))
                elif kind == "S":
                    k, name, size, sha = rest.split()
                    self.saved[name] = (int(k), int(size), sha)
                    self.seq.append(("S", name))
                elif kind == "XS":
                    # The error is td_strerror's words: the last word is where.
                    parts = rest.split()
                    self.files_refused.append((int(parts[0]), parts[1],
                                               " ".join(parts[2:-1]), parts[-1]))
                elif kind == "F":
                    self.final = json.loads(rest)
        self.killed = self.final is None
        if self.final is None:
            if not allow_unfinished:
                raise AssertionError(f"{path}: no finish line (the producer did not finish)")
            # A producer killed on purpose: what it acknowledged is unknown, so
            # nothing counts as acknowledged and every record as unacked; the
            # other rules (nothing delivered that was not handed off, nothing
            # twice, exact content) hold as for the others. The record it was
            # handing off when it died may be delivered without its ledger
            # line: `in_flight` below.
            n = len(self.seq)
            self.final = {"run_id": os.path.basename(path)[:-len(".ledger")],
                          "status": "killed", "handed": len(self.handed),
                          "refused": len(self.refused), "acked_rows": 0, "acked_records": 0,
                          "logged": n, "acked": 0, "unacked": n, "spooled": 0,
                          "refused_full": 0, "rejected": 0}
        self.run_id = self.final["run_id"]

    def in_flight(self, files_every=0):
        """A killed producer's row and file after its last ledger lines: handed
        off, perhaps delivered, not yet written down. (step or None, file name
        or None)."""
        if not self.killed:
            return None, None
        step = max(self.handed + self.refused, default=-1) + 1
        ks = [v[0] for v in self.saved.values()] + [r[0] for r in self.files_refused]
        return step, f"oracle/f{max(ks, default=-1) + 1}.bin"

    @property
    def acked_seq(self):
        """The acknowledged prefix of the handed-off records (rows and files)."""
        f = self.final
        n = f["acked_records"] if "acked_records" in f else f["acked_rows"]
        return self.seq[:max(0, n - f["refused_full"])] if f["refused_full"] else self.seq[:n]

    @property
    def acked_files(self):
        return [name for kind, name in self.acked_seq if kind == "S"]

    @property
    def acked(self):
        """The acknowledged rows: a prefix of the handed-off ones (acks come in
        order). With refusals in between, the prefix is not known per row."""
        if "acked_records" in self.final:
            return [step for kind, step in self.acked_seq if kind == "H"]
        if self.final["refused_full"]:
            return self.handed[:max(0, self.final["acked_rows"] - self.final["refused_full"])]
        return self.handed[:self.final["acked_rows"]]


def read_ledgers(directory, pad_bytes=0, killed=()):
    """killed: run ids of producers killed on purpose (no finish line)."""
    return [Ledger(p, pad_bytes, os.path.basename(p)[:-len(".ledger")] in killed)
            for p in sorted(glob.glob(os.path.join(directory, "*.ledger")))]


def parse_lines(lines):
    """[(step, user content dict)] of history lines (None: a hole)."""
    out = []
    for line in lines:
        if line is None:
            out.append((None, None))
            continue
        d = json.loads(line)
        out.append((d.get("_step"), {k: d[k] for k in USER_KEYS if k in d}))
    return out


def local_delivery(state_dir, project):
    """{run_id: [(step, content)]} from the local sink's run store; a run must
    have exactly one directory."""
    runs, problems = {}, []
    for path in sorted(glob.glob(os.path.join(state_dir, "runs", "*", project, "run-*",
                                              "history.jsonl"))):
        run_id = os.path.basename(os.path.dirname(path)).split("-", 2)[2]
        if run_id in runs:
            problems.append(f"run {run_id} has two directories")
        with open(path) as f:
            runs.setdefault(run_id, []).extend(parse_lines(f.read().splitlines()))
    return runs, problems


def fake_delivery(fw, project, run_ids):
    """{run_id: [(step, content)]} from the fake W&B backend, plus the rewrites
    it saw (duplicates are idempotent re-sends at the same offset, fine;
    conflicts and holes are not)."""
    runs, problems, resent = {}, [], 0
    for run_id in run_ids:
        r = fw.run_or_none(fw.entity, project, run_id, True)
        if r is None:
            runs[run_id] = []
            continue
        runs[run_id] = parse_lines(r["history"])
        hist = r["files"].get("wandb-history.jsonl", {})
        resent += hist.get("duplicates", 0)
        if hist.get("conflicts"):
            problems.append(f"{run_id}: {hist['conflicts']} lines rewritten with other content")
        if hist.get("holes"):
            problems.append(f"{run_id}: {hist['holes']} holes in history")
    return runs, problems, resent


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def local_files_delivery(state_dir, project):
    """{run_id: {name: {"sha256": digest, "puts": None}}} of the files in each run
    dir's files/ (but the ones the agent writes itself)."""
    runs = {}
    for d in sorted(glob.glob(os.path.join(state_dir, "runs", "*", project, "run-*"))):
        run_id = os.path.basename(d).split("-", 2)[2]
        root = os.path.join(d, "files")
        got = runs.setdefault(run_id, {})
        for base, _, names in os.walk(root):
            for n in names:
                p = os.path.join(base, n)
                rel = os.path.relpath(p, root)
                if rel in STANDARD_FILES:
                    continue
                with open(p, "rb") as f:
                    got[rel] = {"sha256": _sha(f.read()), "puts": None}
    return runs


def fake_files_delivery(fw, project, run_ids):
    """{run_id: {name: {"sha256": digest of the read-back bytes, "puts": [digest of
    every PUT that stored the name]}}} from the fake backend."""
    runs = {}
    for run_id in run_ids:
        got = runs.setdefault(run_id, {})
        if fw.run_or_none(fw.entity, project, run_id, False) is None:
            continue
        rf = fw.run_files(fw.entity, project, run_id, content=False)
        for name, meta in rf["files"].items():
            if name in STANDARD_FILES:
                continue
            data = fw.run_file_bytes(fw.entity, project, run_id, name)
            puts = meta.get("put_sha256") or [meta["sha256"]] * meta["puts"]
            got[name] = {"sha256": _sha(data), "puts": puts}
    return runs


class Verdict:
    def __init__(self, scenario, sink, counts, problems, extra=""):
        self.scenario, self.sink, self.counts, self.problems = scenario, sink, counts, problems
        self.ok = not problems
        fields = " ".join(f"{k}={v}" for k, v in counts.items())
        self.line = (f"VERDICT {scenario} {sink} {'PASS' if self.ok else 'FAIL'} {fields}"
                     + (f" {extra}" if extra else ""))

    def report(self):
        return self.line + "".join(f"\n  {p}" for p in self.problems[:40]) + (
            f"\n  … {len(self.problems) - 40} more" if len(self.problems) > 40 else "")


def _keys(keys, limit=12):
    keys = sorted(keys)
    s = ", ".join(f"({r},{st})" for r, st in keys[:limit])
    return s + (f" … ({len(keys)} in all)" if len(keys) > limit else "")


def _fkeys(keys, limit=12):
    keys = sorted(keys)
    s = ", ".join(f"({r},{n})" for r, n in keys[:limit])
    return s + (f" … ({len(keys)} in all)" if len(keys) > limit else "")


def judge(scenario, sink, ledgers, delivered, sink_problems=(), resent=0, extra="",
          live_prefix="live", allow_lost=False, files=None, reput_allowed=()):
    """ledgers: [Ledger]; delivered: {run_id: [(step, content)]}. Returns a Verdict.
    allow_lost: acknowledged rows may be missing (counted, not a failure): a
    power cut under `fsync: interval` may lose what was acked in the last
    interval, by design; the scenario then checks the fsynced records itself.
    files: {run_id: {name: {"sha256", "puts"}}} (local_files_delivery,
    fake_files_delivery) to judge the saved files too; reput_allowed: the
    (run_id, name) a scenario saw stored upstream but not yet recorded by the
    agent when it was killed — a set (one more PUT each) or {key: how many more
    PUTs} (one per such kill): the protocol's window, file_journal.h."""
    problems = list(sink_problems)
    handed = acked = refused = unacked = 0
    lost, phantom, dup, corrupt, uncounted = set(), set(), set(), set(), []
    by_run = {}
    for lg in ledgers:
        by_run.setdefault(lg.run_id, []).append(lg)
    live_seen = False
    n_delivered = 0
    for run_id, lgs in by_run.items():
        got = delivered.get(run_id, [])
        steps = {}
        for step, content in got:
            if step is None:
                continue
            steps[step] = steps.get(step, 0) + 1
        n_delivered += len(steps)
        handed_set = set()
        for lg in lgs:
            handed += len(lg.handed)
            acked += len(lg.acked)
            refused += len(lg.refused)
            handed_set.update(lg.handed)
            step, _ = lg.in_flight()
            if step is not None:
                handed_set.add(step)
            f = lg.final
            # Rule 4: the library's count of refusals equals the refused rows
            # (the Python package cannot tell which rows: it does not raise).
            if lg.refused and len(lg.refused) != f["refused_full"] + f["rejected"]:
                uncounted.append(f"{run_id}: {len(lg.refused)} rows refused, library "
                                 f"counted {f['refused_full']} + {f['rejected']}")
            if f["acked"] + f["unacked"] + f["rejected"] != f["logged"]:
                uncounted.append(f"{run_id}: acked {f['acked']} + unacked {f['unacked']} + "
                                 f"rejected {f['rejected']} != logged {f['logged']}")
            unacked += f["unacked"]
            # Rule 1: every acknowledged row delivered, with its content.
            for step in lg.acked:
                if step not in steps:
                    lost.add((run_id, step))
            not_acked = [s for s in lg.handed[len(lg.acked):] if s not in steps]
            # Handed off, not acknowledged, not delivered: allowed only if the
            # library counted it (unacked, or refused for a full buffer).
            allowance = f["unacked"] + f["refused_full"]
            if len(not_acked) > allowance:
                uncounted.append(f"{run_id}: {len(not_acked)} rows neither acknowledged nor "
                                 f"delivered, the library counted {allowance}: "
                                 + _keys((run_id, s) for s in not_acked))
            if run_id.startswith(live_prefix):
                live_seen = True
                if f["unacked"] or not lg.handed or any(s not in steps for s in lg.handed):
                    problems.append(f"liveness: {run_id} did not get through after the faults")
        pad = lgs[0].pad_bytes
        for step, content in got:
            if step is None:
                continue
            if step not in handed_set:
                phantom.add((run_id, step))
            elif content != expected_row(run_id, step, pad):
                corrupt.add((run_id, step))
        for step, n in steps.items():
            if n > 1:
                dup.add((run_id, step))
    for run_id in delivered:
        if run_id not in by_run and delivered[run_id]:
            phantom.update((run_id, s) for s, _ in delivered[run_id])
    if not live_seen:
        problems.append("liveness: no live producer in the ledgers")
    fcounts = {}
    if files is not None or any(lg.saved or lg.files_refused for lg in ledgers):
        allowed = (dict(reput_allowed) if isinstance(reput_allowed, dict)
                   else {k: 1 for k in reput_allowed})
        fcounts, fproblems = judge_files(ledgers, files or {}, allowed, live_prefix)
        problems.extend(fproblems)
    if lost and not allow_lost:
        problems.append(f"lost {len(lost)} acknowledged rows: {_keys(lost)}")
    if phantom:
        problems.append(f"{len(phantom)} rows delivered that were never handed off: "
                        f"{_keys(phantom)}")
    if dup:
        problems.append(f"{len(dup)} rows delivered more than once: {_keys(dup)}")
    if corrupt:
        problems.append(f"{len(corrupt)} rows delivered with other content: {_keys(corrupt)}")
    problems.extend(uncounted)
    counts = {"handed": handed, "acked": acked, "delivered": n_delivered,
              "duplicates": len(dup), "resent_at_offset": resent,
              "refused_counted": refused, "unacked_counted": unacked, "lost": len(lost),
              "phantom": len(phantom), "corrupt": len(corrupt), "uncounted": len(uncounted),
              **fcounts}
    return Verdict(scenario, sink, counts, problems, extra)


def judge_files(ledgers, files, reput_allowed, live_prefix="live"):
    """The five rules for saved files (see the module's doc). Returns (counts,
    problems)."""
    problems = []
    saved = acked = refused = 0
    lost, phantom, corrupt, dup, reput, uncounted = set(), set(), set(), set(), set(), []
    n_delivered = 0
    by_run = {}
    for lg in ledgers:
        by_run.setdefault(lg.run_id, []).append(lg)
    for run_id, lgs in by_run.items():
        got = files.get(run_id, {})
        n_delivered += len(got)
        want = {}
        for lg in lgs:
            saved += len(lg.saved)
            refused += len(lg.files_refused)
            for name, (k, size, sha) in lg.saved.items():
                if sha != _sha(expected_file(run_id, k, size)):
                    problems.append(f"ledger {lg.path}: {name} has SHA-256 {sha[:12]}…, not "
                                    f"the expected file {k} of {size} bytes")
                want[name] = sha
            _, name = lg.in_flight()
            if name is not None and name in got and name not in want:
                k = int(name[len("oracle/f"):-len(".bin")])
                want[name] = _sha(expected_file(run_id, k, oracle_file_size(run_id, k)))
            acked_files = lg.acked_files
            acked += len(acked_files)
            f = lg.final
            record_refusals = sum(1 for r in lg.files_refused if r[3] == "record")
            # Refusals the library counted that the ledger could not name (the
            # Python package does not raise for a full buffer, so its ledger
            # says S): that many missing files are refused, not lost.
            unnamed = max(0, f["refused_full"] - len(lg.refused) - record_refusals)
            missing_acked = [n for n in acked_files if n not in got]
            if len(missing_acked) > unnamed:
                lost.update((run_id, n) for n in missing_acked)
            else:
                refused += len(missing_acked)
            # Handed off, not acknowledged, not delivered: within the library's
            # unacked count (rows count in it too: the row rule checks them).
            acked_set = set(acked_files)
            missing = [n for n in lg.saved if n not in acked_set and n not in got]
            allowance = f["unacked"] + f["refused_full"]
            if len(missing) > allowance:
                uncounted.append(f"{run_id}: {len(missing)} files neither acknowledged nor "
                                 f"delivered, the library counted {allowance} records: "
                                 + _fkeys((run_id, n) for n in missing))
            if record_refusals and len(lg.refused) + record_refusals != (
                    f["refused_full"] + f["rejected"]):
                uncounted.append(f"{run_id}: {len(lg.refused)} rows and {record_refusals} "
                                 f"file records refused, library counted "
                                 f"{f['refused_full']} + {f['rejected']}")
            if run_id.startswith(live_prefix) and any(n not in got for n in lg.saved):
                problems.append(f"liveness: {run_id}'s files did not get through after the "
                                f"faults")
        for name, d in got.items():
            if name not in want:
                phantom.add((run_id, name))
                continue
            if d["sha256"] != want[name]:
                corrupt.add((run_id, name))
            if d["puts"] is not None:
                same = sum(1 for p in d["puts"] if p == want[name])
                if same > 1:
                    (reput if same - 1 <= reput_allowed.get((run_id, name), 0) else dup).add(
                        (run_id, name))
                if any(p != want[name] for p in d["puts"]):
                    corrupt.add((run_id, name))
    for run_id, got in files.items():
        if run_id not in by_run:
            phantom.update((run_id, n) for n in got)
    if lost:
        problems.append(f"lost {len(lost)} acknowledged files: {_fkeys(lost)}")
    if phantom:
        problems.append(f"{len(phantom)} files delivered that were never saved: "
                        f"{_fkeys(phantom)}")
    if dup:
        problems.append(f"{len(dup)} files uploaded more than once: {_fkeys(dup)}")
    if corrupt:
        problems.append(f"{len(corrupt)} files delivered with other bytes: {_fkeys(corrupt)}")
    problems.extend(uncounted)
    counts = {"files_saved": saved, "files_acked": acked, "files_delivered": n_delivered,
              "files_dup": len(dup), "files_reput_window": len(reput),
              "files_refused": refused, "files_lost": len(lost),
              "files_phantom": len(phantom), "files_corrupt": len(corrupt)}
    return counts, problems
