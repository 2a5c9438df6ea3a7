"""The package's own logic, in this process: config files, value conversion,
argument checks, disabled runs. Nothing here needs an agent."""
import math

import pytest

import trackd
from trackd import _config_file, _values


def test_yaml_config_file(tmp_path):
    """YAML as PyYAML (so wandb) reads it: YAML 1.1 scalars."""
    p = tmp_path / "config.yaml"
    p.write_text("""\
# training setup
---
epochs: 10
learning_rate: 0.01   # a comment
name: "adam w"
quoted 'key': 'it''s'
opt:
  kind: adam
  betas:
    b1: 0.9
    b2: .999
  nesterov: True
  decay: off
seed: 0x2a
mode: 0o17
warmup:
url: http://host:8080/path
inf: -.inf
'True': yes
'null': '~'
""")
    assert _config_file.load(p) == {
        "epochs": 10, "learning_rate": 0.01, "name": "adam w", "quoted 'key'": "it's",
        "opt": {"kind": "adam", "betas": {"b1": 0.9, "b2": 0.999}, "nesterov": True,
                "decay": False},
        "seed": 42, "mode": "0o17", "warmup": None, "url": "http://host:8080/path",
        "inf": -math.inf, "True": True, "null": "~"}


def test_yaml_what_the_subset_parser_refused():
    """Lists of collections, flow mappings, anchors and merges, block scalars:
    all of YAML that the safe loader reads; dates stay text."""
    assert _config_file.parse_yaml(
        "layers:\n- - 3\n  - 3\n- k: v\nopt: {name: adam, betas: [0.9, 0.95]}\n"
        "base: &b\n  lr: 0.1\n  wd: 0.0\nft:\n  <<: *b\n  lr: 0.01\n"
        "notes: |\n  two\n  lines\nwhen: 2024-01-01\nat: 2024-01-01 10:00:00\n") == {
        "layers": [[3, 3], {"k": "v"}], "opt": {"name": "adam", "betas": [0.9, 0.95]},
        "base": {"lr": 0.1, "wd": 0.0}, "ft": {"lr": 0.01, "wd": 0.0},
        "notes": "two\nlines\n", "when": "2024-01-01", "at": "2024-01-01 10:00:00"}
    assert _config_file.parse_yaml("") == {}
    assert _config_file.parse_yaml("# nothing\n") == {}


def test_yaml_lists_of_scalars():
    """W&B configs hold lists: block sequences (indented or at the key's
    indent, as PyYAML writes them) and flow lists of scalars."""
    assert _config_file.parse_yaml(
        "lr: 0.1\nbetas: [0.9, 0.999]\nlayers:\n- 64\n- 128\nopt:\n  names:\n"
        "    - \"a, b\"\n    - 'c'\n    - null\n  eps: 1.0e-08\nempty: []\nafter: 1\n") == {
        "lr": 0.1, "betas": [0.9, 0.999], "layers": [64, 128],
        "opt": {"names": ["a, b", "c", None], "eps": 1e-08}, "empty": [], "after": 1}


@pytest.mark.parametrize("text, message", [
    ("a: 1\na: 2\n", "f.yaml:2:1: duplicate key 'a'"),
    ("o:\n  x: 1\n  y: 2\n  x: 3\n", "f.yaml:4:3: duplicate key 'x'"),
    ("l:\n- k: 1\n  k: 2\n", "f.yaml:3:3: duplicate key 'k'"),
    ("1: a\n", "f.yaml:1:1: key '1' is read as int, not a string: quote it"),
    ("o:\n  True: a\n", "f.yaml:2:3: key 'True' is read as bool, not a string: quote it"),
    ("[1]: a\n", "f.yaml:1:1: a key must be a string, not a list"),
    ("- 1\n", "f.yaml: the config must be a YAML mapping (key: value), not a list"),
    ("just words\n", "f.yaml: the config must be a YAML mapping (key: value), not a str"),
    ("a: [1, 2\n", "f.yaml:2:1: expected ',' or ']'"),
    ("a:\n    b: 1\n  c: 2\n", "f.yaml:3:3: expected <block end>"),
    ("\ta: 1\n", "f.yaml:1:1: found character '\\t' that cannot start any token"),
    ("a: 1\n---\nb: 2\n", "f.yaml:2:1: but found another document"),
    ("a: *nope\n", "f.yaml:1:4: found undefined alias 'nope'"),
    ("a: 'x\n", "f.yaml:2:1: found unexpected end of stream"),
    ("a: 1\nb: x\x07\n", "f.yaml:2:5: unacceptable character #x0007"),
    ("a: !!python/object/apply:os.system [echo]\n",
     "f.yaml:1:4: could not determine a constructor for the tag"),
])
def test_yaml_errors_say_where(text, message):
    with pytest.raises(_config_file.ConfigFileError) as e:
        _config_file.parse_yaml(text, "f.yaml")
    assert str(e.value).startswith(message), str(e.value)


