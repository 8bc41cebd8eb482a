"""Options of the LSF backend (``Cluster(..., "lsf", scheduler_options=LsfOptions(...))``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from molq.errors import ConfigError
from molq.scheduler import SchedulerOptions

__all__ = ["LsfOptions", "MEMORY_UNITS"]

#: Values of ``LSF_UNIT_FOR_LIMITS`` molq can express limits in.
MEMORY_UNITS = ("KB", "MB", "GB", "TB")


def _unit(value: Any) -> str:
    if not isinstance(value, str) or value.strip().upper() not in MEMORY_UNITS:
        raise ConfigError(
            f"unit_for_limits must be one of {', '.join(MEMORY_UNITS)} (the cluster's "
            f"LSF_UNIT_FOR_LIMITS), got {value!r}"
        )
    return value.strip().upper()


def _str_dict(name: str):
    def convert(value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a mapping of strings, got {value!r}")
        out = {}
        for key, val in value.items():
            if not isinstance(key, str) or not isinstance(val, str):
                raise ConfigError(f"{name} must map strings to strings, got {key!r}: {val!r}")
            out[key] = val
        return out

    return convert


def _str_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"extra_bsub_args must be a list of strings, got {value!r}")
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"extra_bsub_args must be a list of strings, got {value!r}")
    return tuple(value)


def _opt_name(name: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")

    return check


def _timeout(_inst: Any, _attr: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"command_timeout must be a positive number of seconds, got {value!r}")


@attrs.frozen
class LsfOptions(SchedulerOptions):
    """How molq talks to one LSF cluster.

    ``unit_for_limits`` must match the cluster's ``LSF_UNIT_FOR_LIMITS`` (``lsf.conf``; KB
    when unset): memory in ``-M`` and ``rusage[mem=...]`` is written in that unit.
    ``binaries`` maps ``bsub``/``bjobs``/``bkill`` to other paths; ``extra_bsub_args`` go on
    every ``bsub`` command line; ``default_queue``/``default_project`` apply when a job names
    none; ``env`` is added to the environment of every LSF command (e.g. ``LSF_ENVDIR``).

    >>> LsfOptions(unit_for_limits="mb", default_queue="short").unit_for_limits
    'MB'
    """

    unit_for_limits: str = attrs.field(default="KB", converter=_unit)
    binaries: dict[str, str] = attrs.field(factory=dict, converter=_str_dict("binaries"), hash=False)
    extra_bsub_args: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    default_queue: str | None = attrs.field(default=None, validator=_opt_name("default_queue"))
    default_project: str | None = attrs.field(default=None, validator=_opt_name("default_project"))
    env: dict[str, str] = attrs.field(factory=dict, converter=_str_dict("env"), hash=False)
    command_timeout: float = attrs.field(default=60.0, validator=_timeout)
