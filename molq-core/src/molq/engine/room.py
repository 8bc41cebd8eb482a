"""Jobs molq keeps back because the site allows the user only so many submitted jobs.

A site may cap the jobs a user has submitted at once (SLURM's MaxSubmitJobs on an association,
MaxSubmitJobsPerUser on a QOS...). A job past the cap is refused by the submit command; that
says nothing about the job, so molq never fails it: it is stored with a ``held`` reason
starting with :data:`ROOM` and waits in molq, like a job held for its dependencies
(:mod:`molq.engine.hold`, which releases both kinds, oldest first).

* Where the scheduler tells the limit (``Scheduler.submit_limit``), a submission that would
  pass it is held at once, without a submit command sure to be refused; an array with more
  tasks than the limit could ever allow is refused before anything is stored.
* Where it does not (or the limit changed since it was read), a refusal for the limit holds
  the job; the release that got it tries no further job in that refresh.

molq counts its own jobs that the scheduler has (or may have) on the cluster, array tasks one
each; the user's jobs submitted by other means are not seen, and a refusal covers them.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Mapping
from typing import Any

import attrs

from molq.arrays import task_count
from molq.batch.site_limits import SubmitLimit
from molq.engine.context import EngineContext
from molq.engine.shared_poll import policy_of
from molq.errors import ConfigError, SubmitLimitReached
from molq.model import JobRecord, JobScheduling, JobState
from molq.pacing import ClusterPace
from molq.store.types import RELEASING

log = logging.getLogger("molq.engine")

__all__ = ["ROOM", "Room", "is_waiting_for_room", "hold_for_room", "take_command"]

#: How the ``held`` reason of a job waiting for room starts.
ROOM = "waiting for room"

# Per context: array tasks of the jobs already counted (a job's task count never changes).
_tasks: weakref.WeakKeyDictionary[EngineContext, dict[str, int]] = weakref.WeakKeyDictionary()


def is_waiting_for_room(held: str | None) -> bool:
    return held is not None and held.startswith(ROOM)


def _scheduling_of(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return spec.get("scheduling") or {}


def in_use(ctx: EngineContext) -> int:
    """Array tasks of this cluster's molq jobs that the scheduler has or may have: submitted
    and not ended, or being submitted (not those waiting in molq)."""
    known = _tasks.setdefault(ctx, {})
    total = 0
    for row in ctx.store.active_jobs(ctx.cluster_name):
        record = row.record
        if record.scheduler_job_id is None and row.held is not None and not row.held.startswith(RELEASING):
            continue  # held back by molq: not at the scheduler
        count = known.get(record.job_id)
        if count is None:
            try:
                array = _scheduling_of(ctx.store.internals(ctx.cluster_name, record.job_id).spec).get("array_spec")
                count = task_count(str(array) if array else None)
            except (ConfigError, KeyError, ValueError):  # an unreadable spec: count the job once
                count = 1
            known[record.job_id] = count
        total += count
    return total


def _limit(ctx: EngineContext, account: str | None, qos: str | None) -> SubmitLimit | None:
    ask = getattr(ctx.scheduler, "submit_limit", None)
    return ask(account, qos) if ask is not None else None


@attrs.define
class Room:
    """The room one submission or release pass sees: molq's count, read once when first
    needed, plus what the pass itself sent; and whether the site refused one already."""

    ctx: EngineContext
    used: int | None = None
    #: Limits found full in this pass: later jobs under them wait too (oldest first).
    full: set[str] = attrs.field(factory=set)
    #: No job is tried any more in this pass: the site refused one for its limit, a job
    #: waits (no younger one overtakes it), or the command budget is spent.
    refused: bool = False

    def check(self, scheduling: JobScheduling | Mapping[str, Any]) -> str | None:
        """None when a job of ``scheduling`` may be submitted now (its room is taken), else
        why it waits. ConfigError when it could never be submitted (an array larger than
        the limit)."""
        if isinstance(scheduling, JobScheduling):
            account, qos, array = scheduling.account, scheduling.qos, scheduling.array_spec
        else:
            account, qos, array = scheduling.get("account"), scheduling.get("qos"), scheduling.get("array_spec")
        limit = _limit(self.ctx, account, qos)
        if limit is None:
            return None
        count = task_count(str(array) if array else None)
        if count > limit.jobs:
            raise ConfigError(f"the array has {count} tasks, but {limit.describe()}: it could never be submitted")
        why = f"{ROOM}: {limit.describe()}"
        if limit.where in self.full:
            return why
        if self.used is None:
            self.used = in_use(self.ctx)
        if self.used + count > limit.jobs:
            self.full.add(limit.where)
            return why
        self.used += count
        return None


def _refusal_text(exc: SubmitLimitReached) -> str:
    """The scheduler's own words for the refusal, in one line (its first line that says
    something beyond the command's name)."""
    for line in (exc.stderr or str(exc)).splitlines():
        text = re.sub(r"^\S+:\s*error:\s*", "", line.strip())
        if text:
            return text
    return "submit limit reached"


def hold_for_room(ctx: EngineContext, record: JobRecord, exc: SubmitLimitReached) -> str:
    """Keep ``record`` (refused for the site's submit limit) in molq, waiting for room; the
    reason recorded."""
    why = f"{ROOM}: the site refused it for its submit limit ({_refusal_text(exc)})"
    ctx.store.update_job(ctx.cluster_name, record.job_id, expect_state=JobState.CREATED, held=why,
                         submit_pid=None, sub_state="held", sub_state_reason=why)
    log.info("%s: job %s waits in molq: %s", ctx.cluster_name, record.job_id, why)
    return why


def take_command(ctx: EngineContext) -> bool:
    """Count one submit command against the cluster's command budget (molq.pacing), shared
    by every process on the store; False when the budget of this minute is spent."""
    policy = policy_of(ctx)
    if policy is None:
        return True
    now = time.time()

    def change(p: ClusterPace) -> ClusterPace | None:
        if p.budget_spent(now, policy.commands_per_minute):
            return None
        p = p.in_window(now)
        return attrs.evolve(p, window_commands=p.window_commands + 1)

    try:
        _before, written = ctx.store.update_pace(ctx.cluster_name, change)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the store briefly locked: the release goes ahead
        log.warning("%s: could not count the release in the command budget: %s", ctx.cluster_name, exc)
        return True
    return written is not None
