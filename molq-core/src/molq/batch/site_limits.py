"""What a site's configuration says, read once per scheduler object: the array limit
(:mod:`molq.array_runner`) and the partitions' time limits (a grown retry stops at them).

A value the site does not tell is cached as None (no limit). A read that failed is not cached:
the next use asks again, and meanwhile there is no limit (the scheduler itself still refuses
what is too big).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from molq.errors import SchedulerError, TransportError
from molq.transport import CommandResult

log = logging.getLogger("molq.batch")

__all__ = ["PartitionLimits", "site_value"]

T = TypeVar("T")

# scheduler object -> what of the site's configuration it has read, by kind.
_read: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def site_value(sched: Any, kind: str, argv: list[str] | None, parse: Callable[[CommandResult], T | None]) -> T | None:
    """``parse`` of ``argv``'s answer, run once per scheduler object and ``kind``; None when
    the site does not tell (``argv`` None, or the answer says nothing) or the read failed."""
    known = _read.setdefault(sched, {})
    if kind in known:
        return known[kind]  # type: ignore[no-any-return]
    value: T | None = None
    if argv is not None:
        try:
            value = parse(sched.run(argv))
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
