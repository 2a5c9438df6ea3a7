"""trackd.Api: reading runs back from the agent (as wandb.Api reads W&B).

Every call is one query to the agent's run store over its socket (libtrackd's
td_query_agent, one typed request each); the answer is JSON (shapes in
agent/sinks/local/query.c):

    runs    → {"runs": [RUN, ...]}
    run     → {"run": RUN, "upload": UPLOAD}
    history → {"run", "from_line", "next_line", "total_lines", "lines": [{...}, ...]}
    rename  → {"ok": true} (ApiRun.update: a new name, tags and/or notes)

RUN carries id, entity, project, path, display_name, state, start_time,
end_time, exit_code, host, pids, uid, notes, tags, group, job_type, mode, dir,
history_lines, summary and config. History lines may hold bare NaN / Infinity,
which Python's json module reads. UPLOAD is the agent's wandb sink's view of
the run: {"sink", "state", "run_url", "project_url", "last_error"}; the URLs are
"" until the W&B backend answered (and the state is "disabled" without a sink).
"""
from __future__ import annotations

import ctypes
import json
import time
from typing import Any, Dict, Iterable, List, Optional

from . import _lib
from .errors import AgentError, AgentUnavailableError, NotFoundError, TrackdError

_HISTORY_PAGE = 1000


_KINDS = {"runs": _lib.TD_QUERY_RUNS, "run": _lib.TD_QUERY_RUN,
          "history": _lib.TD_QUERY_HISTORY, "rename": _lib.TD_QUERY_RENAME,
          "files": _lib.TD_QUERY_FILES, "artifacts": _lib.TD_QUERY_ARTIFACTS,
          "artifact": _lib.TD_QUERY_ARTIFACT}


def _query(socket: Optional[str], timeout: float, kind: str, **fields: Any) -> Dict[str, Any]:
    lib = _lib.lib()
    q = _lib.TdQuery()
    keep: List[Any] = []
    q.kind = _KINDS[kind]
    for name in ("run", "project", "state", "name", "stream", "notes", "type", "artifact"):
        value = fields.get(name)
        if value is not None:
            b = _lib.text(value, name)
            keep.append(b)
            setattr(q, name, b)
    tags = fields.get("tags")
    if tags is not None:
        # A list (possibly empty) replaces the run's tags; None leaves them.
        arr = (ctypes.c_char_p * max(len(tags), 1))(*[_lib.text(t, "tags") for t in tags])
        keep.append(arr)
        q.set_tags = True
        q.tags = arr
        q.n_tags = len(tags)
    keys = fields.get("keys")
    if keys:
        arr = (ctypes.c_char_p * len(keys))(*[k.encode("utf-8") for k in keys])
        keep.append(arr)
        q.keys = arr
        q.n_keys = len(keys)
    q.from_line = fields.get("from_line", 0)
    q.max_lines = fields.get("max_lines", 0)
    out = ctypes.c_void_p()
    rc = lib.td_query_agent(_lib.text(socket), ctypes.byref(q), int(timeout * 1000),
                            ctypes.byref(out))
    if rc != _lib.TD_OK:
        msg = _lib.last_error()
        if rc == _lib.TD_ERR_NOT_FOUND:
            raise NotFoundError(msg)
        if rc == _lib.TD_ERR_TRANSPORT:
            raise AgentUnavailableError(msg)
        if rc == _lib.TD_ERR_REJECTED:
            raise AgentError(msg)
        raise TrackdError(f"{_lib.strerror(rc)}: {msg}")
    return json.loads(_lib.take_string(out))


