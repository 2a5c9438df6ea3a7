"""trackd.wandb — the `wandb` module's surface, recorded by trackd.

A script written for W&B switches with one line,

    import trackd.wandb as wandb

or with none: `trackctl run -- python3 train.py` puts a directory first on the
child's PYTHONPATH whose `wandb` package is this module. Importing trackd never
installs a global `wandb` and never shadows a real one; only `trackctl run`
does, and only for the command it runs.

Everything maps onto trackd's own API (trackd._run.Run, trackd.Api): this
module adds W&B's signatures, defaults, environment variables (trackd._env),
terminal output (_term) and config rules, nothing of its own underneath.

    init(...)        → trackd.init; unknown or unsupported parameters warn once,
                       naming them, and are otherwise ignored
    run              → the current Run (None before init and after finish)
    config, summary  → the current run's (a clear error before init)
    log, define_metric, finish, login, watch
    Api              → trackd.wandb._public (filters, history, scan_history)
    Image, Histogram, Table, save, log_code → trackd's media and files
                       (trackd.wandb._media, W&B's signatures)
    Artifact, log_artifact, use_artifact, Api().artifact(s) → trackd.Artifact and
                       trackd.Run's (trackd._artifact; kept by the agent, not uploaded yet)
    Audio, Video, restore, log_model, … → trackd.wandb._unsupported (one place)

Threading: as trackd.Run; the module state (current run) is process-wide, as
W&B's.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from .. import _config_file as _trackd_config_file
from .. import _env
from .. import _run as _trackd_run
from .._api import Api as _TrackdApi
from ..errors import AgentUnavailableError, NotFoundError, TrackdError
from . import _term
from . import _media
from ._media import Histogram, Image, Table
from ._public import Api
from .._artifact import Artifact as _TrackdArtifact
from ._unsupported import CLASSES as _UNSUPPORTED_CLASSES
from ._unsupported import FUNCTIONS as _UNSUPPORTED_FUNCTIONS
from ._unsupported import UnsupportedError

__version__ = "0.1.0+trackd"

# How long init waits at most for the agent to know the run (its display name)
# and for the W&B backend's first answer (the URLs), as W&B's init waits for
# its backend (W&B: init_timeout, 90 s, then an error). Here the upload goes on
# in the agent whatever happens, so the wait is short and ends early when the
# upload reports trouble; settings init_timeout or WANDB_INIT_TIMEOUT lower or
# raise it. A run that is not there by then is announced by id.
_ANNOUNCE_WAIT_S = 10.0


class Error(TrackdError):
    """W&B's wandb.Error."""


class UsageError(Error):
    """W&B's wandb.UsageError."""


class ConfigError(Error, ValueError):
    """A config key changed without allow_val_change (W&B's ConfigError)."""


# ---- settings ----------------------------------------------------------------

# The wandb.Settings fields trackd applies; any other is warned about once.
_SETTINGS_USED = ("silent", "console", "mode", "quiet", "project", "entity", "run_name",
                  "run_id", "run_notes", "run_tags", "run_group", "run_job_type",
                  "init_timeout")
# Settings that change nothing here and need no warning (timeouts, start method…).
_SETTINGS_HARMLESS = ("start_method", "_disable_stats", "_disable_meta",
                      "x_disable_stats", "x_disable_meta", "show_info", "show_warnings",
                      "show_errors", "anonymous", "base_url", "api_key", "login_timeout")


