"""trackd.init() and Run: W&B-style runs over libtrackd.

A Run owns one td_run. Recording calls (log, config and summary updates,
define_metric, rename) encode into libtrackd's buffer and return; nothing here
waits for the agent except finish(). The run ends exactly once, by whichever
comes first:

- ``run.finish(exit_code)`` or leaving ``with run:`` (an exception in the block
  → exit code 1, "failed", its traceback written into the run's output first;
  the exception propagates);
- an uncaught exception (sys.excepthook, chained) → exit code 1;
- interpreter exit (atexit) → the code given to sys.exit(), else 0;
- SIGTERM while its action is the default (main thread only) → "killed" with
  exit code 143, then the default action: the process dies of it.

The program's signal semantics are its own. SIGINT is never handled here: Ctrl-C
raises KeyboardInterrupt as usual, and ``except`` / ``finally`` run. A
KeyboardInterrupt that ends the run (leaves ``with run:`` or nobody catches it,
so that Python then dies of SIGINT) makes it "killed" with exit code 130, as
the shell reports a process killed by SIGINT. A SIGTERM handler the program
installs, before init or after it, is left alone (the run then ends by how the
program ends).

At finish the footer (history sparklines, summary, where the run is stored) is
printed to sys.stderr by this module (libtrackd's own printing is off, so it
comes out after everything Python buffered).

Threading: a Run may be used from several threads; its lock serialises the
calls that use the td_run handle, so finish never frees it under a log().
"""
from __future__ import annotations

import atexit
import ctypes
import math
import os
import platform
import pwd
import secrets
import signal
import string
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from . import _config_file, _env, _lib, _values
from ._console import Tee
from .errors import InvalidValueError, RunFinishedError, TrackdError

PathLike = Union[str, "os.PathLike[str]"]

_ID_ALPHABET = string.ascii_lowercase + string.digits


