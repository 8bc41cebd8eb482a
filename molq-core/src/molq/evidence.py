"""Evidence: what scheduler sources say about jobs, before anything is decided.

Backends translate scheduler text into evidence; the lifecycle engine alone turns evidence into
state changes (:mod:`molq.engine.decide`). The vocabulary, shared by every backend:

* a source's answer about a set of scheduler ids (:class:`SourceAnswer`): per id a
  :class:`~molq.model.SchedulerStatus`, plus the ids whose record was present but could not be
  read, plus whether the answer was complete (every record could be attributed to an id);
* a failed command, an error message or an unusable answer as a whole is not an answer at all:
  the parser raises :class:`~molq.errors.SchedulerError`, and the engine counts it as "no
  evidence" for every job it was asked about -- never as "missing";
* a job absent from a complete, successful answer is "unknown to this source". Only when every
  source that was asked answered successfully and none knows the job does the engine count a miss.

Several records under one scheduler id (array tasks, heterogeneous-job components) are combined
by one policy, :func:`aggregate_parts`, the same on every backend. Several records that are
attempts of the same job (a requeued SLURM job) are not parts: the backend keeps the latest.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence

import attrs

from molq.model import JobState, SchedulerStatus
from molq.usage import combine_usage

__all__ = [
    "SourceAnswer",
    "as_answer",
    "aggregate_parts",
    "CancelOutcome",
    "FINAL_RANK",
    "Observation",
]


@attrs.frozen
class SourceAnswer:
    """One successful answer of one scheduler source (queue, accounting, fallback).

    ``statuses`` maps scheduler ids to what the source says about them. ``unreadable`` holds ids
    the answer mentioned but whose record could not be parsed: no evidence for them (one bad
    record costs only that record). ``complete`` is False when some record could not even be
    attributed to an id: then absence from ``statuses`` proves nothing for any id asked about.
    """

    statuses: Mapping[str, SchedulerStatus] = attrs.field(factory=dict)
    unreadable: frozenset[str] = frozenset()
    complete: bool = True
    #: Ids the source says have ended without saying how (Torque's ``C`` without an exit
    #: status): not a final state, but the job is known and no longer runs.
    ended: frozenset[str] = frozenset()

    def knows(self, scheduler_id: str) -> bool:
        return scheduler_id in self.statuses

    def proves_absent(self, scheduler_id: str) -> bool:
        """Whether this answer shows the source does not know ``scheduler_id``."""
        return (self.complete and scheduler_id not in self.statuses and scheduler_id not in self.unreadable
                and scheduler_id not in self.ended)

    def merged(self, other: SourceAnswer) -> SourceAnswer:
        """Two chunks of the same source's answer as one."""
        return SourceAnswer(
            {**self.statuses, **other.statuses},
            self.unreadable | other.unreadable,
            self.complete and other.complete,
            self.ended | other.ended,
        )


def as_answer(value: SourceAnswer | Mapping[str, SchedulerStatus]) -> SourceAnswer:
    """Parsers may return a plain mapping (a complete answer) or a :class:`SourceAnswer`."""
    if isinstance(value, SourceAnswer):
        return value
    return SourceAnswer(dict(value))


#: When parts of one job ended differently, the worst outcome describes the job.
FINAL_RANK: Mapping[JobState, int] = {
    JobState.FAILED: 4,
    JobState.TIMED_OUT: 3,
    JobState.CANCELLED: 2,
    JobState.LOST: 1,
    JobState.SUCCEEDED: 0,
}


def _part_key(part_id: str) -> tuple[int, str]:
    head = re.search(r"(\d+)", part_id)
    return (int(head.group(1)) if head else 1 << 62, part_id)


