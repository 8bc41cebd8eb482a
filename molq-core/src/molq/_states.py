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


class SubState(str, enum.Enum):
    """Why a queued or running job is not simply waiting its turn or running, beside its
    :class:`JobState` (which it never changes): the scheduler's own detail, normalised.

    ``held`` and the two ``waiting_*`` values go with ``queued``; ``suspended`` with
    ``running`` (the job keeps its allocation); ``requeued`` with ``queued`` (it ran and
    waits to run again).
    """

    HELD = "held"
    SUSPENDED = "suspended"
    REQUEUED = "requeued"
    WAITING_DEPENDENCY = "waiting_dependency"
    WAITING_RESOURCES = "waiting_resources"

    @property
    def label(self) -> str:
        """A short human spelling: ``waiting_dependency`` -> ``waiting for dependency``."""
        return self.value.replace("waiting_", "waiting for ").replace("_", " ")

    def __str__(self) -> str:
        return self.value


def sub_state_or_none(value: object) -> SubState | None:
    """A stored or given sub-state as a :class:`SubState`; None, empty or an unknown value
    (written by a newer molq) is None."""
    if value is None or isinstance(value, SubState):
        return value
    try:
        return SubState(str(value))
    except ValueError:
        return None


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.LOST}
)
ACTIVE_STATES = frozenset(set(JobState) - TERMINAL_STATES)
