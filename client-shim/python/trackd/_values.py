"""Python values → arrays of td_item for libtrackd.

Accepted, as W&B accepts them: bool, int (64-bit), float, str, None (JSON
null), lists and tuples (JSON arrays, any element types, nested), and mappings
of those (nested maps stay nested). numpy is handled when installed, without
importing it: a value whose type lives in the ``numpy`` module is converted —
scalars and 0-d arrays through ``.item()``; arrays in config and summary
through ``.tolist()``; arrays in a history row as W&B's
``maybe_compress_history`` does: more than 32 elements become a 32-bin
histogram ``{"_type": "histogram", "values": [32 counts], "bins": [33 edges]}``
(of the finite elements), smaller ones a list.

Every value is checked here against the protocol's default limits
(trackd/v1/limits.h, mirrored below), so a disabled run refuses exactly what an
online one does, and every refusal is an InvalidValueError naming the key (a
dotted path, with list positions: ``opt.betas[1]``). libtrackd checks again,
against the agent's limits when they are lower.
"""
from __future__ import annotations

import ctypes
import sys
from collections.abc import Mapping
from typing import Any, List, Tuple

from . import _lib, _media
from .errors import InvalidValueError

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# trackd/v1/limits.h defaults (TRACKD_DEFAULT_MAX_*).
MAX_ITEMS_PER_RECORD = 10000  # nested items and list elements included
MAX_KEY_BYTES = 256
MAX_STRING_BYTES = 1 << 20
MAX_NESTING_DEPTH = 16  # 1 = flat; maps and lists
MAX_LIST_LENGTH = 4096

# W&B's maybe_compress_history: arrays above this many elements → histogram.
HISTOGRAM_THRESHOLD = 32
HISTOGRAM_BINS = 32

# Keys repeat from row to row; encoding them once saves time in log().
_key_cache: dict = {}
_KEY_CACHE_MAX = 4096


def _refuse(path: str, problem: str) -> InvalidValueError:
    return InvalidValueError(f"trackd: key {path!r}: {problem}")


def _encode(text: str, path: str, what: str) -> bytes:
    # NUL: the C API and the agent's strings are NUL-terminated, so it would be
    # cut there; refusing is better than storing a shorter string silently.
    nul = text.find("\x00")
    if nul >= 0:
        raise _refuse(path, f"{what} contains a NUL character (U+0000) at position {nul}, "
                            "which trackd cannot store")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _refuse(path, f"{what} is not valid UTF-8 (lone surrogate at position "
                            f"{e.start})") from None


def _key_bytes(key: Any, path: str) -> bytes:
    b = _key_cache.get(key)
    if b is not None:
        return b
    if not isinstance(key, str):
        raise InvalidValueError(
            f"trackd: key {path or key!r} is not a str but {type(key).__name__}")
    if not key:
        raise _refuse(path, "key is empty")
    b = _encode(key, path, "key")
    if len(b) > MAX_KEY_BYTES:
        raise _refuse(path, f"key is longer than {MAX_KEY_BYTES} bytes")
    if len(_key_cache) < _KEY_CACHE_MAX:
        _key_cache[key] = b
    return b


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "item")


def _unsupported(path: str, value: Any, why: str = "") -> InvalidValueError:
    return _refuse(path, f"{why or 'values of type ' + type(value).__name__ + ' are not supported'}"
                         " (use int, float, bool, str, None, or lists and dicts of those)")


def _histogram(array: Any, path: str) -> dict:
    """W&B's wandb.Histogram(np_histogram=np.histogram(array, bins=32)).to_json()."""
    np = sys.modules.get("numpy")
    if np is None:
        raise _unsupported(path, array)
    try:
        flat = np.asarray(array, dtype=float).ravel()
    except (TypeError, ValueError):
        raise _unsupported(path, array, f"numpy array of dtype {array.dtype} cannot be a "
                                        "histogram") from None
    # numpy refuses a range with NaN or ±inf; a training loop must not die of
    # one bad gradient, so the histogram counts the finite elements.
    counts, edges = np.histogram(flat[np.isfinite(flat)], bins=HISTOGRAM_BINS)
    return {"_type": "histogram", "values": counts.tolist(), "bins": edges.tolist()}


def numpy_plain(value: Any, path: str, in_row: bool) -> Any:
    """A numpy value as the plain Python value trackd records."""
    if getattr(value, "ndim", 0) == 0:
        plain = value.item()
        if _is_numpy(plain) or not isinstance(plain, (bool, int, float, str)):
            raise _unsupported(path, value, f"numpy value of type {type(plain).__name__}")
        return plain
    if in_row and getattr(value, "size", 0) > HISTOGRAM_THRESHOLD:
        return _histogram(value, path)
    if not hasattr(value, "tolist"):
        raise _unsupported(path, value)
    return value.tolist()


