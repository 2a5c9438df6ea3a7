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


# ---- files (R17) --------------------------------------------------------------------

def saved(run_id, k, size=None):
    size = judge.oracle_file_size(run_id, k) if size is None else size
    data = judge.expected_file(run_id, k, size)
    return f"oracle/f{k}.bin", k, size, judge._sha(data)


def files_ledger(tmp_path, run_id, rows_n, files_n, acked_records=None, unacked=0,
                 refused_files=(), corrupt_sha=None):
    """rows_n rows, a file after every second row (files_n of them), as the
    producers write it."""
    lines, seq = [], []
    k = 0
    for i in range(rows_n):
        lines.append(f"H {i}")
        seq.append("H")
        if i % 2 == 1 and k < files_n:
            name, k_, size, sha = saved(run_id, k)
            lines.append(f"S {k_} {name} {size} {corrupt_sha or sha}")
            seq.append("S")
            k += 1
    for kk, where in refused_files:
        lines.append(f"XS {kk} oracle/f{kk}.bin buffer full; record refused {where}")
    acked_records = len(seq) if acked_records is None else acked_records
    logged = len(seq) + 2
    final = {"acked_records": acked_records, "saved": files_n,
             "refused_files": len(refused_files), "run_id": run_id, "status": "success",
             "handed": rows_n, "refused": 0, "acked_rows": seq[:acked_records].count("H"),
             "logged": logged, "acked": logged - unacked, "unacked": unacked, "spooled": 0,
             "refused_full": 0, "rejected": 0}
    (tmp_path / f"{run_id}.ledger").write_text("\n".join(lines + ["F " + json.dumps(final)])
                                               + "\n")


def delivered_files(run_id, ks, puts=1):
    out = {}
    for k in ks:
        name, _, _, sha = saved(run_id, k)
        out[name] = {"sha256": sha, "puts": [sha] * puts}
    return out


def files_verdict(tmp_path, files, rows=None, **kw):
    rows = rows or {"a": rows_of("a", 10), "live1": rows_of("live1", 4)}
    return judge.judge("T", "test", judge.read_ledgers(str(tmp_path)), rows, files=files, **kw)


def rows_of(run_id, n):
    return [(s, judge.expected_row(run_id, s)) for s in range(n)]


def test_expected_file_matches_the_c_producers_layout():
    data = judge.expected_file("pc0", 3, 5000)
    assert len(data) == 5000 and data.startswith(b"pc0/3/0\nddd")
    assert data[4096:4096 + 8] == b"pc0/3/1\n" and data[-1:] == b"e"
    assert {judge.oracle_file_size("pc0", k) for k in range(7)} == set(judge.FILE_SIZES)
    assert judge.oracle_file_size("pc0", 6, cap=1000) <= 1000


def test_clean_files_pass_and_are_counted(tmp_path):
    files_ledger(tmp_path, "a", 10, 5)
    files_ledger(tmp_path, "live1", 4, 2)
    good = {"a": delivered_files("a", range(5)), "live1": delivered_files("live1", range(2))}
    v = files_verdict(tmp_path, good)
    assert v.ok, v.report()
    assert ("files_saved=7 files_acked=7 files_delivered=7 files_dup=0 files_reput_window=0 "
            "files_refused=0 files_lost=0 files_phantom=0 files_corrupt=0") in v.line, v.line
    # The local sink's reading has no PUTs: same verdict.
    local = {r: {n: dict(d, puts=None) for n, d in fs.items()} for r, fs in good.items()}
    assert files_verdict(tmp_path, local).ok


def test_each_broken_file_rule_is_named(tmp_path):
    files_ledger(tmp_path, "a", 10, 5)
    files_ledger(tmp_path, "live1", 4, 2)
    good = {"a": delivered_files("a", range(5)), "live1": delivered_files("live1", range(2))}
    name2, _, _, sha2 = saved("a", 2)
    other = judge._sha(b"something else")
    cases = {
        "lost 1 acknowledged files: (a,oracle/f2.bin)":
            {**good, "a": delivered_files("a", [0, 1, 3, 4])},
        "never saved: (a,oracle/f9.bin)":
            {**good, "a": {**good["a"], "oracle/f9.bin": {"sha256": other, "puts": [other]}}},
        "never saved: (ghost,oracle/f0.bin)": {**good, "ghost": delivered_files("ghost", [0])},
        "uploaded more than once: (a,oracle/f2.bin)":
            {**good, "a": {**good["a"], name2: {"sha256": sha2, "puts": [sha2, sha2]}}},
        "other bytes: (a,oracle/f2.bin)":
            {**good, "a": {**good["a"], name2: {"sha256": other, "puts": [other]}}},
        # Stored right at last, but an earlier PUT stored other bytes.
        "other bytes: (a,oracle/f1.bin)":
            {**good, "a": {**good["a"], "oracle/f1.bin": {
                "sha256": saved("a", 1)[3], "puts": [other, saved("a", 1)[3]]}}},
        "liveness: live1's files": {**good, "live1": delivered_files("live1", [0])},
    }
    for want, files in cases.items():
        v = files_verdict(tmp_path, files)
        assert not v.ok and want in v.report(), (want, v.report())


