"""The W&B features trackd does not have yet: some media kinds, restore, the
model registry (log_model, use_model, link_model). (Images, histograms,
tables, save and log_code are trackd's: trackd.wandb._media; artifacts are
trackd's: trackd._artifact.)

This is the one place that maps them. Each name below is what a script calls
(wandb.Image(...), run.save(...), wandb.Artifact(...)); until trackd records
files, media and artifacts, calling it raises UnsupportedError naming the
feature, so a script fails at the line that needs it rather than logging
something half-recorded. When trackd gains a feature, replace its entry here
with the mapping to trackd's API; nothing else in trackd.wandb refers to them.
"""
from __future__ import annotations

from typing import Any

from ..errors import TrackdError

FILES = "this kind of media (trackd records images, histograms, tables and saved files)"
ARTIFACTS = "artifacts of the model registry (trackd keeps Artifact, log_artifact, use_artifact)"


class UnsupportedError(TrackdError, NotImplementedError):
    """A W&B feature trackd does not support yet."""


def _refuse(what: str, feature: str) -> UnsupportedError:
    return UnsupportedError(f"trackd.wandb: {what} is not supported: trackd does not record "
                            f"{feature} yet (see the README, 'Coming from W&B')")


def _unsupported_class(name: str, feature: str) -> type:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise _refuse(f"wandb.{name}", feature)

    return type(name, (), {"__init__": __init__, "__doc__": f"Not supported yet: {feature}."})


def _unsupported_function(name: str, feature: str):
    def function(*args: Any, **kwargs: Any) -> Any:
        raise _refuse(name, feature)

    function.__name__ = name.rsplit(".", 1)[-1]
    function.__doc__ = f"Not supported yet: {feature}."
    return function


# wandb.<class>: media and tables (files) and artifacts.
CLASSES = {name: _unsupported_class(name, FILES)
           for name in ("Audio", "Video", "Html", "Object3D", "Molecule", "Plotly")}

# wandb.<function> and the Run methods of the same names.
FUNCTIONS = {
    "restore": _unsupported_function("restore", "downloading files from W&B"),
    "log_model": _unsupported_function("log_model", ARTIFACTS),
    "use_model": _unsupported_function("use_model", ARTIFACTS),
    "link_model": _unsupported_function("link_model", ARTIFACTS),
}