class ApiRun:
    """One run as the agent knows it. Attributes mirror the agent's JSON;
    ``.json`` is the whole object."""

    def __init__(self, api: "Api", data: Dict[str, Any]):
        self._api = api
        self.json = data

    def _get(self, key: str, default: Any = None) -> Any:
        return self.json.get(key, default)

    id = property(lambda self: self._get("id"))
    name = property(lambda self: self._get("display_name"))
    display_name = name
    state = property(lambda self: self._get("state"))
    entity = property(lambda self: self._get("entity"))
    project = property(lambda self: self._get("project"))
    path = property(lambda self: self._get("path")
                    or f"{self._get('entity')}/{self._get('project')}/{self._get('id')}")
    dir = property(lambda self: self._get("dir"))
    config = property(lambda self: self._get("config") or {})
    summary = property(lambda self: self._get("summary") or {})
    start_time = property(lambda self: self._get("start_time"))
    end_time = property(lambda self: self._get("end_time"))
    exit_code = property(lambda self: self._get("exit_code"))
    host = property(lambda self: self._get("host"))
    notes = property(lambda self: self._get("notes"))
    tags = property(lambda self: self._get("tags") or [])
    group = property(lambda self: self._get("group"))
    job_type = property(lambda self: self._get("job_type"))
    mode = property(lambda self: self._get("mode"))
    history_lines = property(lambda self: self._get("history_lines"))
    # Made by `trackctl import` from a W&B transaction file.
    imported = property(lambda self: bool(self._get("imported")))

    @property
    def upload(self) -> Dict[str, Any]:
        """The upload to W&B as the agent's wandb sink sees it (state, run_url,
        project_url, last_error). Runs listed by Api.runs() do not carry it:
        the first access asks the agent."""
        if "upload" not in self.json:
            self.refresh()
        return self.json.get("upload") or {}

    @property
    def url(self) -> Optional[str]:
        """The run's page in the W&B UI once the backend has answered the
        agent (None before, for offline runs, and without a wandb sink)."""
        return self.upload.get("run_url") or None

    @property
    def project_url(self) -> Optional[str]:
        """The run's project in the W&B UI (None as for url)."""
        return self.upload.get("project_url") or None

    def history(self, keys: Optional[Iterable[str]] = None,
                stream: str = "default") -> List[Dict[str, Any]]:
        """Every history row (all pages), optionally only some keys (the agent
        adds _step). stream="events": the system-metrics samples instead, as
        W&B's run.history(stream="events") ("system" is the same; one dict per sample: _wandb,
        _timestamp, _runtime, system.<key>; keys keep _runtime and _timestamp)."""
        if stream not in ("default", "history", "events", "system"):
            raise ValueError(f"stream is 'default' or 'events', not {stream!r}")
        keys = list(keys) if keys is not None else None
        rows: List[Dict[str, Any]] = []
        line = 0
        while True:
            page = _query(self._api.socket, self._api.timeout, "history", run=self.path,
                          keys=keys, from_line=line, max_lines=_HISTORY_PAGE,
                          stream="events" if stream in ("events", "system") else None)
            lines = page.get("lines") or []
            rows.extend(lines)
            nxt = page.get("next_line", line + len(lines))
            total = page.get("total_lines", nxt)
            if not lines or nxt <= line or nxt >= total:
                return rows
            line = nxt

    @property
    def system_metrics(self) -> List[Dict[str, Any]]:
        """The run's system-metrics samples, oldest first: history(stream="events")."""
        return self.history(stream="events")

    @property
    def metadata(self) -> Dict[str, Any]:
        """The run's environment (W&B's wandb-metadata.json fields: program,
        args, git, host, os, cpu, memory, gpu …); {} until the agent sampled it."""
        page = _query(self._api.socket, self._api.timeout, "history", run=self.path,
                      stream="metadata", from_line=0, max_lines=1)
        lines = page.get("lines") or []
        return lines[0] if lines else {}

    def files(self) -> List[Dict[str, Any]]:
        """The run's files (media, saved files) in its files/ dir, sorted by
        name: [{"name", "size", "sha256", "kind"}] (kind image, table or file)."""
        return _query(self._api.socket, self._api.timeout, "files",
                      run=self.path).get("files") or []

    def refresh(self) -> "ApiRun":
        self.json = self._api.run(self.path).json
        return self

    def update(self, name: Optional[str] = None, tags: Optional[Iterable[str]] = None,
               notes: Optional[str] = None) -> "ApiRun":
        """Changes the run's display name, tags (the whole list; [] removes
        them) and/or notes ("" clears them); None leaves one as it is. Works on
        running and finished runs of the caller (root: anyone's). The agent
        logs the change, so it survives restarts and reaches W&B; this waits
        (bounded by the Api's timeout) until the run store shows it.
        AgentError if the agent refuses it (a limit: 64 tags of at most 128
        bytes, notes up to the agent's string limit; another user's run)."""
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError("trackd: the run name must be a non-empty str")
        tag_list = None
        if tags is not None:
            if isinstance(tags, str):
                raise TypeError("trackd: tags is a list of str, not a str")
            tag_list = [str(t) for t in tags]
        if name is None and tag_list is None and notes is None:
            return self
        _query(self._api.socket, self._api.timeout, "rename", run=self.path, name=name,
               tags=tag_list, notes=notes)
        # The agent's run store applies the logged change a moment later.
        deadline = time.monotonic() + self._api.timeout
        while True:
            self.refresh()
            shown = ((name is None or self.name == name)
                     and (tag_list is None or list(self.tags) == tag_list)
                     and (notes is None or (self.notes or "") == notes))
            if shown or time.monotonic() >= deadline:
                return self
            time.sleep(0.02)

    def __repr__(self) -> str:
        return f"<trackd.ApiRun {self.path} ({self.state})>"