def test_yaml_loader_leaves_pyyaml_alone():
    """The duplicate-key rule is the package's own: yaml.safe_load is unchanged."""
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load("a: 1\na: 2\n1: x\n") == {"a": 2, 1: "x"}


def test_json_config_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"epochs": 3, "opt": {"lr": 1e-3}}')
    assert _config_file.load(p) == {"epochs": 3, "opt": {"lr": 0.001}}
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(_config_file.ConfigFileError):
        _config_file.load(tmp_path / "list.json")
    (tmp_path / "bad.json").write_text('{"a": 1,\n "b": }')
    with pytest.raises(_config_file.ConfigFileError) as e:
        _config_file.load(tmp_path / "bad.json")
    assert str(e.value).startswith(f"{tmp_path / 'bad.json'}:2:7: ")


class FakeNumpyScalar:
    """Duck-typed as numpy does it (the real numpy is not installed here)."""

    def __init__(self, v):
        self.v = v
        self.ndim = 0

    def item(self):
        return self.v


FakeNumpyScalar.__module__ = "numpy"


class FakeNumpyArray(FakeNumpyScalar):
    def __init__(self):
        super().__init__(None)
        self.ndim = 1


FakeNumpyArray.__module__ = "numpy"


def test_values_convert():
    items, n, keep = _values.to_items({"f": 1.5, "i": -(1 << 63), "b": True, "s": "é",
                                       "m": {"x": {"y": 2}}, "np": FakeNumpyScalar(0.25),
                                       "npb": FakeNumpyScalar(False)})
    assert n == 7
    assert (items[0].type, items[0].v.d) == (_values._lib.TD_DOUBLE, 1.5)
    assert (items[1].type, items[1].v.i) == (_values._lib.TD_INT, -(1 << 63))
    assert (items[2].type, items[2].v.b) == (_values._lib.TD_BOOL, True)
    assert (items[3].type, items[3].v.s) == (_values._lib.TD_STRING, "é".encode())
    assert items[4].type == _values._lib.TD_MAP and items[4].v.map.n == 1
    inner = items[4].v.map.items[0]
    assert inner.key == b"x" and inner.v.map.items[0].v.i == 2
    assert (items[5].type, items[5].v.d) == (_values._lib.TD_DOUBLE, 0.25)
    assert (items[6].type, items[6].v.b) == (_values._lib.TD_BOOL, False)


@pytest.mark.parametrize("data, path", [
    ({"layers": {1, 2}}, "'layers'"),
    ({"opt": {"sched": [1, object()]}}, "'opt.sched[1]'"),
    ({"obj": object()}, "'obj'"),
    ({"arr": FakeNumpyArray()}, "'arr'"),
    ({"c": 1j}, "'c'"),
])
def test_unsupported_values_name_the_key(data, path):
    with pytest.raises(trackd.InvalidValueError) as e:
        _values.to_items(data)
    assert path in str(e.value)
    assert isinstance(e.value, TypeError) and isinstance(e.value, trackd.TrackdError)


def test_too_big_int_and_bad_keys():
    with pytest.raises(ValueError, match="'big'"):
        _values.to_items({"big": 1 << 63})
    with pytest.raises(TypeError, match="not a str"):
        _values.to_items({1: 2})
    with pytest.raises(TypeError):
        _values.to_items([1, 2])


