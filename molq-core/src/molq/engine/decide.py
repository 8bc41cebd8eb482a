"""The one decision function: evidence about a job in, what to record out.

Every backend's evidence (the queue's answer, accounting, the fallback source, the wrapper's
files) reaches this module as a :class:`~molq.model.SchedulerStatus`, :data:`ABSENT` ("every
source answered and none knows the job") or None ("no evidence this time"). :func:`decide` is
pure: it reads nothing and writes nothing, so every rule below is tested directly.

The rules, and why:

* No evidence changes nothing. A failed or partial answer must never end a job.
* A job any source reports alive is alive: its count of misses is reset.
* A terminal status ends the job with that status -- including a LOST record, which later
  evidence corrects (accounting that comes back, an exit-code file that appears).
* A cancel is recorded only when confirmed: a job whose stop molq requested ends CANCELLED when a
  source says it was cancelled or killed by a signal after the request, or when it vanished from
  every source after the request. A job that ended by itself keeps its real end.
* Every terminal decision records an end cause (:mod:`molq.causes`): the backend's, else the
  one the state and exit status imply; ``cancelled_by_user`` for a confirmed cancel of molq's,
  ``lost`` for LOST, ``dependency_never_satisfied`` for a dependency that cannot be met.
* ABSENT counts a miss; the job becomes LOST only after :data:`LOST_AFTER_MISSES` misses spread
  over at least :data:`LOST_AFTER_SECONDS`, so a lagging accounting database or a controller
  restart cannot end it.
"""

from __future__ import annotations

import enum
import signal
from typing import Any

import attrs

from molq.causes import EndCause, cause_from_exit
from molq.model import JobRecord, JobState, SchedulerStatus

__all__ = [
    "ABSENT",
    "ENDED",
    "Absent",
    "Decision",
    "JobView",
    "decide",
    "LOST_AFTER_MISSES",
    "LOST_AFTER_SECONDS",
]

#: Successful queries that must miss a job (with no terminal evidence) before it is LOST...
LOST_AFTER_MISSES = 3
#: ...over at least this long (accounting can lag the queue by a few seconds).
LOST_AFTER_SECONDS = 120.0
#: A status that ended this long before the cancel request ended by itself, not by the cancel.
CANCEL_CLOCK_SLACK = 2.0

#: Signals a cancel delivers (directly or through the scheduler's escalation).
_STOP_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGTERM})


class Absent(enum.Enum):
    """Evidence that is not a status: every source answered and none knows the job
    (ABSENT), or a source says it ended without saying how (ENDED)."""

    ABSENT = "absent"
    ENDED = "ended"


ABSENT = Absent.ABSENT
ENDED = Absent.ENDED

Evidence = SchedulerStatus | Absent | None


@attrs.frozen
class JobView:
    """What a decision needs to know about a stored job."""

    job_id: str
    state: JobState
    scheduler_job_id: str | None = None
    raw_state: str | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    missing_count: int = 0
    missing_since: float | None = None
    cancel_requested_at: float | None = None
    sub_state: str | None = None
    sub_state_reason: str | None = None

    @classmethod
    def of(cls, record: JobRecord, *, missing_count: int = 0, missing_since: float | None = None,
           cancel_requested_at: float | None = None) -> JobView:
        return cls(record.job_id, record.state, record.scheduler_job_id, record.raw_state,
                   record.submitted_at, record.started_at, missing_count, missing_since, cancel_requested_at,
                   record.sub_state.value if record.sub_state else None, record.sub_state_reason)


@attrs.frozen
class Decision:
    """What to record for one job. ``new_state`` None: update ``fields`` only (no transition)."""

    job_id: str
    old_state: JobState
    new_state: JobState | None
    reason: str | None = None
    fields: dict[str, Any] = attrs.field(factory=dict)
    #: The job waits on a dependency that can never be satisfied: cancel it at the scheduler,
    #: then record this decision (FAILED with the reason).
    cancel_first: bool = False

    @property
    def ends(self) -> bool:
        return self.new_state is not None and self.new_state.is_terminal


def _sub_state_fields(view: JobView, status: SchedulerStatus | None) -> dict[str, Any]:
    """The sub-state columns to write so the record says what ``status`` says (a final or
    absent job has none); empty when they already do."""
    alive = status is not None and not status.state.is_terminal and status.sub_state is not None
    sub = status.sub_state.value if alive and status is not None and status.sub_state else None
    reason = status.sub_state_reason if alive and status is not None else None
    if (sub, reason) == (view.sub_state, view.sub_state_reason):
        return {}
    return {"sub_state": sub, "sub_state_reason": reason}


def _clear_misses(view: JobView) -> dict[str, Any]:
    return {"missing_count": 0, "missing_since": None} if view.missing_count or view.missing_since else {}


def _killed_by_cancel(view: JobView, status: SchedulerStatus) -> bool:
    """Whether a final status is the effect of molq's cancel request."""
    if view.cancel_requested_at is None:
        return False
    if status.finished_at is not None and status.finished_at < view.cancel_requested_at - CANCEL_CLOCK_SLACK:
        return False  # it had ended before anyone asked it to stop
    if status.state == JobState.CANCELLED:
        return True
    return status.state == JobState.FAILED and status.exit_signal in _STOP_SIGNALS


def usage_fields(status: SchedulerStatus) -> dict[str, Any]:
    """The record field for a status's usage (nothing when it reports none)."""
    if status.usage is None or status.usage.is_empty():
        return {}
    return {"usage": status.usage}


