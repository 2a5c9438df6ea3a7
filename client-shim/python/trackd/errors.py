"""Exceptions raised by the trackd package.

Logging never raises for conditions the library counts and reports at finish
(buffer full, agent away); it raises for mistakes in the caller's data
(TypeError / ValueError naming the key) and for a finished run (RunFinishedError).
Reading from the agent (Api) raises the errors below.
"""


class TrackdError(Exception):
    """Base class of trackd's own errors."""


class RunFinishedError(TrackdError, RuntimeError):
    """A recording call on a run that has finished."""


class AgentUnavailableError(TrackdError, ConnectionError):
    """No trackd agent answered at the socket."""


class NotFoundError(TrackdError, LookupError):
    """The agent has no such run."""


class AgentError(TrackdError):
    """The agent refused a request; the message is the agent's."""