def _count(ctx: List[Any], n: int, path: str) -> None:
    # ctx = [values so far, in_row]: a list, not an object, as it is made per call.
    ctx[0] += n
    if ctx[0] > MAX_ITEMS_PER_RECORD:
        raise _refuse(path, f"more than {MAX_ITEMS_PER_RECORD} items in one record "
                            "(nested items and list elements included)")


def _fill(item: _lib.TdItem, value: Any, path: str, depth: int, keep: List[Any],
          ctx: List[Any]) -> None:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        item.type = _lib.TD_BOOL
        item.v.b = value
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _refuse(path, f"{value} does not fit in 64 bits")
        item.type = _lib.TD_INT
        item.v.i = value
    elif isinstance(value, float):
        item.type = _lib.TD_DOUBLE
        item.v.d = value
    elif isinstance(value, str):
        b = _encode(value, path, "string")
        if len(b) > MAX_STRING_BYTES:
            raise _refuse(path, f"string is longer than {MAX_STRING_BYTES} bytes")
        keep.append(b)
        item.type = _lib.TD_STRING
        item.v.s = b
    elif value is None:
        item.type = _lib.TD_NULL
    elif (isinstance(value, (list, tuple)) and value and depth == 1 and ctx[1] and
          all(isinstance(v, _media.Image) for v in value)):
        m = _media.images_td_media(value, keep)
        keep.append(m)
        item.type = _lib.TD_MEDIA
        item.v.media = ctypes.pointer(m)
    elif isinstance(value, Mapping):
        _nested(value, path, depth)
        item.type = _lib.TD_MAP
        item.v.map.items = _build(value, path, depth + 1, keep, ctx)
        item.v.map.n = len(value)
    elif isinstance(value, (list, tuple)):
        _nested(value, path, depth)
        if len(value) > MAX_LIST_LENGTH:
            raise _refuse(path, f"list of {len(value)} elements, limit {MAX_LIST_LENGTH}")
        item.type = _lib.TD_LIST
        item.v.list.items = _build_list(value, path, depth + 1, keep, ctx)
        item.v.list.n = len(value)
    elif isinstance(value, _media.Media):
        if depth != 1 or not ctx[1]:
            raise _refuse(path, f"{type(value).__name__} values go at the top level of a "
                                "log() row")
        m = value._td_media(keep)
        keep.append(m)
        item.type = _lib.TD_MEDIA
        item.v.media = ctypes.pointer(m)
    elif _is_numpy(value):
        _fill(item, numpy_plain(value, path, ctx[1]), path, depth, keep, ctx)
    else:
        raise _unsupported(path, value)


def _nested(value: Any, path: str, depth: int) -> None:
    # As libtrackd: a non-empty map or list puts its contents one level down.
    if len(value) > 0 and depth >= MAX_NESTING_DEPTH:
        raise _refuse(path, f"nesting depth exceeds {MAX_NESTING_DEPTH}")


def _build(data: Mapping, prefix: str, depth: int, keep: List[Any], ctx: List[Any]):
    _count(ctx, len(data), prefix or "(top level)")
    arr = (_lib.TdItem * max(len(data), 1))()
    keep.append(arr)
    for i, (key, value) in enumerate(data.items()):
        path = f"{prefix}.{key}" if prefix else str(key)
        item = arr[i]
        kb = _key_bytes(key, path)
        keep.append(kb)
        item.key = kb
        _fill(item, value, path, depth, keep, ctx)
    return arr


def _build_list(data: Any, prefix: str, depth: int, keep: List[Any], ctx: List[Any]):
    _count(ctx, len(data), prefix)
    arr = (_lib.TdItem * max(len(data), 1))()
    keep.append(arr)
    for i, value in enumerate(data):
        _fill(arr[i], value, f"{prefix}[{i}]", depth, keep, ctx)
    return arr


def to_items(data: Mapping, in_row: bool = False) -> Tuple[Any, int, List[Any]]:
    """(td_item array, count, objects to keep alive during the call). in_row:
    a history row (numpy arrays may become histograms)."""
    if not isinstance(data, Mapping):
        raise InvalidValueError(f"trackd: expected a dict, got {type(data).__name__}")
    keep: List[Any] = []
    arr = _build(data, "", 1, keep, [0, in_row])
    return arr, len(data), keep


_PLAIN = frozenset((float, int, str, bool, type(None)))


def plain(value: Any, in_row: bool = False, path: str = "") -> Any:
    """What trackd records for a value, as Python (for local views): numpy
    converted, tuples as lists."""
    if type(value) in _PLAIN:  # the common case first: log() calls this per value
        return value
    if _is_numpy(value):
        return plain(numpy_plain(value, path, in_row), in_row, path)
    if isinstance(value, Mapping):
        return {k: plain(v, in_row, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, in_row, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def is_structure(value: Any) -> bool:
    """A map, list or null: min / max / mean summaries ignore these."""
    return value is None or isinstance(value, (Mapping, list, tuple))


NULL_ITEMS = ctypes.POINTER(_lib.TdItem)()

