"""The judge itself: each rule, broken on purpose, must fail the verdict and name
the keys (a judge that cannot fail proves nothing)."""
import json

import judge


def ledger(tmp_path, run_id, handed, acked_rows=None, unacked=0, refused=(), refused_full=0):
    acked_rows = len(handed) if acked_rows is None else acked_rows
    lines = [f"H {s}" for s in handed] + [f"X {s} full" for s in refused]
    logged = len(handed) + 2
    final = {"run_id": run_id, "status": "success", "handed": len(handed),
             "refused": len(refused), "acked_rows": acked_rows, "logged": logged,
             "acked": logged - unacked, "unacked": unacked, "spooled": 0,
             "refused_full": refused_full, "rejected": 0}
    (tmp_path / f"{run_id}.ledger").write_text("\n".join(lines + ["F " + json.dumps(final)]) + "\n")


def rows(run_id, steps):
    return [(s, judge.expected_row(run_id, s)) for s in steps]


def verdict(tmp_path, delivered):
    return judge.judge("T", "test", judge.read_ledgers(str(tmp_path)), delivered)


def test_clean_run_passes(tmp_path):
    ledger(tmp_path, "a", range(10))
    ledger(tmp_path, "live1", range(3))
    v = verdict(tmp_path, {"a": rows("a", range(10)), "live1": rows("live1", range(3))})
    assert v.ok, v.report()
    assert "handed=13 acked=13 delivered=13 duplicates=0" in v.line


def test_each_broken_rule_is_named(tmp_path):
    ledger(tmp_path, "a", range(10))
    ledger(tmp_path, "live1", range(3))
    good = {"a": rows("a", range(10)), "live1": rows("live1", range(3))}
    cases = {
        "lost 1 acknowledged rows: (a,4)": {**good, "a": rows("a", [0, 1, 2, 3, 5, 6, 7, 8, 9])},
        "never handed off: (a,10)": {**good, "a": rows("a", range(11))},
        "more than once: (a,3)": {**good, "a": rows("a", list(range(10)) + [3])},
        "other content: (a,2)": {**good, "a": [(s, dict(c, v=-1.0) if s == 2 else c)
                                              for s, c in rows("a", range(10))]},
        "liveness: live1": {**good, "live1": rows("live1", [0, 1])},
        "never handed off: (ghost,0)": {**good, "ghost": rows("ghost", [0])},
    }
    for want, delivered in cases.items():
        v = verdict(tmp_path, delivered)
        assert not v.ok and want in v.report(), (want, v.report())


def test_unacked_rows_must_be_counted(tmp_path):
    # 10 handed off, 8 acknowledged, 2 not delivered: fine if the library
    # counted 2 unacked, a failure if it counted fewer.
    ledger(tmp_path, "a", range(10), acked_rows=8, unacked=2)
    ledger(tmp_path, "live1", range(3))
    delivered = {"a": rows("a", range(8)), "live1": rows("live1", range(3))}
    assert verdict(tmp_path, delivered).ok
    (tmp_path / "a.ledger").unlink()
    ledger(tmp_path, "a", range(10), acked_rows=8, unacked=1)
    v = verdict(tmp_path, delivered)
    assert not v.ok and "neither acknowledged nor delivered" in v.report(), v.report()


def test_refusals_must_match_the_library_count(tmp_path):
    ledger(tmp_path, "a", range(5), refused=[5, 6], refused_full=1)
    ledger(tmp_path, "live1", range(3))
    v = verdict(tmp_path, {"a": rows("a", range(5)), "live1": rows("live1", range(3))})
    assert not v.ok and "2 rows refused, library counted 1" in v.report(), v.report()