def aggregate_parts(parts: Sequence[tuple[str, SchedulerStatus]], *, kind: str = "array task") -> SchedulerStatus:
    """One status for a job made of several parts (array tasks, job components).

    Any part waiting or running keeps the job active: RUNNING as soon as one part runs, else
    QUEUED. Once every part is final the job SUCCEEDED only if all did; otherwise it takes the
    worst final state (FAILED > TIMED_OUT > CANCELLED > LOST) with the exit code and reason of
    the first part (by index) that ended that way. ``raw_state`` counts the parts' raw states.

    >>> ok = SchedulerStatus(JobState.SUCCEEDED, "COMPLETED", exit_code=0)
    >>> bad = SchedulerStatus(JobState.FAILED, "FAILED", exit_code=3, reason="exit code 3")
    >>> agg = aggregate_parts([("1", ok), ("2", bad)])
    >>> agg.state, agg.exit_code, agg.raw_state
    (<JobState.FAILED: 'failed'>, 3, 'array task: 1 COMPLETED, 1 FAILED')
    """
    if not parts:
        raise ValueError("aggregate_parts needs at least one part")
    if len(parts) == 1:
        return parts[0][1]
    counts: dict[str, int] = {}
    for _pid, status in parts:
        key = status.raw_state or status.state.value
        counts[key] = counts.get(key, 0) + 1
    summary = f"{kind}: " + ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    starts = [s.started_at for _p, s in parts if s.started_at is not None]
    active = [(p, s) for p, s in parts if not s.state.is_terminal]
    if active:
        running = any(s.state == JobState.RUNNING for _p, s in active)
        never = [s for _p, s in active if s.dependency_never_satisfied]
        waiting = next((s.reason for _p, s in active if s.state != JobState.RUNNING and s.reason), None)
        return SchedulerStatus(
            state=JobState.RUNNING if running else JobState.QUEUED,
            raw_state=summary,
            reason=(never[0].reason if never else waiting),
            started_at=min(starts) if starts and running else None,
            dependency_never_satisfied=bool(never) and len(never) == len(active),
        )
    ordered = sorted(parts, key=lambda ps: _part_key(ps[0]))
    part_id, worst = max(ordered, key=lambda ps: FINAL_RANK.get(ps[1].state, 0))
    ends = [s.finished_at for _p, s in parts if s.finished_at is not None]
    reason = None
    if worst.state != JobState.SUCCEEDED:
        same = sum(1 for _p, s in parts if s.state == worst.state)
        reason = (f"{same} of {len(parts)} {kind}s {worst.state.value} "
                  f"(first: {part_id}: {worst.reason or worst.raw_state or worst.state.value})")
    return SchedulerStatus(
        state=worst.state,
        raw_state=summary,
        exit_code=worst.exit_code,
        exit_signal=worst.exit_signal,
        reason=reason,
        started_at=min(starts) if starts else None,
        finished_at=max(ends) if ends else None,
        end_cause=worst.end_cause,  # the cause of the part whose end describes the job
        usage=combine_usage([(s.usage, s.started_at, s.finished_at) for _p, s in parts]),
    )


class CancelOutcome(str, enum.Enum):
    """What a cancel command's answer says about one job."""

    #: The scheduler accepted the request to stop the job. Not yet proof that it stopped: the
    #: engine records CANCELLED once a status answer confirms it.
    REQUESTED = "requested"
    #: The scheduler says the job had already ended (or is unknown to it because it ended):
    #: the job's real end decides its state, never "cancelled".
    ALREADY_ENDED = "already_ended"
    #: The scheduler refused (permission denied, invalid id...): nothing was stopped.
    REFUSED = "refused"


@attrs.frozen
class Observation:
    """Everything one look at the scheduler learned about a set of tracked jobs, by molq id.

    ``statuses``: what some source says about a job (alive or ended), the queue's word first.
    ``absent``: jobs that every source asked answered about, successfully and completely,
    without knowing them, and for which the wrapper left no exit code -- the only jobs that may
    count a miss. A job in neither has no evidence this time (a query failed, its record could
    not be read): it stays as it is. ``problems`` says why evidence is missing.
    """

    statuses: Mapping[str, SchedulerStatus] = attrs.field(factory=dict)
    absent: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()
    #: Jobs a source says ended without saying how, and no other source told more.
    ended: frozenset[str] = frozenset()
    #: Jobs with a final status but no usage yet, on a scheduler whose accounting reports it
    #: (it lags the queue): a later refresh asks accounting again.
    usage_pending: frozenset[str] = frozenset()
