"""Console capture for Python runs: sys.stdout / sys.stderr replaced by tees.

Each tee writes through to the stream it replaced (the user sees everything as
before) and hands every complete line to the run (td_output; stderr lines on
the stderr stream, which the agent marks ``ERROR``, as W&B does). A partial
line waits for its newline, or for the end of the run. Only text written
through sys.stdout / sys.stderr is seen: output that bypasses them (C
extensions writing to file descriptor 1 or 2, ``sys.stdout.buffer``, streams
captured before init) is not recorded.
"""
from __future__ import annotations

import io
import threading
from typing import Callable, Optional, TextIO

# A line longer than this is recorded in pieces rather than buffered forever.
_MAX_PENDING = 64 * 1024


class Tee(io.TextIOBase):
    def __init__(self, stream: TextIO, sink: Callable[[str], None]):
        super().__init__()
        self._stream = stream
        self._sink = sink
        self._pending = ""
        self._lock = threading.Lock()

    # ---- the part that matters ----

    def write(self, s: str) -> int:
        n = self._stream.write(s)
        if not isinstance(s, str) or not s:
            return n
        with self._lock:
            self._pending += s
            cut = self._pending.rfind("\n") + 1
            if cut == 0 and len(self._pending) >= _MAX_PENDING:
                cut = len(self._pending)
            if cut:
                lines, self._pending = self._pending[:cut], self._pending[cut:]
            else:
                lines = ""
        if lines:
            self._sink(lines)
        return n

    def drain(self) -> None:
        """Hands over a last partial line."""
        with self._lock:
            rest, self._pending = self._pending, ""
        if rest:
            self._sink(rest)

    @property
    def wrapped(self) -> TextIO:
        return self._stream

    # ---- the stream's own behaviour ----

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    @property
    def encoding(self) -> Optional[str]:  # type: ignore[override]
        return getattr(self._stream, "encoding", None)

    @property
    def errors(self) -> Optional[str]:  # type: ignore[override]
        return getattr(self._stream, "errors", None)

    @property
    def buffer(self):
        return self._stream.buffer

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self._stream.closed

    def __getattr__(self, name: str):
        # Anything else (line_buffering, reconfigure, …) is the stream's.
        return getattr(self._stream, name)
