"""Terminal output of trackd.wandb, shaped as W&B's: "wandb: " lines on stderr.

Information lines (the init header, "Find logs at") are silenced by
WANDB_SILENT or settings silent=True, as in W&B. Warnings about what trackd
does not support are printed even then, once per process each: a script whose
call was ignored must be told, and once is enough.

Printing never raises: a closed stderr at exit is not the script's problem, and
neither is `python -W error` (these are not Python warnings on purpose).
"""
from __future__ import annotations

import sys
import threading
from typing import Set

PREFIX = "wandb: "

_lock = threading.Lock()
_warned: Set[str] = set()
_silent = False


def set_silent(silent: bool) -> None:
    global _silent
    _silent = bool(silent)


def silent() -> bool:
    return _silent


def _write(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def log(message: str) -> None:
    """One information line (nothing when silent)."""
    if not _silent:
        _write(f"{PREFIX}{message}\n")


def warn_once(key: str, message: str) -> None:
    """A warning, printed the first time `key` is warned about in this process."""
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    _write(f"{PREFIX}WARNING {message}\n")


def reset_for_tests() -> None:
    with _lock:
        _warned.clear()