def _login_name() -> str:
    """The entity libtrackd uses when none is given."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid{os.geteuid()}"


def _random_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


class Config(Mapping):
    """The run's config: a dict-like view; setting keys records a config update.

    ``run.config["lr"] = 0.1``, ``run.config.update({...})`` and
    ``run.config.lr`` all work; updates are shallow (a nested dict replaces the
    whole value), as in W&B.
    """

    def __init__(self, run: "Run", initial: Dict[str, Any]):
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_data", _values.plain(dict(initial)))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, data: Optional[Mapping] = None, **kwargs: Any) -> None:
        values = dict(data or {}, **kwargs)
        if values:
            self._run._record("td_config_update", values)
            self._data.update(_values.plain(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def as_dict(self) -> Dict[str, Any]:
        return dict(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


class Summary(Mapping):
    """The run's summary as this process sees it: setting keys records an
    explicit summary update; logged values update it by the same rules as the
    agent (last value, or min / max / mean / none per define_metric). The
    agent's summary (``trackd.Api().run(...).summary``) is the authority when
    several processes write to one run."""

    def __init__(self, run: "Run"):
        self._run = run
        self._data: Dict[str, Any] = {}
        self._modes: Dict[str, str] = {}
        self._means: Dict[str, List[float]] = {}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, data: Optional[Mapping] = None, **kwargs: Any) -> None:
        values = dict(data or {}, **kwargs)
        if values:
            self._run._record("td_summary_update", values)
            self._data.update(_values.plain(values))

    def _define(self, name: str, mode: str) -> None:
        self._modes[name] = mode

    def _logged(self, data: Mapping) -> None:
        for key, value in data.items():
            if not isinstance(key, str) or key.startswith("_"):
                continue
            value = _values.plain(value, in_row=True)
            mode = self._modes.get(key, "last")
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if mode == "none":
                continue
            if mode != "last" and _values.is_structure(value):
                continue  # as the agent: min / max / mean of a structure means nothing
            if mode == "last" or not number or math.isnan(value):
                self._data[key] = value
                continue
            current = self._data.get(key)
            have = isinstance(current, (int, float)) and not isinstance(current, bool)
            if mode == "min" and (not have or value < current):
                self._data[key] = value
            elif mode == "max" and (not have or value > current):
                self._data[key] = value
            elif mode == "mean":
                acc = self._means.setdefault(key, [0.0, 0])
                acc[0] += value
                acc[1] += 1
                self._data[key] = acc[0] / acc[1]

    def __repr__(self) -> str:
        return f"Summary({self._data!r})"


class _ExitHooks:
    """Process-wide hooks that end unfinished runs (installed with the first
    run, removed with the last)."""

    def __init__(self) -> None:
        self.runs: List["Run"] = []
        self.exit_code: Optional[int] = None
        self.installed = False
        self._lock = threading.RLock()
        self._prev_excepthook = None
        self._prev_exit = None
        self._prev_signals: Dict[int, Any] = {}

    def add(self, run: "Run") -> None:
        with self._lock:
            self.runs.append(run)
            if self.installed:
                return
            self.installed = True
            self.exit_code = None
            self._prev_excepthook = sys.excepthook
            sys.excepthook = self._excepthook
            self._prev_exit = sys.exit
            sys.exit = self._exit
            atexit.register(self._atexit)
            # Only where the process would die anyway: an ignored SIGTERM or the
            # program's own handler is not ours to change.
            if (threading.current_thread() is threading.main_thread()
                    and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
                self._prev_signals[signal.SIGTERM] = signal.SIG_DFL
                signal.signal(signal.SIGTERM, self._on_signal)

    def remove(self, run: "Run") -> None:
        with self._lock:
            if run in self.runs:
                self.runs.remove(run)
            if self.runs or not self.installed:
                return
            self.installed = False
            if sys.excepthook == self._excepthook:
                sys.excepthook = self._prev_excepthook
            if sys.exit == self._exit:
                sys.exit = self._prev_exit
            atexit.unregister(self._atexit)
            if threading.current_thread() is threading.main_thread():
                for sig, prev in self._prev_signals.items():
                    if signal.getsignal(sig) == self._on_signal:
                        signal.signal(sig, prev)
            self._prev_signals.clear()

    def _finish_all(self, exit_code: int, reason: int) -> None:
        for run in list(self.runs):
            run._finish(exit_code, reason)

    def _excepthook(self, exc_type, exc, tb) -> None:
        prev = self._prev_excepthook or sys.__excepthook__
        # The traceback first, so it is in the run's console output.
        prev(exc_type, exc, tb)
        self._finish_all(*exit_for_exception(exc_type, exc))

    def _exit(self, code: Any = None) -> None:
        if code is None:
            self.exit_code = 0
        elif isinstance(code, int):
            self.exit_code = code
        else:
            self.exit_code = 1  # sys.exit("message") exits with 1
        (self._prev_exit or sys.__dict__["exit"])(code)

    def _atexit(self) -> None:
        self._finish_all(self.exit_code or 0, _lib.TD_EXIT_FINISHED)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._finish_all(128 + signum, _lib.TD_EXIT_KILLED)
        # Die of the signal, as the process would have without us.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # not reached: SIGTERM's default action ends us


def exit_for_exception(exc_type, exc) -> tuple:
    """(exit code, reason) of a run ended by an exception: Ctrl-C → killed by
    SIGINT (Python dies of it when nobody catches it); sys.exit(c) → c, as at
    interpreter exit; anything else → 1 (failed)."""
    if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
        return 128 + signal.SIGINT, _lib.TD_EXIT_KILLED
    if exc_type is not None and issubclass(exc_type, SystemExit):
        code = getattr(exc, "code", None)
        if code is None:
            return 0, _lib.TD_EXIT_FINISHED
        return (code if isinstance(code, int) else 1), _lib.TD_EXIT_FINISHED
    return 1, _lib.TD_EXIT_FINISHED


_hooks = _ExitHooks()

# The most recent run that is not finished (W&B's wandb.run).
current: Optional["Run"] = None


class Run:
    """One run. Made by trackd.init(); see the module documentation."""

    def __init__(self, *, project: str, entity: str, run_id: str, name: Optional[str],
                 config: Dict[str, Any], notes: Optional[str], tags: List[str],
                 group: Optional[str], job_type: Optional[str], mode: str,
                 resume: Optional[str], console: bool, socket: Optional[str],
                 spool_dir: Optional[str], max_buffer_bytes: Optional[int] = None,
                 max_spool_bytes: Optional[int] = None):
        self._lock = threading.RLock()
        self._bounds = (max_buffer_bytes, max_spool_bytes)
        self._at_end: Dict[str, str] = {}  # save(policy end|live): name → path
        self._live: Dict[str, Any] = {}  # save(policy live): name → (path, (size, mtime))
        self._live_stop = threading.Event()
        self._live_thread: Optional[threading.Thread] = None
        # save(): files the queue had no room for yet: name → (path, policy),
        # saved by the watcher thread once there is, or at finish.
        self._deferred: Dict[str, Any] = {}
        self._files_not_saved: List[str] = []  # named in the finish report
        self._handle: Optional[ctypes.c_void_p] = None
        self._project = project
        self._entity = entity
        self._id = run_id
        self._name = name
        self._notes = notes
        self._tags = tuple(tags)
        self._group = group
        self._job_type = job_type
        self._mode = mode
        self._socket = socket
        self._finished = False
        self._pending = False  # the last row was logged with commit=False
        self._full_warned = False
        self._tees: List[Tee] = []
        self.finish_report: Optional[Dict[str, Any]] = None
        self.config = Config(self, config)
        self.summary = Summary(self)
        if mode == "disabled":
            # No library, no I/O: every call below is a no-op; trackd.log()
            # still has a run to talk to.
            global current
            current = self
            return
        self._start(config, resume, console, spool_dir)
        self._files_dir = self._make_files_dir()

    # ---- set-up ----

    def _make_files_dir(self) -> Optional[str]:
        """run.dir: this process's own directory for the run's files, as W&B's
        run dir (files left in it are saved at finish). Under the user's
        state dir ($XDG_STATE_HOME/trackd/runs, else ~/.local/state/...),
        never the agent's, which may belong to another user."""
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state")
        try:
            path = os.path.join(base, "trackd", "runs", self.entity or "_", self.project or "_",
                                self.id, "files")
            os.makedirs(path, mode=0o700, exist_ok=True)
        except (OSError, TypeError) as e:
            warnings.warn(f"trackd: run.dir cannot be created: {e}")
            return None
        return path

    def _start(self, config: Dict[str, Any], resume: Optional[str], console: bool,
               spool_dir: Optional[str]) -> None:
        lib = _lib.lib()
        opts = _lib.TdRunOptions()
        lib.td_run_options_init(ctypes.byref(opts))
        keep: List[Any] = []

        def s(value: Optional[str], what: str) -> Optional[bytes]:
            b = _lib.text(value, f"init: {what}")
            keep.append(b)
            return b

        opts.project = s(self._project, "project")
        opts.entity = s(self._entity, "entity")
        opts.run_id = s(self._id, "id")
        opts.display_name = s(self._name, "name")
        opts.notes = s(self._notes, "notes")
        opts.group = s(self._group, "group")
        opts.job_type = s(self._job_type, "job_type")
        if self._tags:
            tags = (ctypes.c_char_p * len(self._tags))(*[s(t, "tags") for t in self._tags])
            keep.append(tags)
            opts.tags = tags
            opts.n_tags = len(self._tags)
        if config:
            items, n, k = _values.to_items(config)
            keep.append(k)
            opts.config = items
            opts.n_config = n
        opts.mode = _lib.MODES[self._mode]
        opts.resume = _lib.RESUMES[resume]
        opts.socket_url = s(self._socket, "socket")
        opts.spool_dir = s(spool_dir, "spool_dir")
        for field, value in zip(("max_buffer_bytes", "max_spool_bytes"), self._bounds):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ValueError(f"trackd.init: {field} must be a positive int, "
                                     f"got {value!r}")
                setattr(opts, field, value)
        # The run's metadata ("python"); the library gathers the rest itself.
        opts.python_version = s(platform.python_version(), "python_version")
        # Python prints the footer itself, after its own buffers; console
        # capture and signals are done at the Python level.
        opts.print_footer = False
        opts.capture_console = False
        opts.handle_signals = False

        handle = ctypes.c_void_p()
        rc = lib.td_init(ctypes.byref(opts), ctypes.byref(handle))
        if rc != _lib.TD_OK:
            msg = _lib.last_error()
            if rc == _lib.TD_ERR_INVALID:
                raise ValueError(f"trackd.init: {msg}")
            raise TrackdError(f"trackd.init: {_lib.strerror(rc)}: {msg}")
        self._handle = handle
        if self._id is None:
            self._id = lib.td_run_id(handle).decode("utf-8")

        global current
        current = self
        _hooks.add(self)
        if console:
            self._capture_console()

    def _capture_console(self) -> None:
        if sys.stdout is None or sys.stderr is None:
            return  # no console to capture (pythonw, closed streams)
        out = Tee(sys.stdout, lambda text: self._output(False, text))
        err = Tee(sys.stderr, lambda text: self._output(True, text))
        self._tees = [out, err]
        sys.stdout, sys.stderr = out, err

    def _release_console(self) -> None:
        for tee in self._tees:
            tee.drain()
        if len(self._tees) == 2:
            out, err = self._tees
            # Put back only what is still ours (someone may have wrapped us).
            if sys.stdout is out:
                sys.stdout = out.wrapped
            if sys.stderr is err:
                sys.stderr = err.wrapped
        self._tees = []

    def _output(self, is_stderr: bool, text: str) -> None:
        with self._lock:
            if self._handle is None:
                return
            _lib.lib().td_output(self._handle, is_stderr,
                                 text.encode("utf-8", "replace"))

    # ---- recording ----

    def _check_open(self) -> None:
        if self._finished:
            raise RunFinishedError(f"trackd: run {self._id} has finished")

    def _raise_for(self, what: str, rc: int) -> None:
        """Turns a libtrackd error of a recording call into Python's terms."""
        msg = _lib.last_error()
        if rc == _lib.TD_ERR_FULL:
            # Counted and reported at finish; training goes on.
            if not self._full_warned:
                self._full_warned = True
                warnings.warn(f"trackd: records are being dropped: {msg}", RuntimeWarning,
                              stacklevel=3)
            return
        if rc == _lib.TD_ERR_CLOSED:
            raise RunFinishedError(f"trackd: run {self._id} has finished")
        if rc == _lib.TD_ERR_INVALID:
            # The library's checks: the agent's limits, when lower than ours.
            raise InvalidValueError(f"trackd: {what}: {msg}")
        raise TrackdError(f"trackd: {what}: {_lib.strerror(rc)}: {msg}")

    def _record(self, fn_name: str, data: Mapping) -> None:
        """A config or summary update (the items record kinds)."""
        # Checked in every mode: CI with tracking off must catch what online
        # runs would refuse.
        items, n, keep = _values.to_items(data)
        if self._mode == "disabled":
            return
        with self._lock:
            self._check_open()
            rc = getattr(_lib.lib(), fn_name)(self._handle, items, n)
        if rc != _lib.TD_OK:
            self._raise_for(fn_name, rc)

    def log(self, data: Mapping[str, Any], step: Optional[int] = None,
            commit: Optional[bool] = None) -> None:
        """Logs one history row, as wandb.log: each call is a new step unless
        commit=False (keys accumulate into the current step) or an explicit
        step is given (then commit defaults to False: the row is committed when
        a larger step arrives or at finish). A step lower than the current one
        is dropped with a warning on stderr. Values are checked (and numpy
        arrays converted) in every mode, disabled included."""
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, int):
                raise TypeError(f"trackd: step must be an int, not {type(step).__name__}")
            if step < 0:
                raise ValueError(f"trackd: step must not be negative, got {step}")
        if commit is None:
            commit = step is None
        items, n, keep = _values.to_items(data, in_row=True)
        if self._mode == "disabled":
            return
        with self._lock:
            self._check_open()
            rc = _lib.lib().td_log(self._handle, items, n,
                                   _lib.TD_STEP_AUTO if step is None else step, bool(commit))
            if rc == _lib.TD_OK:
                self._pending = not commit
                self.summary._logged(data)
                return
        msg = _lib.last_error()
        if rc == _lib.TD_ERR_INVALID and "< current step" in msg:
            return  # W&B's behaviour: warned (by libtrackd, on stderr) and dropped
        self._raise_for("log", rc)

    # run.save and run.log_code: bounds on what one call reads (files, bytes).
    SAVE_MAX_FILES = 1000
    LIVE_POLL_S = 2.0  # how often files saved with policy live are checked for changes

    DEFERRED_POLL_S = 0.1  # how often deferred saves try the queue again

    def _start_watcher(self) -> None:
        if self._live_thread is None and self._mode != "disabled":
            self._live_thread = threading.Thread(target=self._watch_live,
                                                 name="trackd-live-files", daemon=True)
            self._live_thread.start()

    def _save_deferred(self, wait_until: Optional[float] = None) -> None:
        """Saves the deferred files in order while the queue has room; with
        wait_until (finish), waits for room until then, and names each file
        still not saved."""
        with self._lock:
            pending = list(self._deferred.items())
        for name, entry in pending:
            path, policy = entry
            while True:
                with self._lock:
                    if self._finished:
                        return
                    rc = _lib.lib().td_save_path(self._handle, _lib.text(name, "file name"),
                                                 os.fsencode(path), policy.encode())
                    if rc != _lib.TD_ERR_FULL and self._deferred.get(name) is entry:
                        del self._deferred[name]  # unless saved again meanwhile
                if rc != _lib.TD_ERR_FULL:
                    break
                if wait_until is None:
                    return  # no room yet: the next poll
                if time.monotonic() >= wait_until:
                    with self._lock:
                        self._deferred.pop(name, None)
                    break
                time.sleep(0.05)
            if rc != _lib.TD_OK:
                self._files_not_saved.append(name)
                warnings.warn(f"trackd: {name} not saved: {_lib.last_error()}", RuntimeWarning,
                              stacklevel=3)

    def _watch_live(self) -> None:
        """The files' watcher (a thread): deferred saves are tried again; a
        live file whose size or mtime changed is sent again (one stat per file
        and LIVE_POLL_S)."""
        next_live = time.monotonic() + self.LIVE_POLL_S
        while not self._live_stop.wait(self.DEFERRED_POLL_S if self._deferred else
                                       max(0.0, next_live - time.monotonic())):
            if self._deferred:
                self._save_deferred()
            if time.monotonic() < next_live:
                continue
            next_live = time.monotonic() + self.LIVE_POLL_S
            for name, (path, sig) in list(self._live.items()):
                try:
                    st = os.stat(path)
                    now = (st.st_size, st.st_mtime_ns)
                    if now == sig:
                        continue
                    self._live[name] = (path, now)
                    self._save_path(name, path, "live")
                except (OSError, TrackdError):
                    continue
    CODE_MAX_FILES = 1000
    CODE_MAX_BYTES = 64 << 20

    def _save_bytes(self, name: str, data: bytes, policy: str) -> None:
        if self._mode == "disabled":
            return
        with self._lock:
            self._check_open()
            rc = _lib.lib().td_save_file(self._handle, _lib.text(name, "file name"), data,
                                         len(data), policy.encode())
        if rc != _lib.TD_OK:
            self._raise_for("save", rc)

    def _save_path(self, name: str, path: str, policy: str) -> None:
        """Saves the file at path as name (td_save_path: copied into the spool
        dir, so its size is bounded by the spool, not by memory). A file the
        queue has no room for yet (max_spool_bytes of files not yet delivered)
        is deferred, never dropped: the watcher thread saves it once there is
        room, in order, and finish waits for room for what is left."""
        if self._mode == "disabled":
            return
        with self._lock:
            self._check_open()
            if self._deferred:
                self._deferred.pop(name, None)
                self._deferred[name] = (path, policy)  # behind the others: order kept
                return
            rc = _lib.lib().td_save_path(self._handle, _lib.text(name, "file name"),
                                         os.fsencode(path), policy.encode())
            if rc == _lib.TD_ERR_FULL:
                self._deferred[name] = (path, policy)
        if rc == _lib.TD_ERR_FULL:
            self._start_watcher()
            return
        if rc != _lib.TD_OK:
            self._raise_for("save", rc)

    def log_artifact(self, artifact_or_path: Any, name: Optional[str] = None,
                     type: Optional[str] = None, aliases: Optional[List[str]] = None) -> Any:
        """Logs an artifact version (W&B's run.log_artifact): a trackd.Artifact,
        or a path to a file or directory (an artifact `name` of `type` is made
        of it). Files are read here and queued for the agent; the agent makes
        the version once they are all stored (artifact.wait() waits for it).
        aliases default to ["latest"]."""
        from ._artifact import Artifact, artifact_from_path
        a = artifact_or_path
        if not isinstance(a, Artifact):
            a = artifact_from_path(str(artifact_or_path), name, type)
        aliases = list(aliases) if aliases is not None else ["latest"]
        if self._mode == "disabled":
            return a
        with self._lock:
            self._check_open()
            a._log_with(self, self._handle, aliases)
        return a

    def use_artifact(self, artifact_or_name: Any, type: Optional[str] = None,
                     aliases: Optional[List[str]] = None) -> Any:
        """Marks an artifact version as used by this run (lineage) and returns
        it: "name[:alias|:vN]" (in this run's project), "project/name:…",
        "entity/project/name:…", or an Artifact this process logged."""
        from ._artifact import Artifact
        if isinstance(artifact_or_name, Artifact):
            a = artifact_or_name
            a.wait()
        else:
            ref = str(artifact_or_name)
            a = Artifact._from_agent(self._socket, ref, f"{self._entity}/{self._project}"
                                     if ref.count("/") == 0 else None)
        if type is not None and a.type != type:
            raise ValueError(f"trackd: use_artifact: {a.source_qualified_name} has type "
                             f"{a.type}, not {type}")
        if self._mode == "disabled":
            return a
        with self._lock:
            self._check_open()
            rc = _lib.lib().td_use_artifact(self._handle,
                                            _lib.text(a.source_qualified_name, "artifact"))
        if rc != _lib.TD_OK:
            self._raise_for("use_artifact", rc)
        return a

    def save(self, glob_str: str, base_path: Optional[str] = None, policy: str = "live") -> List[str]:
        """Saves files matching glob_str with the run, as W&B's run.save: each
        as files/<path relative to base_path> (default: the glob's directory
        part). The files are read here, by this process (the agent never opens
        a client's path), and copied into the spool dir until the agent has
        them (td_save_path): any size up to max_spool_bytes queued at once. policy "now" sends them now, "end" at finish, "live"
        now, again whenever it changes (checked every LIVE_POLL_S seconds) and
        at finish. Returns the names saved."""
        import glob as _glob
        if policy not in ("live", "now", "end"):
            raise ValueError(f"trackd: save: policy must be live, now or end, not {policy!r}")
        if base_path is None:
            base_path = os.path.dirname(glob_str.split("*", 1)[0]) or "."
        names = []
        for path in sorted(_glob.glob(glob_str, recursive=True))[:self.SAVE_MAX_FILES]:
            if not os.path.isfile(path):
                continue
            name = os.path.relpath(os.path.abspath(path), os.path.abspath(base_path))
            if name.startswith(".." + os.sep) or name == "..":
                name = os.path.basename(path)
            names.append(name)
            if policy in ("now", "live"):
                self._save_path(name, path, policy)
            if policy in ("end", "live"):
                self._at_end[name] = path
            if policy == "live" and len(self._live) < self.SAVE_MAX_FILES:
                st = os.stat(path)
                self._live[name] = (path, (st.st_size, st.st_mtime_ns))
                self._start_watcher()
        return names

    def log_code(self, root: str = ".", include: Any = None) -> List[str]:
        """Saves the program's source files under files/code/: by default every
        *.py under root (at most CODE_MAX_FILES files, CODE_MAX_BYTES bytes in
        all), plus the program file itself. include(path) -> bool picks files."""
        picked = []
        total = 0
        root = os.path.abspath(root)
        program = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else None
        candidates = []
        if program and os.path.isfile(program):
            candidates.append(program)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                path = os.path.join(dirpath, fn)
                if include(path) if include else fn.endswith(".py"):
                    candidates.append(path)
            if len(candidates) > self.CODE_MAX_FILES:
                break
        for path in candidates:
            if len(picked) >= self.CODE_MAX_FILES:
                break
            try:
                size = os.path.getsize(path)
                if total + size > self.CODE_MAX_BYTES:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            rel = os.path.relpath(path, root)
            if rel.startswith(".."):
                rel = os.path.basename(path)
            name = "code/" + rel.replace(os.sep, "/")
            if name in picked:
                continue
            self._save_bytes(name, data, "now")
            picked.append(name)
            total += len(data)
        return picked

    def define_metric(self, name: str, summary: Optional[str] = "last") -> None:
        """How the summary keeps `name`: "last" (default), "min", "max",
        "mean" or "none"."""
        if summary not in _lib.SUMMARIES:
            raise ValueError(f"trackd: define_metric: summary must be one of last, min, "
                             f"max, mean, none; got {summary!r}")
        if not isinstance(name, str):
            raise TypeError("trackd: define_metric: name must be a str")
        self.summary._define(name, summary or "last")
        if self._mode == "disabled":
            return
        with self._lock:
            self._check_open()
            rc = _lib.lib().td_define_metric(self._handle, _lib.text(name, "define_metric: name"),
                                             _lib.SUMMARIES[summary])
        if rc != _lib.TD_OK:
            self._raise_for("define_metric", rc)

    # ---- identity ----

    @property
    def id(self) -> str:
        return self._id

    @property
    def project(self) -> str:
        return self._project

    @property
    def entity(self) -> str:
        return self._entity

    @property
    def path(self) -> str:
        return f"{self._entity}/{self._project}/{self._id}"

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def notes(self) -> Optional[str]:
        return self._notes

    @notes.setter
    def notes(self, value: Optional[str]) -> None:
        """New notes for the run ("" or None clears them), recorded in order
        with the run's data."""
        value = "" if value is None else value
        if not isinstance(value, str):
            raise TypeError("trackd: notes is a str")
        if self._mode != "disabled":
            with self._lock:
                self._check_open()
                rc = _lib.lib().td_set_notes(self._handle, _lib.text(value, "notes"))
            if rc != _lib.TD_OK:
                self._raise_for("notes", rc)
        self._notes = value

    @property
    def tags(self) -> tuple:
        return self._tags

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        """Replaces the run's tags (at most 64, each at most 128 bytes)."""
        if isinstance(value, str):
            raise TypeError("trackd: tags is a list of str, not a str")
        tags = tuple(str(t) for t in value)
        if self._mode != "disabled":
            arr = (ctypes.c_char_p * max(len(tags), 1))(*[_lib.text(t, "tags") for t in tags])
            with self._lock:
                self._check_open()
                rc = _lib.lib().td_set_tags(self._handle, arr, len(tags))
            if rc != _lib.TD_OK:
                self._raise_for("tags", rc)
        self._tags = tags

    @property
    def group(self) -> Optional[str]:
        return self._group

    @property
    def job_type(self) -> Optional[str]:
        return self._job_type

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def name(self) -> Optional[str]:
        """The display name: the one given or set, else the agent's choice
        (asked once the agent has the run; None until then)."""
        if self._name is None and self._mode != "disabled":
            try:
                from ._api import Api
                self._name = Api(socket=self._socket, timeout=1.0).run(self.path).name
            except Exception:
                pass
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("trackd: the run name must be a non-empty str")
        if self._mode != "disabled":
            with self._lock:
                self._check_open()
                rc = _lib.lib().td_set_name(self._handle, _lib.text(value, "name"))
            if rc != _lib.TD_OK:
                self._raise_for("rename", rc)
        self._name = value

    @property
    def dir(self) -> Optional[str]:
        """A directory of this process for the run's files, as W&B's run.dir:
        it exists when init() returns, and what is left in it at finish is
        saved with the run (files/<path in it>, policy end). None for a
        disabled run. The agent's copy of the run: store_dir."""
        return getattr(self, "_files_dir", None)

    @property
    def store_dir(self) -> Optional[str]:
        """Where the agent stores the run on this machine (None if no agent
        answers, or the run is disabled)."""
        if self._mode == "disabled":
            return None
        with self._lock:
            if self._handle is None:
                return self._dir_at_finish
            rc, text = _lib.snprintf_call(_lib.lib().td_run_dir, self._handle)
        return text if rc >= 0 else None

    _dir_at_finish: Optional[str] = None

    @property
    def url(self) -> Optional[str]:
        """The run's page in the W&B UI, once the agent's wandb sink has had
        the backend's answer (None before, offline, disabled, without a sink,
        or when no agent answers). Asks the agent each time."""
        if self._mode != "online":
            return None
        with self._lock:
            if self._handle is None:
                return self._url_at_finish
            rc, text = _lib.snprintf_call(_lib.lib().td_run_url, self._handle)
        return text if rc > 0 else None

    _url_at_finish: Optional[str] = None

    # How the end is printed, for the wandb compatibility layer (trackd.wandb):
    # no footer at all (wandb.finish(quiet=True), WANDB_SILENT), and lines
    # written after it ("Find logs at: DIR"). The footer is printed wherever
    # the run ends (finish, `with`, exception, exit), so these live here.
    _quiet = False
    _footer_tail: Optional[Callable[["Run"], str]] = None
    # Called once the run has ended, with its exit code (W&B's resume file is
    # removed after a clean exit). Errors in it are not the program's.
    _on_end: Optional[Callable[["Run", int], None]] = None

    # ---- the end ----

    def finish(self, exit_code: int = 0, timeout: Optional[float] = None) -> None:
        """Ends the run: exit code 0 → finished, otherwise failed. Waits up to
        `timeout` seconds (default 30) until the agent has everything (what it
        has not gets spooled to disk and delivered later), then prints the
        footer to sys.stderr. Calling it again does nothing."""
        self._finish(exit_code, _lib.TD_EXIT_FINISHED, timeout)

    def _finish(self, exit_code: int, reason: int, timeout: Optional[float] = None) -> None:
        global current
        # Files waiting for room in the file queue are waited for until then.
        files_deadline = time.monotonic() + (30.0 if timeout is None else timeout)
        self._live_stop.set()
        if self._live_thread is not None and self._live_thread is not threading.current_thread():
            self._live_thread.join()
        if self._deferred and not self._finished and self._mode != "disabled":
            # Saves that waited for room: the sender is still running, so room
            # comes as the agent takes files; within the finish's timeout.
            self._save_deferred(wait_until=files_deadline)
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self._mode == "disabled":
                if current is self:
                    current = None
                return
            lib = _lib.lib()
            self._release_console()
            files_dir = getattr(self, "_files_dir", None)
            if files_dir and os.path.isdir(files_dir):
                # W&B uploads what is left in its run dir: saved at finish.
                found = 0
                for dirpath, dirnames, filenames in os.walk(files_dir):
                    dirnames.sort()
                    for fn in sorted(filenames):
                        path = os.path.join(dirpath, fn)
                        if found < self.SAVE_MAX_FILES and os.path.isfile(path):
                            name = os.path.relpath(path, files_dir).replace(os.sep, "/")
                            self._at_end.setdefault(name, path)
                            found += 1
            for name, path in self._at_end.items():
                # Files saved with policy end or live: as they are now, waiting
                # for room in the file queue (the sender still runs) within the
                # finish's timeout. One that cannot be saved is named, never
                # dropped silently.
                if not os.path.isfile(path):
                    continue
                while True:
                    rc = lib.td_save_path(self._handle, _lib.text(name, "file name"),
                                          os.fsencode(path), b"end")
                    if rc != _lib.TD_ERR_FULL or time.monotonic() >= files_deadline:
                        break
                    time.sleep(0.05)
                if rc != _lib.TD_OK:
                    self._files_not_saved.append(name)
                    warnings.warn(f"trackd: {name} not saved at finish: {_lib.last_error()}",
                                  RuntimeWarning, stacklevel=2)
            if self._pending:
                # W&B commits a pending row at finish; the agent would too,
                # but the footer below should show it.
                lib.td_log(self._handle, _values.NULL_ITEMS, 0, _lib.TD_STEP_AUTO, True)
            _, footer = _lib.snprintf_call(lib.td_footer, self._handle)
            rc, run_dir = _lib.snprintf_call(lib.td_run_dir, self._handle)
            self._dir_at_finish = run_dir if rc >= 0 else None
            if self._mode == "online" and self._dir_at_finish is not None:
                rc, url = _lib.snprintf_call(lib.td_run_url, self._handle)
                self._url_at_finish = url if rc > 0 else None
            report = _lib.TdFinishReport()
            timeout_ms = -1 if timeout is None else max(0, int(timeout * 1000))
            rc = lib.td_finish_reason(self._handle, int(exit_code), reason, timeout_ms,
                                      ctypes.byref(report))
            self._handle = None
        self.finish_report = {
            "status": _lib.strerror(rc),
            "records_logged": report.records_logged,
            "records_acked": report.records_acked,
            "records_unacked": report.records_unacked,
            "records_spooled": report.records_spooled,
            "records_refused_full": report.records_refused_full,
            "records_rejected": report.records_rejected,
            "last_error": report.last_error.decode("utf-8", "replace"),
            # Files run.save could not hand over (no room before the finish's
            # timeout, unreadable at finish): by name, never silently.
            "files_not_saved": list(self._files_not_saved),
        }
        if current is self:
            current = None
        _hooks.remove(self)
        self._print_footer(footer, self.finish_report)
        if self._on_end is not None:
            try:
                self._on_end(self, exit_code)
            except Exception:  # noqa: BLE001 (a courtesy, like the footer)
                pass

    def _print_footer(self, footer: str, rep: Dict[str, Any]) -> None:
        err = sys.stderr
        try:
            if footer and not self._quiet:
                err.write(footer)
            lost = rep["records_unacked"] - rep["records_spooled"]
            if rep["records_spooled"]:
                err.write(f"trackd: {rep['records_spooled']} records are not with the agent "
                          "yet; they are spooled on disk and go out with the next run or "
                          "`trackctl spool flush`\n")
            if lost or rep["records_refused_full"] or rep["records_rejected"]:
                err.write(f"trackd: records lost: {lost} undelivered, "
                          f"{rep['records_refused_full']} refused (buffer full), "
                          f"{rep['records_rejected']} refused by the agent"
                          f"{': ' + rep['last_error'] if rep['last_error'] else ''}\n")
            if self._footer_tail is not None and not self._quiet:
                err.write(self._footer_tail(self))
            err.flush()
        except (OSError, ValueError):
            pass  # stderr closed at exit: the footer is a courtesy

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.finish()
            return False
        if not issubclass(exc_type, SystemExit):
            # The traceback into the run's output (output.log), not the
            # terminal: Python prints it there once, when the exception ends the
            # program, after the run is finished and its capture gone.
            self._output_traceback(exc_type, exc, tb)
        code, reason = exit_for_exception(exc_type, exc)
        self._finish(code, reason)
        return False  # the exception goes on

    def _output_traceback(self, exc_type, exc, tb) -> None:
        if not self._tees:
            return  # console capture off: nothing to add it to
        for tee in self._tees:
            tee.drain()  # what the program printed comes first
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        self._output(True, text)

    def __repr__(self) -> str:
        return f"<trackd.Run {self.path} ({self._mode}{', finished' if self._finished else ''})>"


