"""What a site's configuration says, read once per scheduler object: the array limit
(:mod:`molq.array_runner`), the partitions' time limits (a grown retry stops at them) and the
submit-count limits (jobs beyond them wait in molq, :mod:`molq.engine.room`).

A value the site does not tell is cached as None (no limit). A read that failed is not cached:
the next use asks again, and meanwhile there is no limit (the scheduler itself still refuses
what is too big).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from molq.errors import SchedulerError, TransportError
from molq.transport import CommandResult

log = logging.getLogger("molq.batch")

__all__ = ["PartitionLimits", "SubmitLimit", "SubmitLimits", "site_reading", "site_value"]

T = TypeVar("T")

# scheduler object -> what of the site's configuration it has read, by kind.
_read: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def site_value(sched: Any, kind: str, argv: list[str] | None, parse: Callable[[CommandResult], T | None]) -> T | None:
    """``parse`` of ``argv``'s answer, run once per scheduler object and ``kind``; None when
    the site does not tell (``argv`` None, or the answer says nothing) or the read failed."""
    return site_reading(sched, kind, None if argv is None else [argv], lambda results: parse(results[0]))


def site_reading(sched: Any, kind: str, argvs: Sequence[list[str]] | None,
                 parse: Callable[[list[CommandResult]], T | None]) -> T | None:
    """:func:`site_value` for a reading that takes several commands: ``parse`` gets every
    answer, in order; one failed command fails the whole reading (not cached)."""
    known = _read.setdefault(sched, {})
    if kind in known:
        return known[kind]  # type: ignore[no-any-return]
    value: T | None = None
    if argvs is not None:
        try:
            value = parse([sched.run(argv) for argv in argvs])
        except (SchedulerError, TransportError) as exc:
            log.warning("%s: cannot read the site's %s: %s", sched.name, kind, exc)
            return None
    known[kind] = value
    return value


@attrs.frozen
class PartitionLimits:
    """The partitions' longest time limits in seconds (None: unlimited) and the default
    partition, as the scheduler tells them."""

    max_time: Mapping[str, int | None] = attrs.field(factory=dict)
    default: str | None = None

    def max_time_of(self, partition: str | None) -> int | None:
        """The longest time a job in ``partition`` (None: the default one; a comma list: any of
        them) may ask for; None when unlimited or not told."""
        names = [p.strip() for p in (partition or self.default or "").split(",") if p.strip()]
        limits = [self.max_time.get(name) for name in names]
        if not limits or any(limit is None for limit in limits):
            return None
        return max(limit for limit in limits if limit is not None)


@attrs.frozen
class SubmitLimit:
    """How many jobs (array tasks count one each) the site lets the user have submitted at
    once, and which of its settings says so (``QOS normal``, ``association lab/alice``)."""

    jobs: int
    where: str

    def describe(self) -> str:
        return f"the site allows {self.jobs} submitted jobs ({self.where})"


@attrs.frozen
class SubmitLimits:
    """The submit-count limits visible to the user. ``by_account``: limits of the user's
    association in an account; ``by_qos``: limits of a QOS; ``default_qos``: the QOS a job
    gets when it names none (each of the user's associations may have its own)."""

    by_account: Mapping[str, SubmitLimit] = attrs.field(factory=dict)
    by_qos: Mapping[str, SubmitLimit] = attrs.field(factory=dict)
    default_qos: frozenset[str] = frozenset()

    def for_job(self, account: str | None, qos: str | None) -> SubmitLimit | None:
        """The tightest limit that applies to a job of ``account`` and ``qos``. A job that
        names no account may run under any of the user's associations: every one counts (the
        tightest wins), so molq never submits what the site is sure to refuse."""
        found = [limit for name, limit in self.by_account.items() if account in (None, name)]
        qos_names = {qos} if qos else self.default_qos
        found += [self.by_qos[name] for name in qos_names if name in self.by_qos]
        return min(found, key=lambda limit: limit.jobs, default=None)