def test_reput_in_the_kill_window_is_counted_not_failed(tmp_path):
    files_ledger(tmp_path, "a", 10, 5)
    files_ledger(tmp_path, "live1", 4, 2)
    name2, _, _, sha2 = saved("a", 2)
    files = {"a": {**delivered_files("a", range(5)), name2: {"sha256": sha2,
                                                             "puts": [sha2, sha2]}},
             "live1": delivered_files("live1", range(2))}
    v = files_verdict(tmp_path, files, reput_allowed={("a", name2)})
    assert v.ok and "files_dup=0 files_reput_window=1" in v.line, v.report()
    # Allowed once more, not twice more.
    files["a"][name2]["puts"] = [sha2] * 3
    v = files_verdict(tmp_path, files, reput_allowed={("a", name2)})
    assert not v.ok and "uploaded more than once: (a,oracle/f2.bin)" in v.report()
    # Two kills in the window: twice more.
    v = files_verdict(tmp_path, files, reput_allowed={("a", name2): 2})
    assert v.ok and "files_reput_window=1" in v.line, v.report()


def test_unacked_files_must_be_counted(tmp_path):
    # 10 rows and 5 files handed off; the last file (record 15 of 15) not
    # acknowledged nor delivered: fine with unacked 1, not with 0.
    files_ledger(tmp_path, "a", 10, 5, acked_records=14, unacked=1)
    files_ledger(tmp_path, "live1", 4, 2)
    files = {"a": delivered_files("a", range(4)), "live1": delivered_files("live1", range(2))}
    v = files_verdict(tmp_path, files)
    assert v.ok, v.report()
    assert "files_saved=7 files_acked=6" in v.line, v.line
    (tmp_path / "a.ledger").unlink()
    files_ledger(tmp_path, "a", 10, 5, acked_records=14, unacked=0)
    v = files_verdict(tmp_path, files)
    assert not v.ok and "1 files neither acknowledged nor delivered" in v.report(), v.report()


def test_refused_files_are_counted_and_never_delivered(tmp_path):
    files_ledger(tmp_path, "a", 10, 4, refused_files=[(4, "queue")])
    files_ledger(tmp_path, "live1", 4, 2)
    good = {"a": delivered_files("a", range(4)), "live1": delivered_files("live1", range(2))}
    v = files_verdict(tmp_path, good)
    assert v.ok and "files_refused=1" in v.line, v.report()
    v = files_verdict(tmp_path, {**good, "a": delivered_files("a", range(5))})
    assert not v.ok and "never saved: (a,oracle/f4.bin)" in v.report(), v.report()
    # A refused record must be in the library's count.
    (tmp_path / "a.ledger").unlink()
    files_ledger(tmp_path, "a", 10, 4, refused_files=[(4, "record")])
    v = files_verdict(tmp_path, good)
    assert not v.ok and "1 file records refused, library counted 0 + 0" in v.report()


def test_a_ledger_sha_that_is_not_the_expected_file_fails(tmp_path):
    files_ledger(tmp_path, "a", 10, 5, corrupt_sha="0" * 64)
    files_ledger(tmp_path, "live1", 4, 2)
    bad = {n: {"sha256": "0" * 64, "puts": ["0" * 64]} for n in delivered_files("a", range(5))}
    v = files_verdict(tmp_path, {"a": bad, "live1": delivered_files("live1", range(2))})
    assert not v.ok and "not the expected file" in v.report(), v.report()


def test_refusals_the_ledger_cannot_name_excuse_that_many_missing_files(tmp_path):
    # The Python package writes S for a file the library refused (it does not
    # raise): counted in refused_full, that many missing files are refused.
    files_ledger(tmp_path, "a", 10, 5)
    final_line = (tmp_path / "a.ledger").read_text().splitlines()[-1]
    final = json.loads(final_line[2:])
    files_ledger(tmp_path, "live1", 4, 2)
    files = {"a": delivered_files("a", [0, 1, 3, 4]), "live1": delivered_files("live1", range(2))}
    for refused_full, ok in [(0, False), (1, True)]:
        final["refused_full"] = refused_full
        text = (tmp_path / "a.ledger").read_text().splitlines()[:-1]
        (tmp_path / "a.ledger").write_text("\n".join(text + ["F " + json.dumps(final)]) + "\n")
        v = files_verdict(tmp_path, files)
        assert v.ok == ok, v.report()
        if ok:
            assert "files_refused=1 files_lost=0" in v.line, v.line
        else:
            assert "lost 1 acknowledged files: (a,oracle/f2.bin)" in v.report()


def test_a_killed_producers_ledger(tmp_path):
    # No finish line: nothing acknowledged, everything unacked; the row and the
    # file it was handing off at the kill may be delivered, nothing past them.
    lines = [f"H {i}" for i in range(6)]
    name, k, size, sha = saved("kc0", 0)
    lines.insert(2, f"S {k} {name} {size} {sha}")
    (tmp_path / "kc0.ledger").write_text("\n".join(lines) + "\n")
    files_ledger(tmp_path, "live1", 4, 2)
    live = delivered_files("live1", range(2))

    def v(rows, files):
        return judge.judge("T", "test", judge.read_ledgers(str(tmp_path), killed={"kc0"}),
                           {"kc0": rows_of("kc0", rows), "live1": rows_of("live1", 4)},
                           files={"kc0": delivered_files("kc0", files), "live1": live})
    assert v(0, []).ok and v(6, [0]).ok
    ok = v(7, [0, 1])  # the in-flight row 6 and file 1
    assert ok.ok and "unacked_counted=7" in ok.line, ok.report()
    bad = v(8, [0, 1, 2])
    assert not bad.ok and "never handed off: (kc0,7)" in bad.report(), bad.report()
    assert "never saved: (kc0,oracle/f2.bin)" in bad.report(), bad.report()
    # Without killed=, a ledger with no finish line is an error.
    try:
        judge.read_ledgers(str(tmp_path))
    except AssertionError as e:
        assert "no finish line" in str(e)
    else:
        raise AssertionError("an unfinished ledger was accepted")