def init(project: Optional[str] = None, entity: Optional[str] = None,
         config: Union[Mapping[str, Any], PathLike, None] = None, name: Optional[str] = None,
         id: Optional[str] = None, notes: Optional[str] = None,
         tags: Optional[Iterable[str]] = None, group: Optional[str] = None,
         job_type: Optional[str] = None, mode: Optional[str] = None,
         resume: Optional[str] = None, console: bool = True, *, socket: Optional[str] = None,
         spool_dir: Optional[str] = None, max_buffer_bytes: Optional[int] = None,
         max_spool_bytes: Optional[int] = None) -> Run:
    """Starts a run (see wandb.init). Defaults from the environment:
    project ← TRACKD_PROJECT, mode ← TRACKD_MODE, socket ← TRACKD_SOCKET;
    then W&B's variables for whatever is still unset (WANDB_PROJECT,
    WANDB_ENTITY, WANDB_NAME, WANDB_NOTES, WANDB_TAGS, WANDB_RUN_ID,
    WANDB_RUN_GROUP, WANDB_JOB_TYPE, WANDB_MODE / WANDB_DISABLED,
    WANDB_RESUME; WANDB_SILENT: no footer; WANDB_CONSOLE=off: no console
    capture; see trackd._env), as libtrackd reads them.

    config: a dict, or the path of a JSON or YAML file (see
    trackd._config_file). mode: "online" (default), "offline" (kept by the
    agent for a later `trackctl sync`), "disabled" (nothing is recorded; no
    library is loaded). resume: None / "never" (an existing run with this id
    is an error), "allow", "must" (the run must exist). console: tee
    sys.stdout / sys.stderr into the run. max_buffer_bytes (records and media
    waiting in memory, default 64 MiB) and max_spool_bytes (the spool file,
    and the files run.save copies waiting for the agent; default 1 GiB): as
    libtrackd's td_run_options."""
    mode = mode or os.environ.get("TRACKD_MODE") or _env.mode() or "online"
    if resume is None:
        resume = _env.text("WANDB_RESUME")
        if resume == "auto":
            resume = "allow"  # no id of a crashed run is kept here: allow is the closest
    name = name if name is not None else _env.text("WANDB_NAME")
    id = id if id is not None else _env.text("WANDB_RUN_ID")
    notes = notes if notes is not None else _env.text("WANDB_NOTES")
    group = group if group is not None else _env.text("WANDB_RUN_GROUP")
    job_type = job_type if job_type is not None else _env.text("WANDB_JOB_TYPE")
    if tags is None:
        tags = _env.tags()
    if mode not in _lib.MODES:
        raise ValueError(f"trackd.init: mode must be online, offline or disabled; got {mode!r}")
    if resume not in _lib.RESUMES:
        raise ValueError(f"trackd.init: resume must be None, 'allow', 'must' or 'never'; "
                         f"got {resume!r}")
    if config is None:
        config_data: Dict[str, Any] = {}
    elif isinstance(config, Mapping):
        config_data = dict(config)
    elif isinstance(config, (str, os.PathLike)):
        config_data = _config_file.load(config)
    else:
        raise TypeError(f"trackd.init: config must be a dict or a file path, not "
                        f"{type(config).__name__}")
    _values.to_items(config_data)  # in every mode: disabled runs refuse what online ones do
    tag_list = [] if tags is None else list(tags)
    for t in tag_list:
        if not isinstance(t, str):
            raise TypeError(f"trackd.init: tags must be str, got {type(t).__name__}")
    project = (project or os.environ.get("TRACKD_PROJECT") or _env.text("WANDB_PROJECT")
               or "uncategorized")
    entity = entity or _env.text("WANDB_ENTITY")
    if mode == "disabled" and id is None:
        id = _random_id()
    if (_env.text("WANDB_CONSOLE") or "").lower() == "off":
        console = False
    run = Run(project=project, entity=entity or _login_name(), run_id=id, name=name,
              config=config_data, notes=notes, tags=tag_list, group=group, job_type=job_type,
              mode=mode, resume=resume, console=console and mode != "disabled",
              socket=socket, spool_dir=spool_dir, max_buffer_bytes=max_buffer_bytes,
              max_spool_bytes=max_spool_bytes)
    run._quiet = _env.flag("WANDB_SILENT")  # no footer, as libtrackd's td_init
    return run
