"""trackd.Artifact: W&B's artifacts, versioned by the trackd agent.

An Artifact is built here (add_file, add_dir, add, add_reference) and logged
with ``run.log_artifact(artifact, aliases=[...])``: libtrackd reads nothing
itself; this module reads each file and hands its bytes to td_artifact_add_bytes
(SHA-256 for the agent's blob store, W&B's base64 MD5 for the manifest), and
td_artifact_commit records the version once every file is queued. The agent
assigns versions (v0, v1, ... per name and project; identical content is the
same version) and keeps the files in its store (agent/artifacts/artifacts.h).

``run.use_artifact("name:alias")`` and ``Api().artifact("entity/project/name:vN")``
return a logged Artifact: ``version``, ``aliases``, ``digest``, ``manifest``,
``metadata`` answer from the agent; ``download(root)`` materialises the files,
each checked against its digests before it takes its name.
"""
from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import time
from typing import Any, Dict, Iterable, List, Optional

from . import _lib
from .errors import AgentError, AgentUnavailableError, InvalidValueError, NotFoundError, \
    TrackdError

_MANIFEST_PREFIX = "wandb-artifact-manifest-v1\n"


class ArtifactCorruptError(TrackdError):
    """A downloaded file did not match its manifest digest (the agent's store
    holds a damaged copy); it was not written under its name."""


class ArtifactEntry:
    """One entry of a manifest: ``path``, ``digest`` (base64 MD5, or the
    reference's URI), ``size``, ``ref``; ``download()`` materialises it."""

    def __init__(self, artifact: "Artifact", path: str, digest: str, size: int,
                 ref: Optional[str] = None, local_path: Optional[str] = None,
                 sha256: Optional[str] = None):
        self._artifact = artifact
        self.path = path
        self.digest = digest
        self.size = size
        self.ref = ref
        self.local_path = local_path
        self.sha256 = sha256

    def download(self, root: Optional[str] = None) -> str:
        if self.ref:
            return self.ref
        root = self._artifact.download(root)
        return os.path.join(root, self.path)

    def __repr__(self) -> str:
        return f"ArtifactEntry({self.path!r}, digest={self.digest!r}, size={self.size})"


