"""wandb.Api() over trackd.Api: W&B's public API for reading runs back, answered
by the trackd agent on this machine.

    api = wandb.Api()
    for run in api.runs("entity/project", filters={"state": "finished",
                                                   "config.lr": {"$lt": 0.1}}):
        print(run.name, run.summary["loss"], run.history(keys=["loss"], pandas=False))
    run = api.run("entity/project/run_id")
    run.name = "better-name"; run.update()

Filters: the subset of W&B's MongoDB-style filters that scripts use, applied
here to the agent's run list (match_filters): fields state, config.KEY (also
config.KEY.value), summary_metrics.KEY, tags, display_name, created_at, group,
job_type, notes, id (name, as in W&B, is the run id); operators $eq $ne $gt
$gte $lt $lte $in $nin $regex $exists, and $and $or $nor. Anything else raises
ValueError naming it (a filter silently ignored would return the wrong runs).
Order: [+|-]created_at (default "-created_at", newest first), display_name,
state, config.KEY, summary_metrics.KEY.

What W&B has and trackd's agent does not (yet): server-side
sampling (history(samples=) keeps evenly spaced rows of the full history).
"""
from __future__ import annotations

import datetime
import re
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

from .. import _api
from . import _term

_MISSING = object()


# ---- filters -----------------------------------------------------------------

def _timestamp(value: Any) -> float:
    """A created_at bound (ISO 8601 text, naive = UTC as W&B's server, or Unix
    seconds) as Unix seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime.datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"wandb.Api filters: created_at: not an ISO 8601 time: "
                             f"{value!r}") from None
    else:
        raise ValueError(f"wandb.Api filters: created_at: not a time: {value!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _iso(seconds: Optional[float]) -> Optional[str]:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _dig(obj: Any, path: List[str]) -> Any:
    for part in path:
        if not isinstance(obj, Mapping) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _field(run: Mapping[str, Any], name: str) -> Any:
    """The value a filter or order key names, _MISSING when the run has none."""
    if name in ("state", "group", "notes", "tags", "id"):
        value = run.get(name)
        return _MISSING if value is None else value
    if name in ("display_name", "displayName"):
        return run.get("display_name", _MISSING)
    if name == "name":  # W&B's "name" is the run id
        return run.get("id", _MISSING)
    if name in ("job_type", "jobType"):
        return run.get("job_type", _MISSING)
    if name in ("created_at", "createdAt"):
        # To the second, as W&B's createdAt (and Run.created_at here), so a
        # bound taken from a run's created_at does not match that run.
        value = run.get("start_time")
        return _MISSING if value is None else float(int(value))
    if name.startswith("config."):
        path = name[len("config."):].split(".")
        value = _dig(run.get("config") or {}, path)
        if value is _MISSING and path[-1] == "value":  # W&B stores config as {"value": v}
            value = _dig(run.get("config") or {}, path[:-1])
        return value
    for prefix in ("summary_metrics.", "summary."):
        if name.startswith(prefix):
            return _dig(run.get("summary") or {}, name[len(prefix):].split("."))
    raise ValueError(f"wandb.Api filters: unsupported field {name!r} (trackd supports state, "
                     "config.KEY, summary_metrics.KEY, tags, display_name, created_at, group, "
                     "job_type, notes, id)")


def _compare(op: str, have: Any, want: Any) -> bool:
    try:
        if op == "$gt":
            return have > want
        if op == "$gte":
            return have >= want
        if op == "$lt":
            return have < want
        if op == "$lte":
            return have <= want
    except TypeError:
        return False  # as MongoDB: values of different types do not compare
    raise AssertionError(op)


def _matches(field: str, have: Any, cond: Any) -> bool:
    is_time = field in ("created_at", "createdAt")
    if not isinstance(cond, Mapping) or not any(str(k).startswith("$") for k in cond):
        cond = {"$eq": cond}
    for op, want in cond.items():
        if op == "$exists":
            if (have is not _MISSING) != bool(want):
                return False
            continue
        if have is _MISSING:
            if op in ("$ne", "$nin"):
                continue
            return False
        if is_time and op in ("$gt", "$gte", "$lt", "$lte", "$eq", "$ne"):
            want = _timestamp(want)
        if op == "$eq":
            ok = want in have if isinstance(have, list) and not isinstance(want, list) \
                else have == want
        elif op == "$ne":
            ok = want not in have if isinstance(have, list) and not isinstance(want, list) \
                else have != want
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok = _compare(op, have, want)
        elif op in ("$in", "$nin"):
            if not isinstance(want, (list, tuple, set)):
                raise ValueError(f"wandb.Api filters: {field}: {op} takes a list")
            values = have if isinstance(have, list) else [have]
            hit = any(v in want for v in values)
            ok = hit if op == "$in" else not hit
        elif op == "$regex":
            ok = isinstance(have, str) and re.search(want, have) is not None
        else:
            raise ValueError(f"wandb.Api filters: {field}: unsupported operator {op!r} "
                             "(trackd supports $eq $ne $gt $gte $lt $lte $in $nin $regex "
                             "$exists)")
        if not ok:
            return False
    return True


def match_filters(run: Mapping[str, Any], filters: Optional[Mapping[str, Any]]) -> bool:
    """Whether a run (the agent's JSON of it) passes W&B-style filters."""
    for key, cond in (filters or {}).items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(cond, (list, tuple)):
                raise ValueError(f"wandb.Api filters: {key} takes a list of filters")
            results = [match_filters(run, c) for c in cond]
            ok = all(results) if key == "$and" else any(results)
            if key == "$nor":
                ok = not ok
        elif key.startswith("$"):
            raise ValueError(f"wandb.Api filters: unsupported operator {key!r}")
        else:
            ok = _matches(key, _field(run, key), cond)
        if not ok:
            return False
    return True


def _order_key(order: str) -> Callable[[Mapping[str, Any]], Any]:
    field = order.lstrip("+-")
    _field({}, field)  # an unknown field fails now, not at the first comparison

    def key(run: Mapping[str, Any]) -> Any:
        value = _field(run, field)
        # Runs without the value go last, whatever the direction: W&B lists
        # them after the others too.
        if value is _MISSING or value is None:
            return (1, 0, "")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, 0, value)
        return (0, 1, str(value))
    return key