def test_init_checks_arguments():
    with pytest.raises(ValueError, match="mode"):
        trackd.init(mode="sometimes")
    with pytest.raises(ValueError, match="resume"):
        trackd.init(resume="auto", mode="disabled")
    with pytest.raises(TypeError, match="config"):
        trackd.init(config=42, mode="disabled")
    with pytest.raises(TypeError, match="tags"):
        trackd.init(tags=[1], mode="disabled")


def test_disabled_run_is_a_local_no_op():
    run = trackd.init(project="p", config={"lr": 0.1}, mode="disabled", name="quiet")
    assert trackd.run is run
    trackd.log({"x": 1})  # the module-level call reaches the no-op run
    assert len(run.id) == 8 and run.name == "quiet" and run.dir is None
    run.log({"betas": (0.9, 0.999), "none": None})  # recorded nowhere, but checked
    run.config["epochs"] = 3
    run.config.update({"bs": 32})
    assert dict(run.config) == {"lr": 0.1, "epochs": 3, "bs": 32} and run.config.lr == 0.1
    run.summary["best"] = 1
    run.define_metric("loss", summary="min")
    run.name = "renamed"
    with run:
        pass
    assert run.finished and trackd.run is None
    run.finish()
    with pytest.raises(ValueError):
        run.define_metric("x", summary="median")


def nest(levels, inner=1):
    """`inner` inside `levels` lists: its depth is levels + 1 (the key is 1)."""
    v = inner
    for _ in range(levels):
        v = [v]
    return v


def test_lists_tuples_none_convert():
    items, n, keep = _values.to_items({"betas": (0.9, 0.999), "none": None,
                                       "mixed": [1, "a", None, [True, {"k": []}]]})
    assert n == 3
    L = _values._lib
    assert items[0].type == L.TD_LIST and items[0].v.list.n == 2
    assert [items[0].v.list.items[i].v.d for i in range(2)] == [0.9, 0.999]
    assert items[1].type == L.TD_NULL
    mixed = items[2].v.list
    assert [mixed.items[i].type for i in range(4)] == [L.TD_INT, L.TD_STRING, L.TD_NULL,
                                                        L.TD_LIST]
    inner = mixed.items[3].v.list
    assert inner.items[0].v.b is True and inner.items[1].type == L.TD_MAP
    assert inner.items[1].v.map.items[0].type == L.TD_LIST
    assert inner.items[1].v.map.items[0].v.list.n == 0


@pytest.mark.parametrize("length, ok", [(4095, True), (4096, True), (4097, False)])
def test_list_length_limit(length, ok):
    data = {"v": [0] * length}
    if ok:
        _values.to_items(data)
    else:
        with pytest.raises(trackd.InvalidValueError, match=r"key 'v': list of 4097 elements, "
                                                           r"limit 4096"):
            _values.to_items(data)


@pytest.mark.parametrize("levels, ok", [(14, True), (15, True), (16, False)])
def test_nesting_depth_counts_lists(levels, ok):
    # The scalar sits at depth levels + 1; the limit is 16.
    for data in ({"v": nest(levels)}, {"v": nest(levels - 1, {"k": 1})}):
        if ok:
            _values.to_items(data)
        else:
            with pytest.raises(trackd.InvalidValueError, match="nesting depth exceeds 16"):
                _values.to_items(data)


def test_items_limit_counts_list_elements():
    _values.to_items({"a": [0] * 4096, "b": [0] * 4096, "c": [0] * (10000 - 8192 - 3)})
    with pytest.raises(trackd.InvalidValueError, match="more than 10000 items"):
        _values.to_items({"a": [0] * 4096, "b": [0] * 4096, "c": [0] * (10000 - 8192 - 2)})


