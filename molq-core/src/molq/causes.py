"""Why a job ended: one normalised :class:`EndCause` beside its state, on every scheduler.

A terminal state says *that* a job failed; its end cause says *why*, in words every backend
shares, so a retry policy or a report can act on it (an out-of-memory job needs more memory, a
preempted one is not the user's failure). Backends map their own evidence with a table in their
states module and put the result on :attr:`~molq.model.SchedulerStatus.end_cause`; where a
backend says nothing more specific, :func:`cause_from_exit` derives the cause from the state and
the exit status alone. The engine has the last word for what only it knows: it cancelled the
job (``cancelled_by_user``), the job is LOST (``lost``), its dependency can never be satisfied.
"""

from __future__ import annotations

import enum
from typing import Any

from molq._states import JobState

__all__ = ["EndCause", "cause_from_exit", "to_cause", "CAUSE_ALIASES", "parse_causes"]


class EndCause(str, enum.Enum):
    """Why a job reached its terminal state."""

    #: It ran to the end and exited 0.
    COMPLETED = "completed"
    #: Its command exited with a non-zero code.
    EXIT_CODE = "exit_code"
    #: Its command was killed by a signal nobody else claimed (not a cancel, not a limit).
    SIGNAL = "signal"
    #: It used more memory than it was given.
    OUT_OF_MEMORY = "out_of_memory"
    #: It ran past its time limit (or deadline, or CPU-time limit).
    TIME_LIMIT = "time_limit"
    #: Its owner cancelled it (through molq, or with the scheduler's own command).
    CANCELLED_BY_USER = "cancelled_by_user"
    #: An administrator or the scheduler itself removed it.
    CANCELLED_BY_ADMIN_OR_SYSTEM = "cancelled_by_admin_or_system"
    #: A higher-priority job took its resources.
    PREEMPTED = "preempted"
    #: A node it ran on failed.
    NODE_FAILURE = "node_failure"
    #: It never started: bad script, missing working directory, a node that failed to boot.
    LAUNCH_FAILED = "launch_failed"
    #: It waited on a dependency that can never be satisfied.
    DEPENDENCY_NEVER_SATISFIED = "dependency_never_satisfied"
    #: The scheduler forgot it and no exit code was written.
    LOST = "lost"
    #: The evidence does not say.
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


def to_cause(value: Any) -> EndCause | None:
    """``value`` (an :class:`EndCause`, its string, or None) as an EndCause. A string this
    molq does not know (written by a newer one) reads as UNKNOWN rather than failing."""
    if value is None or isinstance(value, EndCause):
        return value
    try:
        return EndCause(str(value))
    except ValueError:
        return EndCause.UNKNOWN


def cause_from_exit(state: JobState, exit_code: int | None, exit_signal: int | None) -> EndCause | None:
    """The cause a terminal state and exit status imply on their own (None for an active job).

    A CANCELLED state without word of who cancelled is UNKNOWN: molq does not guess between
    the owner and an administrator.

    >>> cause_from_exit(JobState.FAILED, 137, 9)
    <EndCause.SIGNAL: 'signal'>
    >>> cause_from_exit(JobState.FAILED, 3, None)
    <EndCause.EXIT_CODE: 'exit_code'>
    """
    if not state.is_terminal:
        return None
    if state == JobState.SUCCEEDED:
        return EndCause.COMPLETED
    if state == JobState.TIMED_OUT:
        return EndCause.TIME_LIMIT
    if state == JobState.LOST:
        return EndCause.LOST
    if state == JobState.CANCELLED:
        return EndCause.UNKNOWN
    if exit_signal:
        return EndCause.SIGNAL
    if exit_code:
        return EndCause.EXIT_CODE
    return EndCause.UNKNOWN


#: Short names the command line accepts for causes (``--retry-on oom,timeout``).
CAUSE_ALIASES: dict[str, EndCause] = {
    "oom": EndCause.OUT_OF_MEMORY,
    "memory": EndCause.OUT_OF_MEMORY,
    "timeout": EndCause.TIME_LIMIT,
    "time": EndCause.TIME_LIMIT,
    "preempt": EndCause.PREEMPTED,
    "node": EndCause.NODE_FAILURE,
    "node_fail": EndCause.NODE_FAILURE,
    "exit": EndCause.EXIT_CODE,
}


def parse_causes(text: str | Any) -> tuple[EndCause, ...]:
    """Causes from ``"oom,timeout"`` or an iterable of names; a name that is neither a cause
    nor an alias raises :class:`ValueError` naming it and the choices."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[EndCause] = []
    for item in items:
        if isinstance(item, EndCause):
            cause = item
        else:
            name = str(item).strip().lower().replace("-", "_")
            if not name:
                continue
            found = CAUSE_ALIASES.get(name)
            if found is None:
                try:
                    found = EndCause(name)
                except ValueError:
                    choices = ", ".join([*CAUSE_ALIASES, *(c.value for c in EndCause)])
                    raise ValueError(f"unknown end cause {item!r}; choose from {choices}") from None
            cause = found
        if cause not in out:
            out.append(cause)
    return tuple(out)