class Api:
    """Reads runs from the agent at `socket` (default: TRACKD_SOCKET, else the
    agent's default socket)."""

    def __init__(self, socket: Optional[str] = None, timeout: float = 10.0):
        self.socket = socket
        self.timeout = timeout

    def runs(self, path: Optional[str] = None, state: Optional[str] = None) -> List[ApiRun]:
        """Runs of "entity/project" or "project" (all runs if None), optionally
        only those in `state` (running, finished, failed, crashed, killed);
        newest first, as W&B's Api().runs()."""
        data = _query(self.socket, self.timeout, "runs", project=path, state=state)
        # The agent lists them by run dir name (start time to the second, then
        # id); the start time in microseconds orders runs of one second too.
        runs = sorted(data.get("runs", []), key=lambda r: r.get("start_time") or 0,
                      reverse=True)
        return [ApiRun(self, r) for r in runs]

    def run(self, path: str) -> ApiRun:
        """The run "entity/project/id" (or a bare "id"); NotFoundError if none."""
        data = _query(self.socket, self.timeout, "run", run=path)
        run = dict(data["run"])
        run["upload"] = data.get("upload") or {}
        return ApiRun(self, run)

    def artifact(self, name: str, type: Optional[str] = None) -> Any:
        """One artifact version: "[[entity/]project/]name[:alias|:vN]" (no
        alias: latest); NotFoundError if none, AgentError if another user's."""
        from ._artifact import Artifact
        a = Artifact._from_agent(self.socket, name)
        if type is not None and a.type != type:
            raise NotFoundError(f"trackd: artifact {name} has type {a.type}, not {type}")
        return a

    def artifacts(self, type_name: Optional[str] = None,
                  name: Optional[str] = None) -> List[Any]:
        """The versions the caller may read, of `type_name` and of the
        collection `name` ("[entity/project/]name") when given, oldest first."""
        from ._artifact import iter_versions
        return list(iter_versions(self.socket, self.timeout, type_name, name))

    def status(self) -> Dict[str, Any]:
        """The agent's status (counters, state dir, version)."""
        lib = _lib.lib()
        out = ctypes.c_void_p()
        rc = lib.td_status_agent(_lib.text(self.socket), int(self.timeout * 1000),
                                 ctypes.byref(out))
        if rc != _lib.TD_OK:
            msg = _lib.last_error()
            if rc == _lib.TD_ERR_TRANSPORT:
                raise AgentUnavailableError(msg)
            raise AgentError(msg)
        return json.loads(_lib.take_string(out))
