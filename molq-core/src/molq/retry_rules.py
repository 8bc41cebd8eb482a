"""Retry rules that act on why a job ended (:mod:`molq.causes`).

An out-of-memory job retried with the same memory fails again, and a preempted or node-failed
job did nothing wrong. :class:`~molq.model.RetryPolicy` therefore carries, beside its seed
fields, one rule per such cause: :class:`Grow` (retry with more of a resource, up to a cap) or
:class:`Resubmit` (run it again, optionally without counting an attempt). :func:`plan_retry`
turns a policy, the attempt that ended and its retry family into a :class:`RetryPlan` (or
None: no retry).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from molq.causes import EndCause
from molq.errors import ConfigError

if TYPE_CHECKING:
    from molq.model import JobRecord, JobResources, RetryPolicy

__all__ = ["Grow", "Resubmit", "RetryPlan", "plan_retry", "grown_resources", "policy_from_options"]


def _factor(name: str):  # type: ignore[no-untyped-def]
    def check(_inst: Any, _attr: Any, value: float | None) -> None:
        if value is not None and not value >= 1.0:
            raise ConfigError(f"Grow({name}=...) must be a factor of at least 1, got {value!r}")
    return check


@attrs.frozen
class Grow:
    """Retry with ``memory`` and/or ``time`` multiplied by a factor, never above ``max``
    (``"64G"`` for memory, ``"48h"`` for time; None: no cap)."""

    memory: float | None = attrs.field(default=None, validator=_factor("memory"))
    time: float | None = attrs.field(default=None, validator=_factor("time"))
    max: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.memory is None and self.time is None:
            raise ConfigError("Grow needs a memory or a time factor")
        if self.memory is not None and self.time is not None and self.max is not None:
            raise ConfigError("Grow(memory=..., time=..., max=...): one cap cannot bound both; use two rules")
        if self.max is not None:
            self.cap_memory() if self.memory is not None else self.cap_time()  # validates the spelling

    def cap_memory(self) -> int | None:
        from molq.model import Memory

        if self.max is None:
            return None
        try:
            return Memory.parse(self.max).bytes
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"Grow(memory=...): max {self.max!r} is not a memory size ({exc})") from None

    def cap_time(self) -> int | None:
        from molq.model import Duration

        if self.max is None:
            return None
        try:
            return Duration.parse(self.max).seconds
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"Grow(time=...): max {self.max!r} is not a duration ({exc})") from None


@attrs.frozen
class Resubmit:
    """Run the job again as it was. With ``count_as_attempt=False`` the run does not use up one
    of ``max_attempts`` (the job did nothing wrong); ``limit`` still bounds how often that
    happens in one family."""

    count_as_attempt: bool = True
    limit: int = 10

    def __attrs_post_init__(self) -> None:
        if self.limit < 1:
            raise ConfigError(f"Resubmit(limit=...) must be at least 1, got {self.limit}")


Rule = Grow | Resubmit


@attrs.frozen
class RetryPlan:
    """What the next attempt is: counted or not, and the rule that grows its resources."""

    cause: EndCause | None
    counted: bool = True
    grow: Grow | None = None


def _rule(policy: RetryPolicy, cause: EndCause | None) -> Rule | None:
    return {
        EndCause.OUT_OF_MEMORY: policy.on_out_of_memory,
        EndCause.TIME_LIMIT: policy.on_time_limit,
        EndCause.PREEMPTED: policy.on_preempted,
        EndCause.NODE_FAILURE: policy.on_node_failure,
    }.get(cause) if cause is not None else None  # type: ignore[call-overload]


def plan_retry(policy: RetryPolicy, record: JobRecord, family: Sequence[JobRecord] = ()) -> RetryPlan | None:
    """Whether (and how) ``record``, an attempt that ended, is retried under ``policy``.

    * ``retry_on_causes`` (when set) decides which causes are retried; otherwise the seed's
      ``retry_on_states`` and ``retry_on_exit_codes`` do, and a preempted or node-failed job
      with a :class:`Resubmit` rule is retried too;
    * attempts resubmitted with ``count_as_attempt=False`` do not count towards ``max_attempts``
      (at most their rule's ``limit`` of them in the family).
    """
    cause = record.end_cause
    rule = _rule(policy, cause)
    free = isinstance(rule, Resubmit) and not rule.count_as_attempt
    if policy.retry_on_causes is not None:
        wanted = cause in policy.retry_on_causes
    else:
        from molq._states import JobState

        codes = policy.retry_on_exit_codes
        wanted = record.state in policy.retry_on_states and (
            codes is None or record.state != JobState.FAILED or record.exit_code in codes)
        wanted = wanted or isinstance(rule, Resubmit)  # preempted, node failure: not the job's fault
    if not wanted:
        return None
    earlier = [r for r in family if r.job_id != record.job_id and r.attempt < record.attempt]
    uncounted = sum(1 for r in earlier if _free(policy, r)) + (1 if free else 0)
    if free:
        assert isinstance(rule, Resubmit)
        if uncounted > rule.limit:
            return None
        return RetryPlan(cause, counted=False)
    if record.attempt - uncounted >= policy.max_attempts:
        return None
    return RetryPlan(cause, counted=True, grow=rule if isinstance(rule, Grow) else None)


def _free(policy: RetryPolicy, record: JobRecord) -> bool:
    rule = _rule(policy, record.end_cause)
    return isinstance(rule, Resubmit) and not rule.count_as_attempt


def grown_resources(resources: JobResources, grow: Grow | None, record: JobRecord, *,
                    time_cap: float | None = None) -> JobResources:
    """The next attempt's resources: ``grow``'s factors applied to what the job asked for (or,
    when it asked for nothing, to what the scheduler says it was given), within the cap.
    ``time_cap`` is the longest time the partition allows (the scheduler's word): a grown time
    stops there too, never below what the job already had."""
    if grow is None:
        return resources
    from molq.model import Duration, Memory

    changes: dict[str, Any] = {}
    if grow.memory is not None:
        base = resources.memory.bytes if resources.memory is not None else (
            record.usage.requested_memory_bytes if record.usage is not None else None)
        if base:
            new = int(base * grow.memory)
            cap = grow.cap_memory()
            changes["memory"] = Memory(min(new, cap) if cap is not None else new)
    if grow.time is not None:
        base_t = resources.time_limit.seconds if resources.time_limit is not None else None
        if base_t:
            new_t = int(base_t * grow.time)
            cap_t = grow.cap_time()
            if cap_t is not None:
                new_t = min(new_t, cap_t)
            if time_cap is not None:
                new_t = min(new_t, max(int(time_cap), base_t))
            changes["time_limit"] = Duration(new_t)
    return attrs.evolve(resources, **changes) if changes else resources


def policy_from_options(retries: int, retry_on: str | None = None, grow_memory: float | None = None,
                        grow_time: float | None = None, *, grow_max_memory: str | None = None,
                        grow_max_time: str | None = None) -> RetryPolicy | None:
    """The policy of ``molq submit --retries N --retry-on oom,timeout --grow-memory 1.5
    --grow-max-memory 32G --grow-time 2 --grow-max-time 3d`` (None: no retries). ``--retry-on``
    alone allows one retry; a cap alone keeps its rule's default factor; a cap of ``none``
    removes molq's default cap (a grown time still stops at the partition's limit). Invalid
    values raise :class:`ConfigError` naming the option, before anything is stored or submitted."""
    from molq.causes import parse_causes
    from molq.model import RetryPolicy

    given = (grow_memory, grow_time, grow_max_memory, grow_max_time)
    if not retries and retry_on is None and all(v is None for v in given):
        return None
    kwargs: dict[str, Any] = {"max_attempts": retries + 1 if retries else 2}
    if retry_on is not None:
        try:
            kwargs["retry_on_causes"] = parse_causes(retry_on)
        except ValueError as exc:
            raise ConfigError(f"--retry-on: {exc}") from None
        if not kwargs["retry_on_causes"]:
            raise ConfigError("--retry-on: name at least one end cause (e.g. oom,timeout)")
    rules = (("memory", grow_memory, grow_max_memory, "on_out_of_memory", Grow(memory=1.5, max="64G")),
             ("time", grow_time, grow_max_time, "on_time_limit", Grow(time=2.0, max="48h")))
    for kind, factor, cap, field, base in rules:
        if factor is None and cap is None:
            continue
        rule = base
        if factor is not None:
            try:
                rule = attrs.evolve(rule, memory=factor) if kind == "memory" else attrs.evolve(rule, time=factor)
            except ConfigError as exc:
                raise ConfigError(f"--grow-{kind}: {exc}") from None
        if cap is not None:
            try:
                rule = attrs.evolve(rule, max=None if cap.strip().lower() == "none" else cap)
            except ConfigError as exc:
                raise ConfigError(f"--grow-max-{kind}: {exc}") from None
        kwargs[field] = rule
    return RetryPolicy(**kwargs)