class Settings(dict):
    """W&B's wandb.Settings: keyword fields, read by init."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _settings_dict(settings: Any) -> Dict[str, Any]:
    if settings is None:
        return {}
    if isinstance(settings, Mapping):
        values = dict(settings)
    else:
        try:
            values = {k: v for k, v in vars(settings).items() if not k.startswith("__")}
        except TypeError:  # no __dict__: nothing we can read, and no reason to crash
            _term.warn_once("settings-type", f"wandb.init: settings of type "
                                             f"{type(settings).__name__} ignored")
            return {}
    ignored = sorted(k for k in values if k not in _SETTINGS_USED
                     and k not in _SETTINGS_HARMLESS and values[k] is not None)
    if ignored:
        _term.warn_once("settings:" + ",".join(ignored),
                        f"wandb.init: settings not supported by trackd, ignored: "
                        f"{', '.join(ignored)}")
    return values


# ---- config and summary ------------------------------------------------------

class _PreInit:
    """wandb.config / wandb.summary before init: every use is a clear error."""

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def _fail(self, what: str) -> Error:
        return Error(f"You must call wandb.init() before {self._name}{what}")

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        raise self._fail(f".{key}")

    def __setattr__(self, key: str, value: Any) -> None:
        raise self._fail(f".{key}")

    def __getitem__(self, key: str) -> Any:
        raise self._fail(f"[{key!r}]")

    def __setitem__(self, key: str, value: Any) -> None:
        raise self._fail(f"[{key!r}]")


def _plain_config(data: Any) -> Dict[str, Any]:
    """What W&B's config accepts besides dicts: argparse namespaces and objects
    with a __dict__ (absl flags are out of scope)."""
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return dict(data)
    if isinstance(data, argparse.Namespace):
        return dict(vars(data))
    if hasattr(data, "__dict__"):
        return {k: v for k, v in vars(data).items() if not k.startswith("_")}
    raise TypeError(f"wandb.config: cannot take a {type(data).__name__}")


class Config:
    """W&B's run config over trackd's (trackd._run.Config): attribute and item
    access; changing the value of a key already set raises ConfigError unless
    allow_val_change=True, as W&B does; keys lose leading and trailing '-'."""

    def __init__(self, inner: _trackd_run.Config, allow_val_change: bool = False):
        object.__setattr__(self, "_inner", inner)
        # wandb.init(allow_val_change=True): every change allowed.
        object.__setattr__(self, "_allow_val_change", allow_val_change)

    def _check(self, data: Mapping, allow_val_change: Optional[bool]) -> Dict[str, Any]:
        out = {}
        allowed = allow_val_change or self._allow_val_change
        for key, value in data.items():
            key = key.strip("-") if isinstance(key, str) else key
            if not allowed and key in self._inner and self._inner[key] != value:
                raise ConfigError(f'Attempted to change value of key "{key}" from '
                                  f"{self._inner[key]} to {value}\nIf you really want to do "
                                  "this, pass allow_val_change=True to config.update()")
            out[key] = value
        return out

    def update(self, d: Any = None, allow_val_change: Optional[bool] = None) -> None:
        values = self._check(_plain_config(d), allow_val_change)
        if values:
            self._inner.update(values)

    def setdefaults(self, d: Any) -> None:
        """Sets the keys of d that are not set yet."""
        values = {k: v for k, v in _plain_config(d).items() if k not in self._inner}
        if values:
            self._inner.update(values)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self._inner:
            self._inner.update({key: default})
        return self._inner[key]

    def update_locked(self, d: Any, user: Any = None, _allow_val_change: Any = None) -> None:
        self.update(d, allow_val_change=True)

    def persist(self) -> None:
        pass  # every update is recorded as it happens

    def as_dict(self) -> Dict[str, Any]:
        return self._inner.as_dict()

    def get(self, key: str, default: Any = None) -> Any:
        return self._inner.get(key, default)

    def keys(self):
        return self._inner.keys()

    def items(self):
        return self._inner.items()

    def values(self):
        return self._inner.values()

    def __getitem__(self, key: str) -> Any:
        return self._inner[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self._inner[key]
        except KeyError:
            raise AttributeError(f"config has no attribute {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __contains__(self, key: object) -> bool:
        return key in self._inner

    def __iter__(self):
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return repr(self.as_dict())


class Summary:
    """W&B's run summary over trackd's: item and attribute access, update."""

    def __init__(self, inner: _trackd_run.Summary):
        object.__setattr__(self, "_inner", inner)

    def update(self, d: Optional[Mapping] = None, **kwargs: Any) -> None:
        self._inner.update(d, **kwargs)

    def get(self, key: str, default: Any = None) -> Any:
        return self._inner.get(key, default)

    def keys(self):
        return self._inner.keys()

    def items(self):
        return self._inner.items()

    def __getitem__(self, key: str) -> Any:
        return self._inner[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._inner.update({key: value})

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self._inner[key]
        except KeyError:
            raise AttributeError(f"summary has no attribute {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self._inner.update({key: value})

    def __contains__(self, key: object) -> bool:
        return key in self._inner

    def __iter__(self):
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return repr(dict(self._inner))


# ---- define_metric -----------------------------------------------------------

class Metric:
    """What wandb.define_metric returns (W&B's wandb_metric.Metric)."""

    def __init__(self, name: str, step_metric: Optional[str], step_sync: Optional[bool],
                 hidden: Optional[bool], summary: Optional[str], goal: Optional[str]):
        self.name = name
        self.step_metric = step_metric
        self.step_sync = step_sync
        self.hidden = hidden
        self.summary = summary
        self.goal = goal


def _summary_mode(name: str, summary: Optional[str], goal: Optional[str]) -> Optional[str]:
    """W&B's summary option as trackd's one mode: "min", "max", "mean", "last",
    "none"; "best" with a goal. Several (W&B keeps each, nested) → the first
    trackd has, with a warning."""
    if summary is None:
        return None
    wanted = [s.strip().lower() for s in summary.split(",") if s.strip()]
    modes = []
    for s in wanted:
        if s == "best":
            if goal in ("minimize", "min"):
                s = "min"
            elif goal in ("maximize", "max"):
                s = "max"
        if s in ("min", "max", "mean", "last", "none"):
            modes.append(s)
    if len(modes) != len(wanted) or len(modes) > 1:
        _term.warn_once(f"define_metric-summary:{summary}",
                        f"define_metric({name!r}, summary={summary!r}): trackd keeps one "
                        f"summary value per metric (min, max, mean, last or none); using "
                        f"{modes[0] if modes else 'last'}")
    return modes[0] if modes else "last"


# ---- the run -----------------------------------------------------------------

class Run:
    """W&B's wandb.Run over one trackd.Run (`run._trackd`)."""

    def __init__(self, inner: _trackd_run.Run, settings: Dict[str, Any], resumed: bool = False,
                 allow_val_change: bool = False):
        self._trackd = inner
        self._settings = settings
        self._resumed = resumed
        self.config = Config(inner.config, allow_val_change)
        self.summary = Summary(inner.summary)
        self._step = 0

    # identity
    id = property(lambda self: self._trackd.id)
    project = property(lambda self: self._trackd.project)
    entity = property(lambda self: self._trackd.entity)
    group = property(lambda self: self._trackd.group)
    job_type = property(lambda self: self._trackd.job_type)
    dir = property(lambda self: self._trackd.dir)
    url = property(lambda self: self._trackd.url)
    offline = property(lambda self: self._trackd.mode == "offline")
    disabled = property(lambda self: self._trackd.mode == "disabled")
    resumed = property(lambda self: self._resumed)
    sweep_id = property(lambda self: None)
    step = property(lambda self: self._step)
    settings = property(lambda self: Settings(**self._settings))

    @property
    def path(self) -> str:
        return self._trackd.path

    @property
    def name(self) -> Optional[str]:
        return self._trackd.name

    @name.setter
    def name(self, value: str) -> None:
        self._trackd.name = value

    display_name = name

    @property
    def tags(self) -> tuple:
        return self._trackd.tags

    @tags.setter
    def tags(self, value: Sequence[str]) -> None:
        self._trackd.tags = value

    @property
    def notes(self) -> Optional[str]:
        return self._trackd.notes

    @notes.setter
    def notes(self, value: str) -> None:
        self._trackd.notes = value

    def get_url(self) -> Optional[str]:
        return self.url

    def get_project_url(self) -> Optional[str]:
        try:
            return _TrackdApi(timeout=2).run(self.path).project_url
        except TrackdError:
            return None

    # recording
    def log(self, data: Dict[str, Any], step: Optional[int] = None,
            commit: Optional[bool] = None, sync: Optional[bool] = None) -> None:
        self._trackd.log(data, step=step, commit=commit)
        if step is not None:
            self._step = max(self._step, step)
        if commit is not False and step is None:
            self._step += 1

    def define_metric(self, name: str, step_metric: Union[str, Metric, None] = None,
                      step_sync: Optional[bool] = None, hidden: Optional[bool] = None,
                      summary: Optional[str] = None, goal: Optional[str] = None,
                      overwrite: Optional[bool] = None) -> Metric:
        if isinstance(step_metric, Metric):
            step_metric = step_metric.name
        ignored = [k for k, v in (("step_metric", step_metric), ("step_sync", step_sync),
                                  ("hidden", hidden)) if v]
        if ignored:
            _term.warn_once("define_metric:" + ",".join(ignored),
                            f"define_metric: {', '.join(ignored)} not supported by trackd, "
                            "ignored (history is indexed by _step; pick another x-axis when "
                            "reading: Api run.history(x_axis=))")
        mode = _summary_mode(name, summary, goal)
        if "*" in name:
            _term.warn_once(f"define_metric-glob:{name}",
                            f"define_metric({name!r}): glob names are not supported by "
                            "trackd, ignored")
        elif mode is not None:
            self._trackd.define_metric(name, summary=mode)
        return Metric(name, step_metric, step_sync, hidden, summary, goal)

    def watch(self, *args: Any, **kwargs: Any) -> None:
        watch(*args, **kwargs)

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        pass

    def alert(self, title: str = "", text: str = "", *args: Any, **kwargs: Any) -> None:
        _term.warn_once("alert", "run.alert is not supported by trackd, ignored")

    def mark_preempting(self) -> None:
        pass

    def finish(self, exit_code: Optional[int] = None, quiet: Optional[bool] = None) -> None:
        """Ends the run (exit code 0 → finished, else failed); quiet=True: no
        footer."""
        if quiet:
            self._trackd._quiet = True
        self._trackd.finish(0 if exit_code is None else exit_code)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return self._trackd.__exit__(exc_type, exc, tb)

    def save(self, glob_str: Optional[str] = None, base_path: Optional[str] = None,
             policy: str = "live") -> List[str]:
        """Saves files with the run (trackd.Run.save): W&B's run.save."""
        return _media.save(self._trackd, glob_str, base_path=base_path, policy=policy)

    def log_artifact(self, artifact_or_path: Any, name: Optional[str] = None,
                     type: Optional[str] = None, aliases: Optional[List[str]] = None,
                     tags: Optional[List[str]] = None) -> "Artifact":
        """W&B's run.log_artifact (trackd.Run.log_artifact); tags are not kept."""
        return self._trackd.log_artifact(artifact_or_path, name=name, type=type,
                                         aliases=aliases)

    def use_artifact(self, artifact_or_name: Any, type: Optional[str] = None,
                     aliases: Optional[List[str]] = None,
                     use_as: Optional[str] = None) -> "Artifact":
        """W&B's run.use_artifact (trackd.Run.use_artifact)."""
        return self._trackd.use_artifact(artifact_or_name, type=type)

    def log_code(self, root: Optional[str] = ".", name: Optional[str] = None,
                 include_fn: Callable[..., bool] = _media._py_file,
                 exclude_fn: Optional[Callable[..., bool]] = None) -> List[str]:
        """Saves the program's source files (trackd.Run.log_code): W&B's
        run.log_code."""
        return _media.log_code(self._trackd, root, name=name, include_fn=include_fn,
                               exclude_fn=exclude_fn)

    def __getattr__(self, name: str) -> Any:
        if name in _UNSUPPORTED_FUNCTIONS:
            return _UNSUPPORTED_FUNCTIONS[name]
        raise AttributeError(f"'Run' object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<wandb Run {self.path} (trackd)>"


_current: Optional[Run] = None


def _active() -> Optional[Run]:
    """The current run, None once it has finished (however it ended)."""
    global _current
    if _current is not None and _current._trackd.finished:
        _current = None
    return _current


def __getattr__(name: str) -> Any:
    # wandb.run, wandb.config and wandb.summary follow the current run (PEP 562).
    if name == "run":
        return _active()
    if name in ("config", "summary"):
        run = _active()
        return getattr(run, name) if run is not None else _PreInit(f"wandb.{name}")
    if name in _UNSUPPORTED_CLASSES:
        return _UNSUPPORTED_CLASSES[name]
    if name in _UNSUPPORTED_FUNCTIONS:
        return _UNSUPPORTED_FUNCTIONS[name]
    raise AttributeError(f"module 'wandb' (trackd) has no attribute {name!r}")


# ---- init --------------------------------------------------------------------

def _resume(value: Any, run_id: Optional[str]) -> Optional[str]:
    """W&B's resume as trackd's: "auto" and True attach to the run of this id
    if there is one, else start it (the id may come from the resume file)."""
    if value is None or value is False:
        return None
    if value is True or value == "auto":
        return "allow" if run_id else None
    if value in ("allow", "must", "never"):
        return value
    raise UsageError(f"resume must be 'allow', 'must', 'never', 'auto' or a bool; got {value!r}")


def _resume_file(dir: Optional[str]) -> str:
    """W&B's <dir>/wandb/wandb-resume.json: the id of the last run started with
    resume="auto" in that directory that did not end cleanly (dir: the init
    argument, else WANDB_DIR, else the working directory)."""
    base = dir or _env.text("WANDB_DIR") or os.getcwd()
    return os.path.join(base, "wandb", "wandb-resume.json")


def _read_resume_id(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            run_id = json.load(f).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return run_id if isinstance(run_id, str) and run_id else None


def _write_resume_id(path: str, run_id: str) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"run_id": run_id}, f)
        os.replace(tmp, path)
    except OSError as e:
        _term.warn_once("resume-file", f"resume='auto': cannot write {path}: {e}")


def _forget_resume_id(path: str) -> Callable[[_trackd_run.Run, int], None]:
    def on_end(run: _trackd_run.Run, exit_code: int) -> None:
        # As W&B: a clean exit leaves nothing to resume.
        if exit_code == 0 and _read_resume_id(path) == run.id:
            os.unlink(path)
    return on_end


def _config_file(path: Any) -> Dict[str, Any]:
    """A config file as W&B reads one (config_util.dict_from_config_file): YAML
    or JSON through trackd's reader, W&B's bookkeeping keys dropped, and each
    ``key: {value: v, desc: …}`` entry read as v (a plain ``key: v`` is kept
    as it is, where W&B would fail)."""
    data = _trackd_config_file.load(path)
    data.pop("wandb_version", None)
    data.pop("_wandb", None)
    out = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]
        out[key] = value
    return out