# ---- runs --------------------------------------------------------------------

class Run:
    """One run as wandb.Api returns it (W&B's wandb.apis.public.Run)."""

    def __init__(self, api: "Api", run: _api.ApiRun):
        self._api = api
        self._run = run
        self._name = run.name
        self._tags = list(run.tags)
        self._notes = run.notes

    # identity and state
    id = property(lambda self: self._run.id)
    entity = property(lambda self: self._run.entity)
    project = property(lambda self: self._run.project)
    state = property(lambda self: self._run.state)
    config = property(lambda self: dict(self._run.config))
    summary = property(lambda self: dict(self._run.summary))
    group = property(lambda self: self._run.group)
    job_type = property(lambda self: self._run.job_type)
    url = property(lambda self: self._run.url)
    created_at = property(lambda self: _iso(self._run.start_time))
    json = property(lambda self: self._run.json)

    @property
    def path(self) -> List[str]:
        return [self.entity, self.project, self.id]

    @property
    def storage_id(self) -> str:
        return self.id

    @property
    def name(self) -> Optional[str]:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    display_name = name

    @property
    def tags(self) -> List[str]:
        return self._tags

    @tags.setter
    def tags(self, value: List[str]) -> None:
        self._tags = list(value)

    @property
    def notes(self) -> Optional[str]:
        return self._notes

    @notes.setter
    def notes(self, value: Optional[str]) -> None:
        self._notes = value

    def update(self) -> None:
        """Saves a changed name, tags and notes (as W&B's run.update()): one
        update through the agent, so the change is kept across restarts and
        reaches W&B through the agent's wandb sink."""
        name = self._name if self._name and self._name != self._run.name else None
        tags = self._tags if self._tags != list(self._run.tags) else None
        notes = None
        if (self._notes or "") != (self._run.notes or ""):
            notes = self._notes or ""
        self._run.update(name=name, tags=tags, notes=notes)
        self.load()

    def load(self, force: bool = False) -> None:
        self._run.refresh()
        self._name = self._run.name
        self._tags = list(self._run.tags)
        self._notes = self._run.notes

    def _rows(self, keys: Optional[List[str]]) -> List[Dict[str, Any]]:
        rows = self._run.history(keys=keys)
        if keys:
            # W&B returns only the rows that hold every key asked for.
            rows = [r for r in rows if all(k in r for k in keys)]
        return rows

    def history(self, samples: int = 500, keys: Optional[List[str]] = None,
                x_axis: str = "_step", pandas: bool = True, stream: str = "default") -> Any:
        """At most `samples` rows (evenly spaced over the whole history, the
        first and last kept), with only `keys` and x_axis when keys are given.
        pandas=True: a DataFrame when pandas is installed (else a warning and
        the list, as W&B)."""
        if stream != "default":
            rows = self._run.history(stream=stream)
        else:
            wanted = list(keys) + ([x_axis] if x_axis not in keys else []) if keys else None
            rows = self._rows(wanted)
            if wanted:
                rows = [{k: r[k] for k in ["_step", *wanted] if k in r} for r in rows]
        if samples is not None and 0 < samples < len(rows):
            n = len(rows)
            picked = sorted({round(i * (n - 1) / (samples - 1)) for i in range(samples)}) \
                if samples > 1 else [0]
            rows = [rows[i] for i in picked]
        if pandas:
            try:
                import pandas as pd  # noqa: PLC0415 (optional, as in W&B)
            except ImportError:
                _term.warn_once("pandas", "Unable to load pandas, call history with pandas=False")
                return rows
            return pd.DataFrame.from_records(rows)
        return rows

    def scan_history(self, keys: Optional[List[str]] = None, page_size: int = 1000,
                     min_step: Optional[int] = None,
                     max_step: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Every row, read from the agent `page_size` rows at a time; with
        keys, only the rows holding all of them, and only those keys."""
        line = 0
        page_size = max(1, int(page_size))
        while True:
            page = _api._query(self._api._api.socket, self._api._api.timeout, "history",
                               run=self._run.path, keys=list(keys) if keys else None,
                               from_line=line, max_lines=page_size)
            lines = page.get("lines") or []
            for row in lines:
                step = row.get("_step")
                if min_step is not None and (step is None or step < min_step):
                    continue
                if max_step is not None and (step is None or step >= max_step):
                    continue
                if keys:
                    if not all(k in row for k in keys):
                        continue
                    row = {k: row[k] for k in keys}
                yield row
            nxt = page.get("next_line", line + len(lines))
            total = page.get("total_lines", nxt)
            if not lines or nxt <= line or nxt >= total:
                return
            line = nxt

    def __repr__(self) -> str:
        return f"<Run {self.entity}/{self.project}/{self.id} ({self.state})>"


class Runs(list):
    """The runs of one query (a list; W&B's is a lazy paginated sequence)."""


class Api:
    """wandb.Api(): reads runs from the trackd agent. overrides may name
    "entity" and "project" (the defaults of paths without them); api_key is
    not needed (the agent holds the W&B key) and is ignored."""

    def __init__(self, overrides: Optional[Dict[str, Any]] = None,
                 timeout: Optional[int] = None, api_key: Optional[str] = None):
        self._api = _api.Api(timeout=float(timeout) if timeout else 10.0)
        self.settings = dict(overrides or {})

    @property
    def default_entity(self) -> Optional[str]:
        return self.settings.get("entity")

    def _project_path(self, path: Optional[str]) -> Optional[str]:
        if path is None:
            entity, project = self.settings.get("entity"), self.settings.get("project")
            if project:
                return f"{entity}/{project}" if entity else project
            return None
        return path.strip("/")

    def runs(self, path: Optional[str] = None, filters: Optional[Dict[str, Any]] = None,
             order: str = "-created_at", per_page: int = 50,
             include_sweeps: bool = True) -> Runs:
        """The runs of "entity/project" (or "project") that pass `filters`, in
        `order`."""
        key = _order_key(order)
        listed = self._api.runs(self._project_path(path))
        picked = [r for r in listed if match_filters(r.json, filters)]
        picked.sort(key=lambda r: key(r.json), reverse=order.startswith("-"))
        if order.startswith("-"):
            # reverse=True put the runs without a value first: last again.
            picked.sort(key=lambda r: key(r.json)[0])
        return Runs(Run(self, r) for r in picked)

    def artifact(self, name: str, type: Optional[str] = None) -> Any:
        """W&B's Api().artifact("[[entity/]project/]name[:alias|:vN]")."""
        return self._api.artifact(name, type=type)

    def artifacts(self, type_name: Optional[str] = None, name: Optional[str] = None,
                  per_page: int = 50, tags: Any = None) -> List[Any]:
        """W&B's Api().artifacts(type_name, name): the versions of a collection."""
        return self._api.artifacts(type_name, name)

    def run(self, path: str) -> Run:
        """The run "entity/project/run_id" (also "entity/project/runs/run_id",
        as W&B's URLs, or a bare id)."""
        parts = [p for p in path.strip("/").split("/") if p]
        if len(parts) == 4 and parts[2] == "runs":
            parts = [parts[0], parts[1], parts[3]]
        return Run(self, self._api.run("/".join(parts)))
