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

Verdict line (one per sink):
  VERDICT <scenario> <sink> PASS|FAIL handed=… acked=… delivered=… duplicates=…
          refused_counted=… unacked_counted=… lost=… phantom=… corrupt=… uncounted=… [extra]
On FAIL, `problems` names the exact keys.
"""
import glob
import json
import os

USER_KEYS = ("i", "v", "s", "pad")


def expected_row(run_id, step, pad_bytes=0):
    row = {"i": step, "v": step * 0.25, "s": f"{run_id}/{step}"}
    if pad_bytes:
        row["pad"] = chr(ord("a") + step % 26) * pad_bytes
    return row


class Ledger:
    """One producer's ledger file."""

    def __init__(self, path, pad_bytes=0):
        self.path = path
        self.pad_bytes = pad_bytes
        self.handed = []
        self.refused = []
        self.final = None
        with open(path) as f:
            for line in f:
                kind, _, rest = line.rstrip("\n").partition(" ")
                if kind == "H":
                    self.handed.append(int(rest))
                elif kind == "X":
                    self.refused.append(int(rest.split()[0]))
                elif kind == "F":
                    self.final = json.loads(rest)
        if self.final is None:
            raise AssertionError(f"{path}: no finish line (the producer did not finish)")
        self.run_id = self.final["run_id"]

    @property
    def acked(self):
        """The acknowledged rows: a prefix of the handed-off ones (acks come in
        order). With refusals in between, the prefix is not known per row."""
        if self.final["refused_full"]:
            return self.handed[:max(0, self.final["acked_rows"] - self.final["refused_full"])]
        return self.handed[:self.final["acked_rows"]]


def read_ledgers(directory, pad_bytes=0):
    return [Ledger(p, pad_bytes) for p in sorted(glob.glob(os.path.join(directory, "*.ledger")))]


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


def judge(scenario, sink, ledgers, delivered, sink_problems=(), resent=0, extra="",
          live_prefix="live", allow_lost=False):
    """ledgers: [Ledger]; delivered: {run_id: [(step, content)]}. Returns a Verdict.
    allow_lost: acknowledged rows may be missing (counted, not a failure): a
    power cut under `fsync: interval` may lose what was acked in the last
    interval, by design; the scenario then checks the fsynced records itself."""
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
              "phantom": len(phantom), "corrupt": len(corrupt), "uncounted": len(uncounted)}
    return Verdict(scenario, sink, counts, problems, extra)