# W&B reads this file of the working directory at every init, under the
# config it is given.
_CONFIG_DEFAULTS = "config-defaults.yaml"


def _filter_config(config: Dict[str, Any], exclude: Optional[Iterable[str]],
                   include: Optional[Iterable[str]]) -> Dict[str, Any]:
    if include:
        keep = set(include)
        config = {k: v for k, v in config.items() if k in keep}
    if exclude:
        drop = set(exclude)
        config = {k: v for k, v in config.items() if k not in drop}
    return config


def _warn_ignored(names: List[str]) -> None:
    if names:
        _term.warn_once("init:" + ",".join(sorted(names)),
                        f"wandb.init: not supported by trackd, ignored: "
                        f"{', '.join(sorted(names))}")


def init(entity: Optional[str] = None, project: Optional[str] = None,
         dir: Optional[str] = None, id: Optional[str] = None, name: Optional[str] = None,
         notes: Optional[str] = None, tags: Optional[Sequence[str]] = None,
         config: Union[Dict[str, Any], str, None] = None,
         config_exclude_keys: Optional[List[str]] = None,
         config_include_keys: Optional[List[str]] = None,
         allow_val_change: Optional[bool] = None, group: Optional[str] = None,
         job_type: Optional[str] = None, mode: Optional[str] = None,
         force: Optional[bool] = None, anonymous: Optional[str] = None,
         reinit: Union[bool, str, None] = None, resume: Union[bool, str, None] = None,
         resume_from: Optional[str] = None, fork_from: Optional[str] = None,
         save_code: Optional[bool] = None, tensorboard: Optional[bool] = None,
         sync_tensorboard: Optional[bool] = None, monitor_gym: Optional[bool] = None,
         settings: Any = None, **unknown: Any) -> Run:
    """Starts a run, as wandb.init: explicit arguments, then settings, then the
    WANDB_* environment (trackd._env), then trackd's defaults. Returns a Run
    (also a context manager: leaving `with` finishes it, an exception marks it
    failed)."""
    global _current
    values = _settings_dict(settings)
    ignored = list(unknown)
    ignored += [n for n, v in (("resume_from", resume_from), ("fork_from", fork_from),
                               ("save_code", save_code), ("tensorboard", tensorboard),
                               ("sync_tensorboard", sync_tensorboard),
                               ("monitor_gym", monitor_gym)) if v]
    _warn_ignored(ignored)

    silent = bool(values.get("silent")) or bool(values.get("quiet")) or _env.flag("WANDB_SILENT")
    _term.set_silent(silent)

    # reinit: W&B's default outside notebooks returns the active run.
    active = _active()
    if active is not None:
        if reinit in (None, False, "default", "return_previous"):
            _term.warn_once("reinit", "wandb.init: a run is active; returning it "
                                      "(reinit='finish_previous' starts a new one)")
            return active
        if reinit in (True, "finish_previous"):
            active.finish()

    if mode is not None:
        mode = _env.normalise_mode(mode)
    elif values.get("mode"):
        mode = _env.normalise_mode(values["mode"], "settings mode")
    else:
        try:
            mode = _env.mode()
        except ValueError as e:
            _term.warn_once("WANDB_MODE", f"{e}; using online")
            mode = "online"
    project = project or values.get("project") or _env.text("WANDB_PROJECT")
    entity = entity or values.get("entity") or _env.text("WANDB_ENTITY")
    name = name or values.get("run_name")
    id = id or values.get("run_id") or _env.text("WANDB_RUN_ID")
    notes = notes or values.get("run_notes")
    group = group or values.get("run_group")
    job_type = job_type or values.get("run_job_type")
    if tags is None:
        tags = values.get("run_tags")
    if resume is None:
        resume = _env.text("WANDB_RESUME")
    resume_path = None
    resumed = False
    if (resume is True or resume == "auto") and mode != "disabled":
        resume_path = _resume_file(dir)
        previous = _read_resume_id(resume_path)
        if previous and id and previous != id:
            _term.warn_once("resume-id", f"Tried to auto resume run with id {previous} but "
                                         f"id {id} is set.")
        elif previous:
            id, resumed = previous, True
    console = values.get("console") or _env.text("WANDB_CONSOLE") or "auto"

    config_data: Dict[str, Any] = {}
    if os.path.isfile(_CONFIG_DEFAULTS):
        config_data.update(_config_file(_CONFIG_DEFAULTS))
    if isinstance(config, (str, os.PathLike)):
        config_data.update(_config_file(config))
    else:
        config_data.update(_plain_config(config))
    config_data = _filter_config(config_data, config_exclude_keys, config_include_keys)

    inner = _trackd_run.init(project=project, entity=entity, config=config_data, name=name,
                             id=id, notes=notes, tags=list(tags) if tags is not None else None,
                             group=group, job_type=job_type, mode=mode,
                             resume=_resume(resume, id), console=console != "off")
    inner._quiet = silent
    inner._footer_tail = _find_logs_line
    if resume_path is not None and inner.mode != "disabled":
        _write_resume_id(resume_path, inner.id)
        inner._on_end = _forget_resume_id(resume_path)
    run = Run(inner, dict(values, mode=inner.mode), resumed=resumed,
              allow_val_change=bool(allow_val_change))
    _current = run
    if not silent:
        _announce(run, _init_timeout(values))
    return run


