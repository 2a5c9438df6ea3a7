"""ctypes bindings of libtrackd (client-shim/include/trackd/trackd.h).

The library is loaded on first use, not at import, so that a disabled run never
touches it. Where from, in order:

1. the environment variable TRACKD_LIB (a path to libtrackd.so*);
2. an installed package (one with ``trackd/_install.py``, which the install rules
   and scripts/install.sh write): the library installed beside it, at the path
   that file gives relative to the package directory (so an installed tree moved
   or extracted under another root still loads its own library); a source
   checkout instead tries its build trees
   (``<repo>/build*/client-shim/libtrackd.so``, the most recently built one);
3. the library of an installed prefix the package was not installed with (a copy
   of the package in a venv, say): the interpreter's prefix (a venv the C parts
   were installed into), then the prefix of the ``trackd`` agent on PATH — each
   ``PREFIX/lib`` and ``PREFIX/lib/<multiarch>``;
4. the loader's search: ``ctypes.util.find_library("trackd")``, then the
   standard names ``libtrackd.so.0`` and ``libtrackd.so``.

The structures below mirror the C declarations field for field; ``check_layout``
verifies the options struct against td_run_options_init's defaults at load time,
so a header change that is not mirrored here fails loudly instead of corrupting
memory.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import shutil
import sys
import sysconfig
import threading
from typing import Optional

from .errors import InvalidValueError

# ---- C declarations ----------------------------------------------------------

TD_OK = 0
TD_ERR_INVALID = -1
TD_ERR_NOMEM = -2
TD_ERR_FULL = -3
TD_ERR_CLOSED = -4
TD_ERR_TIMEOUT = -5
TD_ERR_TRANSPORT = -6
TD_ERR_REJECTED = -7
TD_ERR_NOT_FOUND = -8
TD_ERR_CORRUPT = -9

TD_DOUBLE, TD_INT, TD_BOOL, TD_STRING, TD_MAP, TD_LIST, TD_NULL, TD_MEDIA = range(8)
# td_media_kind
TD_MEDIA_PNG, TD_MEDIA_JPEG, TD_MEDIA_PIXELS, TD_MEDIA_TABLE, TD_MEDIA_HISTOGRAM, \
    TD_MEDIA_IMAGES = range(1, 7)
TD_STEP_AUTO = -1

MODES = {"online": 0, "offline": 1, "disabled": 2}
RESUMES = {None: 0, "never": 0, "allow": 1, "must": 2}
SUMMARIES = {None: 0, "last": 0, "min": 1, "max": 2, "mean": 3, "none": 4}
TD_EXIT_FINISHED, TD_EXIT_KILLED = 0, 1


class TdItem(ctypes.Structure):
    pass


class _MapRef(ctypes.Structure):
    _fields_ = [("items", ctypes.POINTER(TdItem)), ("n", ctypes.c_size_t)]


class TdMedia(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("len", ctypes.c_size_t),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("channels", ctypes.c_uint32),
        ("caption", ctypes.c_char_p),
        ("ncols", ctypes.c_uint32),
        ("nrows", ctypes.c_uint32),
        ("values", ctypes.POINTER(ctypes.c_double)),
        ("n_values", ctypes.c_size_t),
        ("counts", ctypes.POINTER(ctypes.c_double)),
        ("edges", ctypes.POINTER(ctypes.c_double)),
        ("num_bins", ctypes.c_uint32),
        ("images", ctypes.c_void_p),
        ("n_images", ctypes.c_size_t),
    ]


class _Value(ctypes.Union):
    _fields_ = [("d", ctypes.c_double), ("i", ctypes.c_int64), ("b", ctypes.c_bool),
                ("s", ctypes.c_char_p), ("map", _MapRef), ("list", _MapRef),
                ("media", ctypes.POINTER(TdMedia))]


TdItem._fields_ = [("key", ctypes.c_char_p), ("type", ctypes.c_int), ("v", _Value)]


class TdRunOptions(ctypes.Structure):
    _fields_ = [
        ("project", ctypes.c_char_p),
        ("entity", ctypes.c_char_p),
        ("run_id", ctypes.c_char_p),
        ("display_name", ctypes.c_char_p),
        ("notes", ctypes.c_char_p),
        ("group", ctypes.c_char_p),
        ("job_type", ctypes.c_char_p),
        ("tags", ctypes.POINTER(ctypes.c_char_p)),
        ("n_tags", ctypes.c_size_t),
        ("config", ctypes.POINTER(TdItem)),
        ("n_config", ctypes.c_size_t),
        ("mode", ctypes.c_int),
        ("resume", ctypes.c_int),
        ("socket_url", ctypes.c_char_p),
        ("max_buffer_bytes", ctypes.c_size_t),
        ("batch_bytes", ctypes.c_size_t),
        ("flush_interval_ms", ctypes.c_uint32),
        ("print_footer", ctypes.c_bool),
        ("capture_console", ctypes.c_bool),
        ("handle_signals", ctypes.c_bool),
        ("spool_dir", ctypes.c_char_p),
        ("max_spool_bytes", ctypes.c_size_t),
        ("python_version", ctypes.c_char_p),
        ("disable_environment", ctypes.c_bool),
        # Slack, so that td_run_options_init never writes past our buffer
        # even if the C struct grew; check_layout catches a real mismatch.
        ("_reserved", ctypes.c_uint8 * 64),
    ]


class TdFinishReport(ctypes.Structure):
    _fields_ = [
        ("records_logged", ctypes.c_uint64),
        ("records_acked", ctypes.c_uint64),
        ("records_unacked", ctypes.c_uint64),
        ("records_refused_full", ctypes.c_uint64),
        ("records_rejected", ctypes.c_uint64),
        ("records_spooled", ctypes.c_uint64),
        ("last_error", ctypes.c_char * 256),
    ]


# td_query_kind
TD_QUERY_RUNS, TD_QUERY_RUN, TD_QUERY_HISTORY, TD_QUERY_RENAME, TD_QUERY_FILES = 1, 2, 3, 4, 5
TD_QUERY_ARTIFACTS, TD_QUERY_ARTIFACT = 6, 7


class TdQuery(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("run", ctypes.c_char_p),
        ("project", ctypes.c_char_p),
        ("state", ctypes.c_char_p),
        ("keys", ctypes.POINTER(ctypes.c_char_p)),
        ("n_keys", ctypes.c_size_t),
        ("from_line", ctypes.c_uint64),
        ("max_lines", ctypes.c_uint64),
        ("name", ctypes.c_char_p),
        ("offset", ctypes.c_uint64),
        ("limit", ctypes.c_uint64),
        ("stream", ctypes.c_char_p),
        ("set_tags", ctypes.c_bool),
        ("tags", ctypes.POINTER(ctypes.c_char_p)),
        ("n_tags", ctypes.c_size_t),
        ("notes", ctypes.c_char_p),
        ("type", ctypes.c_char_p),
        ("artifact", ctypes.c_char_p),
    ]


_P = ctypes.c_void_p
_ITEMS = ctypes.POINTER(TdItem)
_SIGNATURES = {
    "td_run_options_init": (None, [ctypes.POINTER(TdRunOptions)]),
    "td_init": (ctypes.c_int, [ctypes.POINTER(TdRunOptions), ctypes.POINTER(_P)]),
    "td_run_id": (ctypes.c_char_p, [_P]),
    "td_log": (ctypes.c_int, [_P, _ITEMS, ctypes.c_size_t, ctypes.c_int64, ctypes.c_bool]),
    "td_summary_update": (ctypes.c_int, [_P, _ITEMS, ctypes.c_size_t]),
    "td_save_file": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                    ctypes.c_char_p]),
    "td_save_path": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]),
    "td_config_update": (ctypes.c_int, [_P, _ITEMS, ctypes.c_size_t]),
    "td_output": (ctypes.c_int, [_P, ctypes.c_bool, ctypes.c_char_p]),
    "td_define_metric": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int]),
    "td_set_name": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "td_set_tags": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t]),
    "td_set_notes": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "td_finish_reason": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                        ctypes.POINTER(TdFinishReport)]),
    "td_footer": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_size_t]),
    "td_run_dir": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_size_t]),
    "td_run_url": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_size_t]),
    "td_query_agent": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(TdQuery), ctypes.c_int,
                                      ctypes.POINTER(_P)]),
    "td_status_agent": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_P)]),
    "td_free": (None, [_P]),
    "td_artifact_begin": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                         ctypes.c_char_p, ctypes.POINTER(_P)]),
    "td_artifact_add_bytes": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p,
                                             ctypes.c_size_t]),
    "td_artifact_add_file": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p]),
    "td_artifact_add_reference": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p]),
    "td_artifact_commit": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t]),
    "td_artifact_free": (None, [_P]),
    "td_use_artifact": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "td_artifact_download": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                            ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_P)]),
    "td_spool_flush": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                      ctypes.POINTER(ctypes.c_uint64)]),
    "td_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "td_last_error": (ctypes.c_char_p, []),
}

# ---- loading -----------------------------------------------------------------

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def _candidates() -> list:
    env = os.environ.get("TRACKD_LIB")
    if env:
        return [env]  # explicit: nothing else is tried
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        from . import _install  # only in an installed copy
    except ImportError:
        _install = None
    if _install is not None:
        names = [os.path.normpath(os.path.join(here, _install.LIBRARY))]
    else:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))
        names = glob.glob(os.path.join(repo, "build*", "client-shim", "libtrackd.so"))
        names.sort(key=os.path.getmtime, reverse=True)
    names += _prefix_candidates()
    found = ctypes.util.find_library("trackd")
    if found:
        names.append(found)
    return names + ["libtrackd.so.0", "libtrackd.so"]


def _prefix_candidates() -> list:
    """libtrackd.so.0 in the lib dirs of the interpreter's prefix and of the
    prefix whose bin/ holds the trackd on PATH (that exist)."""
    prefixes = [sys.prefix]
    agent = shutil.which("trackd")
    if agent:
        prefixes.append(os.path.dirname(os.path.dirname(os.path.realpath(agent))))
    libdirs = ["lib"]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        libdirs.append(os.path.join("lib", multiarch))
    names = []
    for prefix in prefixes:
        for libdir in libdirs:
            path = os.path.join(prefix, libdir, "libtrackd.so.0")
            if os.path.exists(path) and path not in names:
                names.append(path)
    return names


def check_layout(lib: ctypes.CDLL) -> None:
    """Fails if TdRunOptions does not match the library's struct."""
    o = TdRunOptions()
    lib.td_run_options_init(ctypes.byref(o))
    if (o.max_buffer_bytes != 64 << 20 or o.batch_bytes != 256 << 10
            or o.flush_interval_ms != 10 or not o.print_footer or o.capture_console
            or o.handle_signals or o.max_spool_bytes != 1 << 30):
        raise ImportError("libtrackd's td_run_options does not match trackd._lib.TdRunOptions "
                          "(library and Python package from different versions?)")


