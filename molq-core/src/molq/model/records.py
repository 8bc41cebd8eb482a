"""State and history: the legal moves of the state machine and the persisted values the store
hands back (:class:`JobRecord`, :class:`StatusTransition`, :class:`JobDependency`), plus a
scheduler's own :class:`QueueEntry`."""

from __future__ import annotations

from typing import Literal

import attrs

from molq._states import TERMINAL_STATES, JobState, SubState, sub_state_or_none
from molq.causes import EndCause, to_cause
from molq.model.submission import DependencyCondition
from molq.usage import Usage, to_usage

# Legal moves of the state machine; the store refuses anything else.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.CREATED: frozenset(
        {JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING} | TERMINAL_STATES
    ),
    JobState.SUBMITTED: frozenset({JobState.QUEUED, JobState.RUNNING} | TERMINAL_STATES),
    JobState.QUEUED: frozenset({JobState.RUNNING} | TERMINAL_STATES),
    JobState.RUNNING: frozenset({JobState.QUEUED} | TERMINAL_STATES),  # requeue
    # LOST is terminal for users, but late evidence (accounting, exit-code file) may correct it.
    JobState.LOST: frozenset(TERMINAL_STATES - {JobState.LOST}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
}


@attrs.frozen
class StatusTransition:
    """One persisted state change of a job."""

    job_id: str
    old_state: JobState | None
    new_state: JobState
    timestamp: float
    reason: str | None = None


@attrs.frozen
class JobDependency:
    """A persisted dependency edge: ``job_id`` waits for ``dependency_job_id``."""

    job_id: str
    dependency_job_id: str
    dependency_type: DependencyCondition
    scheduler_dependency: str | None = None


@attrs.frozen
class QueueEntry:
    """One row of the scheduler's own queue (``squeue``, ``qstat``, ``bjobs``); may be a job
    that molq did not submit. ``sub_state`` (a :class:`~molq.SubState` or None) and
    ``sub_state_reason`` say what holds it beside its state."""

    scheduler_job_id: str
    name: str | None = None
    user: str | None = None
    state: JobState = JobState.QUEUED
    raw_state: str = ""
    partition: str | None = None
    submit_time: float | None = None
    start_time: float | None = None
    #: Cores the job holds or asks for, when the scheduler says (the local scheduler does).
    cpus: int | None = None
    #: What a queued job waits for ("cores", "<job> to end", or why it can never start).
    waits_for: str | None = None
    #: Held, suspended, requeued, waiting for a dependency or for resources (None: plain).
    sub_state: SubState | None = attrs.field(default=None, converter=sub_state_or_none)
    #: The scheduler's own words for the sub-state (SLURM reason, PBS comment, LSF reason).
    sub_state_reason: str | None = None


@attrs.frozen
class JobRecord:
    """Immutable snapshot of a persisted job.

    ``sub_state`` and ``sub_state_reason`` say what the scheduler last reported beside the
    state of an active job (held, suspended, requeued, waiting for a dependency or for
    resources, with the scheduler's own reason); both are None once the job ended.
    """

    job_id: str
    cluster_name: str
    scheduler: str
    state: JobState
    root_job_id: str
    attempt: int = 1
    previous_attempt_job_id: str | None = None
    retry_group_id: str | None = None
    profile_name: str | None = None
    scheduler_job_id: str | None = None
    raw_state: str | None = None
    created_at: float | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    failure_reason: str | None = None
    cwd: str | None = None
    job_dir: str | None = None
    command_type: Literal["argv", "command", "script"] = "argv"
    command_display: str = ""
    job_name: str | None = None
    metadata: dict[str, str] = attrs.field(factory=dict, hash=False)
    next_retry_at: float | None = None
    retried_by: str | None = None
    cleaned_at: float | None = None
    #: Why a terminal job ended (None while active, and for records older than end causes).
    end_cause: EndCause | None = attrs.field(default=None, converter=to_cause)
    #: What it used, where the scheduler reports it.
    usage: Usage | None = attrs.field(default=None, converter=to_usage, hash=False)
    #: What the scheduler last said beside the state (see :class:`~molq.SubState`); None once
    #: the job ended or when nothing particular holds it.
    sub_state: SubState | None = attrs.field(default=None, converter=sub_state_or_none)
    sub_state_reason: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def short_id(self) -> str:
        return self.job_id[:8]
