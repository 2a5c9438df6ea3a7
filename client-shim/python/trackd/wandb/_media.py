"""W&B's media classes and file calls, mapped onto trackd's (trackd._media,
trackd.Run.save / log_code), with W&B's signatures.

What W&B takes and trackd does not record (image boxes, masks, classes,
grouping; a table's dtype options) is warned about once, naming it, and left
out: the rest of the value is still logged."""
from __future__ import annotations

import fnmatch
import os
from typing import Any, Callable, List, Optional, Sequence

from .. import _media
from . import _term


def _warn_ignored(what: str, **given: Any) -> None:
    ignored = sorted(k for k, v in given.items() if v is not None)
    if ignored:
        _term.warn_once(f"{what}:{','.join(ignored)}",
                        f"{what}: {', '.join(ignored)} not supported by trackd, ignored")


class Image(_media.Image):
    """wandb.Image(data_or_path, mode=None, caption=None, grouping=None,
    classes=None, boxes=None, masks=None, file_type=None, normalize=True)."""

    def __init__(self, data_or_path: Any, mode: Optional[str] = None,
                 caption: Optional[str] = None, grouping: Optional[int] = None,
                 classes: Any = None, boxes: Any = None, masks: Any = None,
                 file_type: Optional[str] = None, normalize: bool = True) -> None:
        _warn_ignored("wandb.Image", mode=mode, grouping=grouping, classes=classes,
                      boxes=boxes, masks=masks, file_type=file_type,
                      normalize=None if normalize else False)
        super().__init__(data_or_path, caption=caption)


class Histogram(_media.Histogram):
    """wandb.Histogram(sequence=None, np_histogram=None, num_bins=64)."""


class Table(_media.Table):
    """wandb.Table(columns=None, data=None, rows=None, dataframe=None, dtype=None,
    optional=True, allow_mixed_types=False), with add_data and add_column."""

    def __init__(self, columns: Optional[Sequence[str]] = None,
                 data: Optional[Sequence[Sequence[Any]]] = None,
                 rows: Optional[Sequence[Sequence[Any]]] = None, dataframe: Any = None,
                 dtype: Any = None, optional: Any = True, allow_mixed_types: bool = False) -> None:
        _warn_ignored("wandb.Table", dtype=dtype,
                      optional=None if optional is True else optional,
                      allow_mixed_types=allow_mixed_types or None)
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist()
        super().__init__(columns=columns, data=data if data is not None else rows)

    def add_data(self, *data: Any) -> None:
        """One more row, as W&B's Table.add_data (checked like the others)."""
        self.__init__(columns=self.columns, data=[*self.data, list(data)])

    def add_column(self, name: str, data: Sequence[Any]) -> None:
        if len(data) != len(self.data):
            raise ValueError(f"wandb.Table.add_column: {len(data)} values for "
                             f"{len(self.data)} rows")
        self.__init__(columns=[*self.columns, name],
                      data=[[*r, v] for r, v in zip(self.data, data)])


def save(run: Any, glob_str: Optional[str] = None, base_path: Optional[str] = None,
         policy: str = "live") -> List[str]:
    """wandb.save / run.save on trackd's Run.save."""
    if glob_str is None:
        raise ValueError("wandb.save: glob_str is required")
    return run.save(os.fspath(glob_str), base_path=base_path, policy=policy)


def _py_file(path: str, root: str = "") -> bool:
    return path.endswith(".py")


def log_code(run: Any, root: Optional[str] = ".", name: Optional[str] = None,
             include_fn: Callable[..., bool] = _py_file,
             exclude_fn: Optional[Callable[..., bool]] = None) -> List[str]:
    """wandb.run.log_code on trackd's Run.log_code: the files of root that
    include_fn(path, root) picks and exclude_fn(path, root) does not (W&B's
    default excludes its own wandb/ directory and dot-directories)."""
    _warn_ignored("log_code", name=name)
    root = os.path.abspath(root or ".")

    def _call(fn: Callable[..., bool], path: str) -> bool:
        try:
            return bool(fn(path, root))
        except TypeError:  # W&B accepts one-argument functions too
            return bool(fn(path))

    def include(path: str) -> bool:
        rel = os.path.relpath(path, root)
        if any(fnmatch.fnmatch(part, "wandb") for part in rel.split(os.sep)[:-1]):
            return False
        if exclude_fn is not None and _call(exclude_fn, path):
            return False
        return _call(include_fn, path)

    return run.log_code(root=root, include=include)