def lib() -> ctypes.CDLL:
    """The loaded library (loads it on first call); ImportError if none is found."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for name in _candidates():
            try:
                candidate = ctypes.CDLL(name)
            except OSError as e:
                errors.append(f"{name}: {e}")
                continue
            for fn, (restype, argtypes) in _SIGNATURES.items():
                f = getattr(candidate, fn)
                f.restype = restype
                f.argtypes = argtypes
            check_layout(candidate)
            _lib = candidate
            return _lib
        raise ImportError("trackd: cannot load libtrackd (set TRACKD_LIB to its path): "
                          + "; ".join(errors))


def last_error() -> str:
    return lib().td_last_error().decode("utf-8", "replace")


def strerror(rc: int) -> str:
    return lib().td_strerror(rc).decode("utf-8", "replace")


def text(s: Optional[str], what: str = "argument") -> Optional[bytes]:
    """A str for a char * argument (None stays NULL). A NUL would cut it short
    in C and a lone surrogate cannot be UTF-8: both are refused, naming `what`."""
    if s is None:
        return None
    nul = s.find("\x00")
    if nul >= 0:
        raise InvalidValueError(f"trackd: {what}: contains a NUL character (U+0000) at "
                                f"position {nul}")
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidValueError(f"trackd: {what}: not valid UTF-8 (lone surrogate at "
                                f"position {e.start})") from None


def take_string(ptr: ctypes.c_void_p) -> str:
    """A string the library allocated, decoded and freed."""
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib().td_free(ptr)


def snprintf_call(fn, *args) -> tuple:
    """Calls an snprintf-like function (…, buf, len) -> needed; returns (rc, str)."""
    size = 4096
    while True:
        buf = ctypes.create_string_buffer(size)
        rc = fn(*args, buf, size)
        if rc < 0:
            return rc, ""
        if rc < size:
            return rc, buf.value.decode("utf-8", "replace")
        size = rc + 1