def _find_logs_line(run: _trackd_run.Run) -> str:
    where = run.store_dir
    return f"{_term.PREFIX}Find logs at: {where}\n" if where else ""


def _init_timeout(values: Dict[str, Any]) -> float:
    for value in (values.get("init_timeout"), _env.text("WANDB_INIT_TIMEOUT")):
        try:
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            pass
    return _ANNOUNCE_WAIT_S


def _announce(run: Run, wait_s: float) -> None:
    """W&B's init lines: "Syncing run NAME" and the URLs when the agent uploads
    to W&B; otherwise where trackd keeps the run and how to look at it."""
    inner = run._trackd
    if inner.mode == "disabled":
        return
    api = _TrackdApi(timeout=1.0)
    deadline = time.monotonic() + wait_s
    stored = None
    while True:
        try:
            stored = api.run(inner.path)
            state = stored.upload.get("state")
            if (stored.url or stored.upload.get("last_error")
                    or state not in ("pending", "waiting", "uploading")):
                break  # the URL, trouble, or no upload coming: nothing to wait for
        except NotFoundError:
            pass  # the agent has not materialised it yet
        except (AgentUnavailableError, TrackdError):
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    name = (stored.name if stored is not None else None) or inner.id
    if stored is not None and stored.name and inner._name is None:
        inner._name = stored.name
    uploading = stored is not None and stored.upload.get("state") not in (None, "disabled",
                                                                          "offline")
    if inner.mode == "online" and uploading:
        _term.log(f"Syncing run {name}")
        if stored.project_url:
            _term.log(f"⭐️ View project at {stored.project_url}")
        if stored.url:
            _term.log(f"🚀 View run at {stored.url}")
        else:
            _term.log(f"🚀 View run: the W&B backend has not answered yet; "
                      f"`trackctl show {inner.path}` prints the URL once it has")
        return
    where = inner.store_dir or "the trackd agent's store"
    if inner.mode == "offline":
        _term.log(f"Offline run {name} stored by trackd in {where}; upload it later "
                  f"with `trackctl sync {inner.id}`")
    else:
        # Only say there is no upload when the agent said so (a slow agent
        # may not know the run yet).
        why = " (no W&B upload configured)" if stored is not None else ""
        _term.log(f"Tracking run {name} with trackd{why}: stored in {where}; see it with "
                  f"`trackctl show {inner.path}`")


