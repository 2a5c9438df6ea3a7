"""Python values → arrays of td_item for libtrackd.

Accepted: bool, int (64-bit), float, str, and mappings of those (nested maps
stay nested). numpy scalars and 0-d arrays are accepted when numpy is installed,
without importing it: a value whose type lives in the ``numpy`` module and has
``.item()`` is converted through ``.item()``. Anything else raises TypeError
naming the key (as a dotted path for nested keys).
"""
from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Any, List, Tuple

from . import _lib

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# Keys repeat from row to row; encoding them once saves time in log().
_key_cache: dict = {}
_KEY_CACHE_MAX = 4096


def _key_bytes(key: Any, path: str) -> bytes:
    b = _key_cache.get(key)
    if b is not None:
        return b
    if not isinstance(key, str):
        raise TypeError(f"trackd: key {path or key!r} is not a str but {type(key).__name__}")
    b = key.encode("utf-8", "surrogatepass")
    if len(_key_cache) < _KEY_CACHE_MAX:
        _key_cache[key] = b
    return b


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "item")


def _unsupported(path: str, value: Any, why: str = "") -> TypeError:
    return TypeError(f"trackd: cannot record {path!r}: "
                     f"{why or 'values of type ' + type(value).__name__ + ' are not supported'}"
                     " (use int, float, bool, str or a dict of those)")


def _fill(item: _lib.TdItem, value: Any, path: str, keep: List[Any]) -> None:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        item.type = _lib.TD_BOOL
        item.v.b = value
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"trackd: cannot record {path!r}: {value} does not fit in 64 bits")
        item.type = _lib.TD_INT
        item.v.i = value
    elif isinstance(value, float):
        item.type = _lib.TD_DOUBLE
        item.v.d = value
    elif isinstance(value, str):
        b = value.encode("utf-8")
        keep.append(b)
        item.type = _lib.TD_STRING
        item.v.s = b
    elif isinstance(value, Mapping):
        arr = _build(value, path, keep)
        item.type = _lib.TD_MAP
        item.v.map.items = arr
        item.v.map.n = len(value)
    elif _is_numpy(value):
        if getattr(value, "ndim", 0) != 0:
            raise _unsupported(path, value, f"numpy arrays with {value.ndim} dimensions are "
                                            "not supported, only scalars and 0-d arrays")
        plain = value.item()
        if _is_numpy(plain) or not isinstance(plain, (bool, int, float, str)):
            raise _unsupported(path, value, f"numpy value of type {type(plain).__name__}")
        _fill(item, plain, path, keep)
    else:
        raise _unsupported(path, value)


def _build(data: Mapping, prefix: str, keep: List[Any]):
    arr = (_lib.TdItem * max(len(data), 1))()
    keep.append(arr)
    for i, (key, value) in enumerate(data.items()):
        path = f"{prefix}.{key}" if prefix else str(key)
        item = arr[i]
        kb = _key_bytes(key, path)
        keep.append(kb)
        item.key = kb
        _fill(item, value, path, keep)
    return arr


def to_items(data: Mapping) -> Tuple[Any, int, List[Any]]:
    """(td_item array, count, objects to keep alive during the call)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"trackd: expected a dict, got {type(data).__name__}")
    keep: List[Any] = []
    arr = _build(data, "", keep)
    return arr, len(data), keep


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it stands for (for local views)."""
    if _is_numpy(value) and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


NULL_ITEMS = ctypes.POINTER(_lib.TdItem)()