def test_strings_with_nul_or_lone_surrogates_are_refused_clearly():
    with pytest.raises(trackd.InvalidValueError) as e:
        _values.to_items({"x": {"y": "a\x00b"}})
    assert str(e.value) == ("trackd: key 'x.y': string contains a NUL character (U+0000) at "
                            "position 1, which trackd cannot store")
    with pytest.raises(trackd.InvalidValueError) as e:
        _values.to_items({"x": "abc\udc80"})
    assert str(e.value) == ("trackd: key 'x': string is not valid UTF-8 (lone surrogate at "
                            "position 3)")
    with pytest.raises(trackd.InvalidValueError, match="key contains a NUL"):
        _values.to_items({"a\x00": 1})
    with pytest.raises(trackd.InvalidValueError, match="key is not valid UTF-8"):
        _values.to_items({"\ud800": 1})
    with pytest.raises(trackd.InvalidValueError, match="key is empty"):
        _values.to_items({"": 1})


@pytest.mark.parametrize("call", ["init", "log", "config", "summary"])
def test_disabled_refuses_what_online_refuses(call):
    bad = {"ok": [1, None], "bad": "a\x00b"}
    expected = "trackd: key 'bad': string contains a NUL character"
    if call == "init":
        with pytest.raises(trackd.InvalidValueError, match=expected):
            trackd.init(config=bad, mode="disabled")
        return
    run = trackd.init(mode="disabled")
    try:
        with pytest.raises(trackd.InvalidValueError, match=expected):
            if call == "log":
                run.log(bad)
            elif call == "config":
                run.config.update(bad)
            else:
                run.summary.update(bad)
        with pytest.raises(trackd.InvalidValueError, match="list of 4097 elements"):
            run.log({"long": list(range(4097))})
    finally:
        run.finish()


def test_numpy_arrays():
    np = pytest.importorskip("numpy")
    small, big = np.arange(32, dtype=np.float32), np.arange(33)
    row = _values.plain({"small": small, "big": big, "s": np.float64(0.5),
                         "nan": np.array([1.0, np.nan] * 20)}, in_row=True)
    assert row["small"] == [float(x) for x in range(32)] and row["s"] == 0.5
    counts, edges = np.histogram(big, bins=32)
    assert row["big"] == {"_type": "histogram", "values": counts.tolist(),
                          "bins": edges.tolist()}
    assert len(row["big"]["values"]) == 32 and len(row["big"]["bins"]) == 33
    assert sum(row["nan"]["values"]) == 20  # finite elements only
    # In config and summary an array stays a list, whatever its size.
    assert _values.plain({"a": big})["a"] == list(range(33))
    items, n, keep = _values.to_items({"big": big}, in_row=True)
    assert items[0].type == _values._lib.TD_MAP
    items, n, keep = _values.to_items({"big": big, "m": np.ones((2, 2))})
    assert items[0].type == _values._lib.TD_LIST and items[0].v.list.n == 33
    assert items[1].v.list.items[0].type == _values._lib.TD_LIST


def test_text_arguments_with_nul_or_lone_surrogates_are_refused_clearly():
    from trackd import _lib
    assert _lib.text("é") == "é".encode() and _lib.text(None) is None
    with pytest.raises(trackd.InvalidValueError) as e:
        _lib.text("a\x00b", "init: project")
    assert str(e.value) == "trackd: init: project: contains a NUL character (U+0000) at position 1"
    with pytest.raises(trackd.InvalidValueError) as e:
        _lib.text("ab\ud800", "name")
    assert str(e.value) == "trackd: name: not valid UTF-8 (lone surrogate at position 2)"


def test_the_package_needs_pyyaml_only_for_a_yaml_config_file(tmp_path):
    """A venv made without the system's site-packages has no PyYAML: the package
    still imports and records (JSON configs too); a YAML config file says what it
    needs instead of failing at import."""
    import os
    import subprocess
    import sys
    (tmp_path / "c.yaml").write_text("lr: 0.1\n")
    (tmp_path / "c.json").write_text('{"lr": 0.1}')
    code = f"""
import sys
sys.modules["yaml"] = None   # as if PyYAML were not installed
import trackd
from trackd import _config_file
assert _config_file.load({str(tmp_path / "c.json")!r}) == {{"lr": 0.1}}
try:
    _config_file.load({str(tmp_path / "c.yaml")!r})
except _config_file.ConfigFileError as e:
    print(e)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "needs PyYAML" in r.stdout and "python3-yaml" in r.stdout