def _md5_b64_file(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


def _query(socket: Optional[str], timeout: float, kind: str, **fields: Any) -> Dict[str, Any]:
    from ._api import _query as q
    return q(socket, timeout, kind, **fields)


class Artifact:
    """A W&B-style artifact: ``Artifact(name, type, description=, metadata=)``."""

    def __init__(self, name: str, type: str, description: Optional[str] = None,
                 metadata: Optional[Dict[str, Any]] = None):
        self.name = name
        self.type = type
        self.description = description
        self.metadata = dict(metadata or {})
        self._entries: Dict[str, ArtifactEntry] = {}
        self._add_bytes: Dict[str, bytes] = {}
        # Set once logged or fetched from the agent.
        self._info: Optional[Dict[str, Any]] = None
        self._socket: Optional[str] = None
        self._project_hint: Optional[str] = None
        self._logged_aliases: List[str] = []
        self._download_root: Optional[str] = None

    # ---- building ----

    def _check_draft(self) -> None:
        if self._info is not None:
            raise TrackdError(f"trackd: artifact {self.name} is logged: it cannot change")

    def add_file(self, local_path: str, name: Optional[str] = None) -> ArtifactEntry:
        """Adds the file at local_path as `name` (default: its base name)."""
        self._check_draft()
        if not os.path.isfile(local_path):
            raise InvalidValueError(f"trackd: add_file: {local_path!r} is not a file")
        name = (name or os.path.basename(local_path)).replace(os.sep, "/")
        e = ArtifactEntry(self, name, _md5_b64_file(local_path), os.path.getsize(local_path),
                          local_path=local_path)
        self._entries[name] = e
        self._add_bytes.pop(name, None)
        return e

    def add_dir(self, local_path: str, name: Optional[str] = None) -> None:
        """Adds every file under local_path, named by its path relative to it
        (under `name`/ when given)."""
        self._check_draft()
        if not os.path.isdir(local_path):
            raise InvalidValueError(f"trackd: add_dir: {local_path!r} is not a directory")
        for dirpath, dirnames, filenames in os.walk(local_path):
            dirnames.sort()
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, local_path).replace(os.sep, "/")
                self.add_file(full, f"{name.rstrip('/')}/{rel}" if name else rel)

    def add(self, obj: Any, name: str) -> ArtifactEntry:
        """Adds a trackd.Table as <name>.table.json (W&B's layout), or a
        trackd.Image holding encoded bytes as <name>.png."""
        self._check_draft()
        from ._media import Image, Table
        if isinstance(obj, Table):
            data = json.dumps({"_type": "table", "columns": obj.columns, "data": obj.data},
                              separators=(",", ":")).encode()
            path = name if name.endswith(".table.json") else name + ".table.json"
        elif isinstance(obj, Image) and getattr(obj, "_bytes", None):
            data = obj._bytes
            path = name if "." in os.path.basename(name) else name + ".png"
        else:
            raise InvalidValueError(f"trackd: add: {type(obj).__name__} cannot be added "
                                    "(a Table, or an Image made from PNG/JPEG bytes or a file)")
        e = ArtifactEntry(self, path, base64.b64encode(hashlib.md5(data).digest()).decode(),
                          len(data))
        self._entries[path] = e
        self._add_bytes[path] = data
        return e

    def add_reference(self, uri: str, name: Optional[str] = None) -> ArtifactEntry:
        """Records `uri` as an entry (never fetched): its digest is the URI."""
        self._check_draft()
        name = name or uri.rstrip("/").rsplit("/", 1)[-1] or "reference"
        e = ArtifactEntry(self, name, uri, 0, ref=uri)
        self._entries[name] = e
        return e

    # ---- W&B's manifest ----

    @property
    def digest(self) -> str:
        """W&B's artifact digest: the hex MD5 of its manifest's entries."""
        if self._info is not None:
            return self._info["digest"]
        h = hashlib.md5(_MANIFEST_PREFIX.encode())
        for path in sorted(self._entries, key=lambda p: p.encode()):
            h.update(f"{path}:{self._entries[path].digest}\n".encode())
        return h.hexdigest()

    @property
    def manifest(self) -> Dict[str, Any]:
        if self._info is not None and self._manifest_json:
            return json.loads(self._manifest_json)
        contents = {}
        for path in sorted(self._entries, key=lambda p: p.encode()):
            e = self._entries[path]
            c: Dict[str, Any] = {"digest": e.digest}
            if e.ref:
                c["ref"] = e.ref
            c["size"] = e.size
            contents[path] = c
        return {"version": 1, "storagePolicy": "wandb-storage-policy-v1",
                "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents}

    # ---- logging (Run.log_artifact) ----

    def _log_with(self, run: Any, handle: Any, aliases: List[str]) -> None:
        lib = _lib.lib()
        out = ctypes.c_void_p()
        meta = json.dumps(self.metadata, separators=(",", ":"))
        rc = lib.td_artifact_begin(handle, _lib.text(self.name, "artifact name"),
                                   _lib.text(self.type, "artifact type"),
                                   _lib.text(self.description or "", "description"),
                                   meta.encode(), ctypes.byref(out))
        if rc != _lib.TD_OK:
            raise InvalidValueError(f"trackd: log_artifact: {_lib.last_error()}")
        a = out.value
        try:
            for path, e in self._entries.items():
                if e.ref:
                    rc = lib.td_artifact_add_reference(a, _lib.text(path, "path"),
                                                       _lib.text(e.ref, "ref"))
                elif path in self._add_bytes:
                    data = self._add_bytes[path]
                    rc = lib.td_artifact_add_bytes(a, _lib.text(path, "path"), data, len(data))
                else:
                    # Read by libtrackd as it is sent: no copy in memory.
                    rc = lib.td_artifact_add_file(a, _lib.text(path, "path"),
                                                  _lib.text(e.local_path, "local path"))
                if rc != _lib.TD_OK:
                    raise _error("log_artifact", rc)
            arr = (ctypes.c_char_p * max(len(aliases), 1))(
                *[_lib.text(x, "alias") for x in aliases])
            rc = lib.td_artifact_commit(a, arr, len(aliases))
            if rc != _lib.TD_OK:
                raise _error("log_artifact", rc)
        finally:
            lib.td_artifact_free(a)
        self._socket = run._socket
        self._project_hint = f"{run.entity}/{run.project}"
        self._logged_aliases = list(aliases)
        self._pending_digest = self.digest

    def wait(self, timeout: float = 60.0) -> "Artifact":
        """Waits until the agent has made the logged version (its files are
        stored first); then version and aliases answer."""
        if self._info is not None:
            return self
        if self._project_hint is None:
            raise TrackdError("trackd: wait: the artifact was not logged")
        deadline = time.monotonic() + timeout
        while True:
            res = _query(self._socket, 10.0, "artifacts", project=self._project_hint,
                         name=self.name)
            for info in res.get("artifacts") or []:
                if info.get("digest") == self._pending_digest:
                    self._load(self._socket, info["path"])
                    return self
            if time.monotonic() > deadline:
                raise TrackdError(f"trackd: artifact {self.name} ({self._pending_digest}) "
                                  f"did not appear within {timeout} s")
            time.sleep(0.05)

    # ---- a logged version ----

    def _load(self, socket: Optional[str], ref: str, project: Optional[str] = None) -> None:
        res = _query(socket, 10.0, "artifact", artifact=ref, project=project)
        info = res["artifact"]
        self._info = info
        self._socket = socket
        self._manifest_json = res.get("manifest_json") or ""
        self.name = info["name"]
        self.type = info["type"]
        self.description = info.get("description") or None
        try:
            self.metadata = json.loads(info.get("metadata_json") or "{}")
        except ValueError:
            self.metadata = {}
        self._entries = {}
        for e in res.get("entries") or []:
            self._entries[e["path"]] = ArtifactEntry(self, e["path"], e["digest"], e["size"] or 0,
                                                     ref=e.get("ref"), sha256=e.get("sha256"))

    @classmethod
    def _from_agent(cls, socket: Optional[str], ref: str,
                    project: Optional[str] = None) -> "Artifact":
        a = cls.__new__(cls)
        Artifact.__init__(a, "_", "_")
        a._load(socket, ref, project)
        return a

    def _logged(self) -> Dict[str, Any]:
        if self._info is None:
            self.wait()
        return self._info  # type: ignore[return-value]

    @property
    def version(self) -> str:
        return f"v{self._logged()['version']}"

    @property
    def aliases(self) -> List[str]:
        return list(self._logged().get("aliases") or [])

    @property
    def qualified_name(self) -> str:
        i = self._logged()
        return f"{i['entity']}/{i['project']}/{i['name']}"

    @property
    def source_qualified_name(self) -> str:
        return self._logged()["path"]

    @property
    def logged_by(self) -> Optional[str]:
        return self._logged().get("logged_by") or None

    @property
    def used_by(self) -> List[str]:
        return list(self._logged().get("used_by") or [])

    @property
    def size(self) -> int:
        if self._info is not None:
            return self._info.get("size") or 0
        return sum(e.size for e in self._entries.values() if not e.ref)

    @property
    def id(self) -> Optional[str]:
        return self._info["path"] if self._info else None

    def files(self) -> List[ArtifactEntry]:
        return [self._entries[p] for p in sorted(self._entries)]

    def get_path(self, name: str) -> ArtifactEntry:
        e = self._entries.get(name)
        if e is None:
            raise KeyError(f"trackd: artifact {self.name} has no entry {name!r}")
        return e

    def get_entry(self, name: str) -> ArtifactEntry:
        return self.get_path(name)

    def download(self, root: Optional[str] = None) -> str:
        """Materialises the version's files under root (default
        ./artifacts/<name>:<version>), each checked (size, SHA-256, MD5)
        before it takes its name. Returns root."""
        info = self._logged()
        if root is None:
            root = self._download_root or os.path.join(".", "artifacts",
                                                       f"{info['name']}:v{info['version']}")
        lib = _lib.lib()
        out = ctypes.c_void_p()
        rc = lib.td_artifact_download(_lib.text(self._socket, "socket"),
                                      _lib.text(info["path"], "artifact"), None,
                                      _lib.text(os.path.abspath(root), "root"), 60000,
                                      ctypes.byref(out))
        if rc != _lib.TD_OK:
            raise _error("download", rc)
        _lib.take_string(out)
        self._download_root = root
        return root

    def __repr__(self) -> str:
        if self._info is not None:
            return f"<Artifact {self._info['path']}>"
        return f"<Artifact {self.name} (draft, {len(self._entries)} entries)>"


def _error(what: str, rc: int) -> TrackdError:
    msg = _lib.last_error()
    if rc == _lib.TD_ERR_CORRUPT:
        return ArtifactCorruptError(f"trackd: {what}: {msg}")
    if rc == _lib.TD_ERR_INVALID:
        return InvalidValueError(f"trackd: {what}: {msg}")
    if rc == _lib.TD_ERR_NOT_FOUND:
        return NotFoundError(f"trackd: {what}: {msg}")
    if rc == _lib.TD_ERR_TRANSPORT:
        return AgentUnavailableError(f"trackd: {what}: {msg}")
    if rc == _lib.TD_ERR_REJECTED:
        return AgentError(f"trackd: {what}: {msg}")
    return TrackdError(f"trackd: {what}: {_lib.strerror(rc)}: {msg}")


def artifact_from_path(path: str, name: Optional[str], type: Optional[str]) -> Artifact:
    """run.log_artifact("some/dir"): an artifact of that file or directory."""
    a = Artifact(name or os.path.basename(os.path.abspath(path)).replace(" ", "_") or "artifact",
                 type or "unspecified")
    if os.path.isdir(path):
        a.add_dir(path)
    else:
        a.add_file(path)
    return a


def iter_versions(socket: Optional[str], timeout: float, type: Optional[str],
                  name: Optional[str]) -> Iterable[Artifact]:
    project = None
    if name and "/" in name:
        project, name = name.rsplit("/", 1)
    res = _query(socket, timeout, "artifacts", project=project, type=type, name=name)
    for info in res.get("artifacts") or []:
        yield Artifact._from_agent(socket, info["path"])
