"""The job states (re-exported by :mod:`molq.model` and :mod:`molq`)."""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    """Where a job is in its life. ``succeeded``, ``failed``, ``cancelled``, ``timed_out`` and
    ``lost`` are terminal."""

    CREATED = "created"
    SUBMITTED = "submitted"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.LOST}
)
ACTIVE_STATES = frozenset(set(JobState) - TERMINAL_STATES)