# ---- module-level calls --------------------------------------------------------

def _require(what: str) -> Run:
    run = _active()
    if run is None:
        raise Error(f"You must call wandb.init() before {what}()")
    return run


def log(data: Dict[str, Any], step: Optional[int] = None, commit: Optional[bool] = None,
        sync: Optional[bool] = None) -> None:
    """Run.log on the current run."""
    _require("wandb.log").log(data, step=step, commit=commit)


def save(glob_str: Optional[str] = None, base_path: Optional[str] = None,
         policy: str = "live") -> List[str]:
    """Run.save on the current run."""
    return _require("wandb.save").save(glob_str, base_path=base_path, policy=policy)


class Artifact(_TrackdArtifact):
    """wandb.Artifact: trackd.Artifact with W&B's signature (incremental and
    use_as are accepted and ignored)."""

    def __init__(self, name: str, type: str, description: Optional[str] = None,
                 metadata: Optional[Dict[str, Any]] = None, incremental: bool = False,
                 use_as: Optional[str] = None) -> None:
        super().__init__(name, type, description=description, metadata=metadata)


def log_artifact(artifact_or_path: Any, name: Optional[str] = None, type: Optional[str] = None,
                 aliases: Optional[List[str]] = None,
                 tags: Optional[List[str]] = None) -> Artifact:
    """Run.log_artifact on the current run."""
    return _require("wandb.log_artifact").log_artifact(artifact_or_path, name=name, type=type,
                                                      aliases=aliases, tags=tags)