def _finish(view: JobView, status: SchedulerStatus, now: float) -> Decision:
    state = status.state
    reason = status.reason
    cause = status.end_cause or cause_from_exit(state, status.exit_code, status.exit_signal)
    if _killed_by_cancel(view, status):
        state, reason, cause = JobState.CANCELLED, "cancelled by user", EndCause.CANCELLED_BY_USER
    elif state == JobState.SUCCEEDED:
        reason = reason or "completed"
    fields: dict[str, Any] = {
        "end_cause": (cause or EndCause.UNKNOWN).value,
        **usage_fields(status),
        "raw_state": status.raw_state or None,
        "exit_code": status.exit_code,
        "exit_signal": status.exit_signal,
        "finished_at": status.finished_at or now,
        "failure_reason": None if state == JobState.SUCCEEDED else (reason or state.value),
        "missing_count": 0,
        "missing_since": None,
        **_sub_state_fields(view, None),
    }
    if status.started_at and not view.started_at:
        fields["started_at"] = max(status.started_at, view.submitted_at or status.started_at)
    if view.state == JobState.LOST:
        reason = f"corrected from lost: {reason or state.value}"
    return Decision(view.job_id, view.state, state, reason or state.value, fields)


def _alive(view: JobView, status: SchedulerStatus, now: float) -> Decision | None:
    if view.state == JobState.LOST:
        return None  # only a final status corrects a LOST record
    if status.dependency_never_satisfied:
        reason = f"dependency can never be satisfied ({status.reason or status.raw_state})"
        return Decision(view.job_id, view.state, JobState.FAILED, reason, {
            "raw_state": status.raw_state or None, "failure_reason": reason, "finished_at": now,
            "missing_count": 0, "missing_since": None, **_sub_state_fields(view, None),
            "end_cause": EndCause.DEPENDENCY_NEVER_SATISFIED.value,
        }, cancel_first=True)
    raw = status.raw_state or None
    target = status.state
    if target in (JobState.SUBMITTED, JobState.CREATED) or target == view.state:
        fields = {**_clear_misses(view), **_sub_state_fields(view, status)}
        if raw != view.raw_state:
            fields["raw_state"] = raw
        return Decision(view.job_id, view.state, None, None, fields) if fields else None
    fields = {"raw_state": raw, "missing_count": 0, "missing_since": None, **_sub_state_fields(view, status)}
    if target == JobState.RUNNING:
        started = status.started_at or now
        fields["started_at"] = max(started, view.submitted_at or started)
    elif target == JobState.QUEUED and view.state == JobState.RUNNING:
        fields["started_at"] = None  # requeued: it will start again
    return Decision(view.job_id, view.state, target,
                    status.reason or f"scheduler reports {status.raw_state or target.value}", fields)


def _missed(view: JobView, now: float) -> Decision | None:
    if view.state == JobState.LOST:
        return None
    if view.cancel_requested_at is not None:
        reason = "cancelled by user (the scheduler no longer knows the job)"
        return Decision(view.job_id, view.state, JobState.CANCELLED, reason, {
            "failure_reason": "cancelled by user", "finished_at": now, "missing_count": 0, "missing_since": None,
            "end_cause": EndCause.CANCELLED_BY_USER.value,
            **_sub_state_fields(view, None),
        })
    misses = view.missing_count + 1
    since = view.missing_since or now
    if misses >= LOST_AFTER_MISSES and now - since >= LOST_AFTER_SECONDS:
        return Decision(view.job_id, view.state, JobState.LOST,
                        f"the scheduler no longer knows job {view.scheduler_job_id} and left no final state",
                        {"failure_reason": "lost: the scheduler has no record of the job and no exit code was written",
                         "finished_at": now, "missing_count": misses, "end_cause": EndCause.LOST.value,
                         **_sub_state_fields(view, None)})
    return Decision(view.job_id, view.state, None, None, {"missing_count": misses, "missing_since": since})


def decide(view: JobView, evidence: Evidence, now: float) -> Decision | None:
    """What to record for ``view`` given this refresh's ``evidence`` about it (None: nothing).

    >>> view = JobView("j1", JobState.RUNNING, "42")
    >>> decide(view, None, 100.0) is None
    True
    >>> decide(view, SchedulerStatus(JobState.SUCCEEDED, "COMPLETED", exit_code=0), 100.0).new_state
    <JobState.SUCCEEDED: 'succeeded'>
    >>> decide(view, ABSENT, 100.0).fields
    {'missing_count': 1, 'missing_since': 100.0}
    """
    if evidence is None or (view.state.is_terminal and view.state != JobState.LOST):
        return None
    if evidence is ABSENT:
        return _missed(view, now)
    if evidence is ENDED:
        if view.state == JobState.LOST:
            return None
        if view.cancel_requested_at is not None:
            # It stopped after molq asked it to: the cancel is confirmed.
            reason = "cancelled by user (the scheduler reports the job ended)"
            return Decision(view.job_id, view.state, JobState.CANCELLED, reason, {
                "failure_reason": "cancelled by user", "finished_at": now, "missing_count": 0,
                "missing_since": None, "end_cause": EndCause.CANCELLED_BY_USER.value,
                **_sub_state_fields(view, None),
            })
        fields = _clear_misses(view)  # known to the scheduler: not missing; how it ended comes later
        return Decision(view.job_id, view.state, None, None, fields) if fields else None
    assert isinstance(evidence, SchedulerStatus)
    if evidence.state.is_terminal:
        return _finish(view, evidence, now)
    return _alive(view, evidence, now)
