"""Options of the LSF backend (``Cluster(..., "lsf", scheduler_options=LsfOptions(...))``)."""

from __future__ import annotations

from typing import Any

import attrs
from molq.batch import BatchOptions
from molq.errors import ConfigError
from molq.scheduler import optional_name, string_list, string_map

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


@attrs.frozen
class LsfOptions(BatchOptions):
    """How molq talks to one LSF cluster.

    ``unit_for_limits`` must match the cluster's ``LSF_UNIT_FOR_LIMITS`` (``lsf.conf``; KB
    when unset): memory in ``-M`` and ``rusage[mem=...]`` is written in that unit.
    ``binaries`` maps ``bsub``/``bjobs``/``bkill`` to other paths; ``extra_bsub_args`` go on
    every ``bsub`` command line; ``default_queue``/``default_project`` apply when a job names
    none; ``env`` is added to the environment of every LSF command (e.g. ``LSF_ENVDIR``). The
    settings every batch cluster has (command timeout and retries, shared polling limits, the
    circuit breaker) come from :class:`~molq.batch.BatchOptions`. ``max_array_size`` is the
    cluster's ``MAX_JOB_ARRAY_SIZE`` (the largest array index) instead of the value
    ``bparams -a`` reports; arrays with a larger index are split into several LSF arrays.

    >>> LsfOptions(unit_for_limits="mb", default_queue="short").unit_for_limits
    'MB'
    """

    unit_for_limits: str = attrs.field(default="KB", converter=_unit)
    binaries: dict[str, str] = attrs.field(factory=dict, converter=lambda v: string_map("LsfOptions.binaries")(v), hash=False)
    extra_bsub_args: tuple[str, ...] = attrs.field(default=(), converter=lambda v: string_list("LsfOptions.extra_bsub_args")(v))
    default_queue: str | None = attrs.field(default=None, validator=optional_name("LsfOptions.default_queue"))
    default_project: str | None = attrs.field(default=None, validator=optional_name("LsfOptions.default_project"))
    env: dict[str, str] = attrs.field(factory=dict, converter=lambda v: string_map("LsfOptions.env")(v), hash=False)
    max_array_size: int | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.max_array_size is not None and (isinstance(self.max_array_size, bool) or not isinstance(
                self.max_array_size, int) or self.max_array_size < 1):
            raise ConfigError(f"LsfOptions.max_array_size must be a whole number >= 1 (the cluster's "
                              f"MAX_JOB_ARRAY_SIZE), got {self.max_array_size!r}")

    @property
    def array_limit(self) -> int | None:
        """molq's array limit (largest index + 1) from ``max_array_size`` (largest index)."""
        return None if self.max_array_size is None else self.max_array_size + 1