def use_artifact(artifact_or_name: Any, type: Optional[str] = None,
                 aliases: Optional[List[str]] = None, use_as: Optional[str] = None) -> Artifact:
    """Run.use_artifact on the current run."""
    return _require("wandb.use_artifact").use_artifact(artifact_or_name, type=type)


def define_metric(name: str, step_metric: Union[str, Metric, None] = None,
                  step_sync: Optional[bool] = None, hidden: Optional[bool] = None,
                  summary: Optional[str] = None, goal: Optional[str] = None,
                  overwrite: Optional[bool] = None) -> Metric:
    """Run.define_metric on the current run."""
    return _require("wandb.define_metric").define_metric(
        name, step_metric=step_metric, step_sync=step_sync, hidden=hidden, summary=summary,
        goal=goal, overwrite=overwrite)


def finish(exit_code: Optional[int] = None, quiet: Optional[bool] = None) -> None:
    """Ends the current run (nothing if there is none)."""
    run = _active()
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def login(key: Optional[str] = None, relogin: Optional[bool] = None, host: Optional[str] = None,
          anonymous: Optional[str] = None, timeout: Optional[int] = None,
          verify: bool = False, **kwargs: Any) -> bool:
    """Nothing to do: the W&B key lives in the trackd agent's config, not in
    the script. Says so once; returns True as a successful login does."""
    _term.warn_once("login", "wandb.login(): no key needed with trackd (the agent holds the "
                             "W&B key, see its wandb sink config); nothing to do")
    return True


def watch(models: Any = None, criterion: Any = None, log: Optional[str] = "gradients",
          log_freq: int = 1000, idx: Optional[int] = None, log_graph: bool = False) -> None:
    """Not supported: one warning, then nothing."""
    _term.warn_once("watch", "wandb.watch() is not supported by trackd (no gradient or "
                             "parameter histograms); ignored")


def unwatch(models: Any = None) -> None:
    pass


def setup(settings: Any = None) -> None:
    _settings_dict(settings)


def teardown(exit_code: Optional[int] = None) -> None:
    finish(exit_code=exit_code)


__all__ = ["init", "log", "finish", "define_metric", "login", "watch", "unwatch", "Api",
           "Run", "Config", "Summary", "Settings", "Metric", "Error", "UsageError",
           "ConfigError", "UnsupportedError", "setup", "teardown", "__version__", "Image",
           "Histogram", "Table", "save", "Artifact", "log_artifact", "use_artifact",
           *sorted(_UNSUPPORTED_CLASSES), *sorted(_UNSUPPORTED_FUNCTIONS)]
