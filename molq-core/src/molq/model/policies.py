"""Policies and defaults: retry and retention policies, the Submitor's defaults and the
field-wise merge of a job's settings onto them."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from molq._states import JobState
from molq.causes import EndCause, parse_causes
from molq.errors import ConfigError
from molq.model._checks import _positive_int
from molq.model.records import JobRecord
from molq.model.submission import JobExecution, JobResources, JobScheduling
from molq.retry_rules import Grow, Resubmit, plan_retry


@attrs.frozen
class RetryBackoff:
    """Delay between attempts: fixed, or exponential up to ``maximum_seconds``."""

    mode: Literal["fixed", "exponential"] = "exponential"
    initial_seconds: float = 5.0
    maximum_seconds: float = 300.0
    factor: float = 2.0

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("fixed", "exponential"):
            raise ConfigError(f"backoff mode must be 'fixed' or 'exponential', got {self.mode!r}")
        if self.initial_seconds < 0 or self.maximum_seconds < 0 or self.factor < 1:
            raise ConfigError("backoff seconds must be >= 0 and factor >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if self.mode == "fixed":
            return min(self.initial_seconds, self.maximum_seconds)
        return min(self.initial_seconds * self.factor ** max(attempt - 1, 0), self.maximum_seconds)


def _states_tuple(value: Any) -> tuple[JobState, ...]:
    return tuple(JobState(v) for v in value)


def _opt_int_tuple(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


def _opt_causes(value: Any) -> tuple[EndCause, ...] | None:
    if value is None:
        return None
    try:
        return parse_causes(value)
    except ValueError as exc:
        raise ConfigError(f"retry_on_causes: {exc}") from None


@attrs.frozen
class RetryPolicy:
    """How many attempts a job gets and which outcomes are retried."""

    max_attempts: int = attrs.field(default=1, validator=_positive_int("max_attempts"))
    retry_on_states: tuple[JobState, ...] = attrs.field(
        default=(JobState.FAILED, JobState.TIMED_OUT), converter=_states_tuple
    )
    retry_on_exit_codes: tuple[int, ...] | None = attrs.field(
        default=None, converter=_opt_int_tuple
    )
    backoff: RetryBackoff = RetryBackoff()

    #: Retry exactly these end causes (instead of ``retry_on_states``/``retry_on_exit_codes``).
    retry_on_causes: tuple[EndCause, ...] | None = attrs.field(default=None, converter=_opt_causes)
    #: Per-cause rules (:mod:`molq.retry_rules`): how the next attempt differs, if at all.
    on_out_of_memory: Grow | None = attrs.field(factory=lambda: Grow(memory=1.5, max="64G"))
    on_time_limit: Grow | None = attrs.field(factory=lambda: Grow(time=2.0, max="48h"))
    on_preempted: Resubmit | None = attrs.field(factory=lambda: Resubmit(count_as_attempt=False))
    on_node_failure: Resubmit | None = attrs.field(factory=lambda: Resubmit(count_as_attempt=False))

    def should_retry(self, record: JobRecord, family: tuple[JobRecord, ...] = ()) -> bool:
        """Whether ``record`` gets another attempt (``family``: its retry family, for the
        attempts that did not count); see :func:`molq.retry_rules.plan_retry`."""
        return plan_retry(self, record, family) is not None


@attrs.frozen
class RetentionPolicy:
    """What :meth:`Submitor.cleanup_jobs` keeps."""

    keep_job_dirs_for_days: int = 30
    keep_terminal_records_for_days: int = 90
    keep_failed_job_dirs: bool = True


@attrs.frozen
class SubmitorDefaults:
    """Resources, scheduling and execution merged into every submission of a Submitor."""

    resources: JobResources | None = None
    scheduling: JobScheduling | None = None
    execution: JobExecution | None = None


_DEPENDENCY_FIELDS = ("dependency", "dependencies")


def _is_set(value: Any, field: attrs.Attribute) -> bool:  # type: ignore[type-arg]
    """Whether a job gave ``field`` a value of its own (see :func:`merge_onto_default`)."""
    current = getattr(value, field.name)
    if current is None:
        return False
    if field.default is None:
        return True
    given = getattr(value, "_given", None)
    if given is None:  # a class that does not record its arguments: compare with the default
        return bool(current != field.default)
    return field.alias in given


def merge_onto_default(default: Any, value: Any) -> Any:
    """Field-wise merge of a job's resources, scheduling or execution onto the Submitor's default.

    Internal to molq (the Submitor's merge). Every field the job set wins, including an explicit
    False, 0 or empty value; None and fields the job left out inherit the default. ``env`` is
    merged by variable (the job's variables win), and the raw ``dependency`` string and the
    logical ``dependencies`` come both from the job as soon as it sets either, since they are
    mutually exclusive.

    >>> merged = merge_onto_default(JobScheduling(exclusive_node=True, partition="gpu"),
    ...                             JobScheduling(exclusive_node=False))
    >>> merged.exclusive_node, merged.partition
    (False, 'gpu')
    """
    if default is None:
        return value
    if value is None:
        return default
    fields = [f for f in attrs.fields(type(value)) if f.init]
    changes = {f.alias: getattr(value, f.name) for f in fields if _is_set(value, f)}
    if "env" in changes and getattr(default, "env", None):
        changes["env"] = {**default.env, **changes["env"]}
    if any(name in changes for name in _DEPENDENCY_FIELDS):
        for f in fields:
            if f.name in _DEPENDENCY_FIELDS:
                changes[f.alias] = getattr(value, f.name)
    return attrs.evolve(default, **changes)
