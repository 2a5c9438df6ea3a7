"""trackd — record runs (config, metrics per step, summary, console output,
final state) W&B-style, through the trackd agent on this machine.

    import trackd

    run = trackd.init(project="my-project", config={"epochs": 10, "learning_rate": 0.01})
    for epoch in range(10):
        run.log({"accuracy": acc, "loss": loss})
    run.finish()

``trackd.run`` is the current run (None before init / after finish);
``trackd.log`` and ``trackd.finish`` act on it. ``trackd.Api()`` reads runs back
from the agent. The package is pure Python over libtrackd (ctypes); see
trackd._lib for how the library is found (TRACKD_LIB overrides).
"""
from typing import Any, Mapping, Optional

from . import _run
from ._api import Api, ApiRun
from ._artifact import Artifact, ArtifactCorruptError
from ._media import Histogram, Image, Table
from ._run import Config, Run, Summary, init
from .errors import (AgentError, AgentUnavailableError, InvalidValueError, NotFoundError,
                     RunFinishedError, TrackdError)

__version__ = "0.1.0"

__all__ = ["init", "log", "finish", "Run", "Config", "Summary", "Api", "ApiRun",
           "Artifact", "ArtifactCorruptError",
           "Image", "Histogram", "Table",
           "TrackdError", "InvalidValueError", "RunFinishedError", "AgentUnavailableError",
           "NotFoundError", "AgentError", "__version__"]


def __getattr__(name: str) -> Any:
    # `trackd.run` follows the current run (PEP 562), as `wandb.run` does.
    if name == "run":
        return _run.current
    raise AttributeError(f"module 'trackd' has no attribute {name!r}")


def _current() -> Run:
    if _run.current is None:
        raise TrackdError("trackd: call trackd.init() first")
    return _run.current


def log(data: Mapping[str, Any], step: Optional[int] = None,
        commit: Optional[bool] = None) -> None:
    """Run.log on the current run."""
    _current().log(data, step=step, commit=commit)


def finish(exit_code: int = 0, timeout: Optional[float] = None) -> None:
    """Run.finish on the current run (nothing if there is none)."""
    if _run.current is not None:
        _run.current.finish(exit_code, timeout=timeout)
