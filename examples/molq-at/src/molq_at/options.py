"""Options of the ``at`` scheduler (``Cluster(..., "at", scheduler_options=AtOptions(...))``).

The ``# --8<--`` comments mark the parts that the documentation page "Write a plugin" quotes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from molq.errors import ConfigError
from molq.scheduler import SchedulerOptions

__all__ = ["AtOptions", "PROGRAMS"]

#: Programs the scheduler runs on the cluster; ``binaries`` may point any of them elsewhere.
PROGRAMS = ("at", "atq", "atrm", "setsid")


def _queue(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 1 or not value.isascii() or not value.isalpha():
        raise ConfigError(f"queue must be one letter a-z or A-Z (at's queue names), got {value!r}")
    return value


def _binaries(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"binaries must map program names to paths, got {value!r}")
    out = {}
    for key, path in value.items():
        if key not in PROGRAMS:
            raise ConfigError(f"binaries: unknown program {key!r}; known: {', '.join(PROGRAMS)}")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"binaries: the path of {key} must be a non-empty string, got {path!r}")
        out[key] = path
    return out


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"env must map strings to strings, got {value!r}")
    return dict(value)


def _positive(name: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")

    return check


# --8<-- [start:options]
@attrs.frozen
class AtOptions(SchedulerOptions):
    """How molq talks to ``atd`` on one machine.

    ``queue``: the at queue jobs go to. ``b`` (the default) is the batch queue: a job starts as
    soon as the load average is below atd's limit (``atd -l``). Upper-case queues behave like
    ``b``; other lower-case queues run jobs at once regardless of load. Later letters run with
    a higher ``nice`` value.
    ``binaries``: other paths for ``at``, ``atq``, ``atrm`` or ``setsid``.
    ``env``: environment of every at command (note that ``at`` copies its own environment into
    each job). ``command_timeout``: seconds one command may take.
    ``term_grace_seconds``: how long cancel waits after SIGTERM before it sends SIGKILL.

    >>> AtOptions(queue="B").queue
    'B'
    """

    queue: str = attrs.field(default="b", converter=_queue)
    binaries: dict[str, str] = attrs.field(factory=dict, converter=_binaries, hash=False)
    env: dict[str, str] = attrs.field(factory=dict, converter=_env, hash=False)
    command_timeout: float = attrs.field(default=30.0, validator=_positive("command_timeout"))
    term_grace_seconds: float = attrs.field(default=5.0, validator=_positive("term_grace_seconds"))

    def program(self, name: str) -> str:
        """The path (or name) of one of :data:`PROGRAMS` on the cluster."""
        return self.binaries.get(name, name)
# --8<-- [end:options]
