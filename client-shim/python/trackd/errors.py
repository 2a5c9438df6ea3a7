"""Exceptions raised by the trackd package.

Logging never raises for conditions the library counts and reports at finish
(buffer full, agent away); it raises for mistakes in the caller's data
(InvalidValueError naming the key) and for a finished run (RunFinishedError).
Reading from the agent (Api) raises the errors below.
"""


class TrackdError(Exception):
    """Base class of trackd's own errors."""


class InvalidValueError(TrackdError, TypeError, ValueError):
    """A value trackd cannot record (a type it does not take, a NUL or a lone
    surrogate in a string, a limit exceeded); the message names the key. A
    TypeError and a ValueError too, as the two were raised before."""


class RunFinishedError(TrackdError, RuntimeError):
    """A recording call on a run that has finished."""


class AgentUnavailableError(TrackdError, ConnectionError):
    """No trackd agent answered at the socket."""


class NotFoundError(TrackdError, LookupError):
    """The agent has no such run."""


class AgentError(TrackdError):
    """The agent refused a request; the message is the agent's."""
