"""Options every batch backend shares: command time limits and retries, polling limits shared by
every molq process on the store, the circuit breaker.

A backend's options class (``SlurmOptions``, ``PbsOptions``, ``LsfOptions``) inherits
:class:`BatchOptions` and adds only what differs (command names, defaults for queues...);
:meth:`BatchOptions.runner_settings` turns the shared part into the keyword arguments of
:class:`~molq.batch.BatchScheduler`, so a profile key means the same on every cluster.
"""

from __future__ import annotations

from typing import Any

import attrs

from molq.batch.runner import RetrySettings
from molq.errors import ConfigError
from molq.pacing import PacingPolicy
from molq.scheduler import SchedulerOptions

__all__ = ["BatchOptions"]


def _positive(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{type(inst).__name__}.{attr.name} must be a positive number, got {value!r}")


def _at_least(minimum: float) -> Any:
    def check(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise ConfigError(f"{type(inst).__name__}.{attr.name} must be >= {minimum:g}, got {value!r}")

    return check


def _whole(minimum: int) -> Any:
    def check(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{type(inst).__name__}.{attr.name} must be a whole number >= {minimum}, got {value!r}")

    return check


def _boolean(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{type(inst).__name__}.{attr.name} must be true or false, got {value!r}")


@attrs.frozen(kw_only=True)
class BatchOptions(SchedulerOptions):
    """The settings every batch cluster has.

    * ``command_timeout`` -- seconds one scheduler command may take.
    * ``retry_attempts``, ``retry_initial_delay``, ``retry_factor`` -- how a command that
      failed transiently (controller not answering, socket timeout) is retried.
    * ``poll_interval`` / ``poll_interval_max`` -- seconds between two status polls of the
      cluster by all molq processes on the store together: the shortest (after submissions
      and changes) and the longest (while nothing moves).
    * ``commands_per_minute`` -- status commands all molq processes on the store may run per
      minute against this cluster.
    * ``backoff_initial`` / ``backoff_max`` -- the circuit breaker: after a failed poll every
      process pauses this long, doubled per further failure up to the maximum, then one probes.
    * ``pack_bulk`` -- in a bulk submission, jobs whose directives are the same apart from the
      per-job ones go as one scheduler array, one task per job (:mod:`molq.batch.packing`).
      Refused (ConfigError) on a scheduler that cannot pack.

    Array limits are not here: reading them is scheduler-specific (``SlurmOptions.max_array_size``).
    """

    command_timeout: float = attrs.field(default=60.0, validator=_positive)
    retry_attempts: int = attrs.field(default=3, validator=_whole(1))
    retry_initial_delay: float = attrs.field(default=0.5, validator=_at_least(0))
    retry_factor: float = attrs.field(default=2.0, validator=_at_least(1))
    poll_interval: float = attrs.field(default=2.0, validator=_positive)
    poll_interval_max: float = attrs.field(default=30.0, validator=_positive)
    commands_per_minute: int = attrs.field(default=60, validator=_whole(1))
    backoff_initial: float = attrs.field(default=5.0, validator=_positive)
    backoff_max: float = attrs.field(default=300.0, validator=_positive)
    pack_bulk: bool = attrs.field(default=False, validator=_boolean)

    def __attrs_post_init__(self) -> None:
        self.pacing()  # refuse an inconsistent pair of intervals when the profile is read

    def pacing(self) -> PacingPolicy:
        """These options' polling limits (:mod:`molq.pacing`)."""
        try:
            return PacingPolicy(self.poll_interval, self.poll_interval_max, self.commands_per_minute,
                                self.backoff_initial, self.backoff_max)
        except ConfigError as exc:
            raise ConfigError(f"{type(self).__name__}: {exc}") from None

    def runner_settings(self) -> dict[str, Any]:
        """The :class:`~molq.batch.BatchScheduler` keyword arguments these options set."""
        return {
            "retry": RetrySettings(attempts=self.retry_attempts, initial_delay=self.retry_initial_delay,
                                   factor=self.retry_factor, command_timeout=self.command_timeout),
            "pacing": self.pacing(),
            "pack_bulk": self.pack_bulk,
        }
