"""Every LSF job state (``bjobs`` STAT column) and how molq reads it.

One table, :data:`LSF_STATES`, maps each native state to a molq :class:`~molq.model.JobState`.
``EXIT`` is the only state whose meaning depends on more than its name: the termination reason
(``bjobs -o exit_reason``) tells a run-limit kill (TIMED_OUT), a ``bkill`` (CANCELLED) and a
kill-and-requeue (QUEUED again) apart from a plain failure. See :func:`classify_exit`.

Held and suspended states (PSUSP, USUSP, SSUSP), UNKWN (the execution host is unreachable) and
ZOMBI (killed while it was) are never final: the job may still run, and LSF reports DONE or
EXIT once it knows.

A state that is not in the table (a newer LSF release, a site patch) is kept raw and treated as
non-terminal: :func:`status_for` reports it as RUNNING if the job has a start time and QUEUED
otherwise, so that molq never finalises a job it does not understand.
"""

from __future__ import annotations

import re

from molq.causes import EndCause
from molq.model import JobState, SubState

__all__ = [
    "TERM_CAUSES",
    "end_cause",
    "LSF_STATES",
    "sub_state_of",
    "TIMEOUT_REASONS",
    "CANCEL_REASONS",
    "REQUEUE_REASONS",
    "map_state",
    "classify_exit",
    "is_known_state",
]

#: Native state -> (molq state, what LSF means by it). ``EXIT`` maps to FAILED here and is
#: refined by :func:`classify_exit`.
LSF_STATES: dict[str, tuple[JobState, str]] = {
    "PEND": (JobState.QUEUED, "pending: waiting to be scheduled and dispatched"),
    "PROV": (JobState.QUEUED, "dispatched to a power-saved host that is waking up"),
    "PSUSP": (JobState.QUEUED, "suspended (held) by its owner or an administrator while pending"),
    "WAIT": (JobState.QUEUED, "member of a chunk job waiting for its turn to run"),
    "RUN": (JobState.RUNNING, "running"),
    "USUSP": (JobState.RUNNING, "suspended by its owner or an administrator while running"),
    "SSUSP": (JobState.RUNNING, "suspended by LSF (load, run window) while running"),
    # UNKWN: mbatchd lost contact with the execution host; the job may well still be running.
    "UNKWN": (JobState.RUNNING, "execution host unreachable; the job's state is unknown"),
    # ZOMBI: killed while its host was unreachable; LSF reports EXIT once it cleans up.
    "ZOMBI": (JobState.RUNNING, "killed while its execution host was unreachable; awaiting clean-up"),
    "DONE": (JobState.SUCCEEDED, "finished with exit code 0"),
    "EXIT": (JobState.FAILED, "finished with a non-zero exit code, or was killed"),
}

#: Termination reasons (``TERM_*`` keywords) that mean "ran out of time".
TIMEOUT_REASONS = frozenset({"TERM_RUNLIMIT", "TERM_DEADLINE"})

#: Termination reasons that mean "somebody killed it with bkill" (owner or administrator).
CANCEL_REASONS = frozenset(
    {"TERM_OWNER", "TERM_FORCE_OWNER", "TERM_ADMIN", "TERM_FORCE_ADMIN", "TERM_BUCKET_KILL"}
)


#: Termination reasons of a run that was killed and put back in the queue (``brequeue``):
#: the job is pending again, so such a record is never final.
REQUEUE_REASONS = frozenset({"TERM_REQUEUE_OWNER", "TERM_REQUEUE_ADMIN"})


#: Why an ``EXIT`` job ended, by its termination reason (the keywords of "Termination reasons
#: displayed by bacct, bhist, and bjobs" in the LSF administration guide). A reason not here
#: leaves the exit code to tell.
TERM_CAUSES: dict[str, EndCause] = {
    "TERM_ADMIN": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_FORCE_ADMIN": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_OWNER": EndCause.CANCELLED_BY_USER,
    "TERM_FORCE_OWNER": EndCause.CANCELLED_BY_USER,
    # bkill -b: a bulk kill, by the owner or an administrator -- LSF does not say which
    "TERM_BUCKET_KILL": EndCause.UNKNOWN,
    "TERM_RUNLIMIT": EndCause.TIME_LIMIT,
    "TERM_CPULIMIT": EndCause.TIME_LIMIT,
    "TERM_DEADLINE": EndCause.TIME_LIMIT,
    "TERM_MEMLIMIT": EndCause.OUT_OF_MEMORY,
    "TERM_SWAP": EndCause.OUT_OF_MEMORY,
    "TERM_PREEMPT": EndCause.PREEMPTED,
    # a cloud host taken back by its provider: the job's resources were taken away
    "TERM_RC_RECLAIM": EndCause.PREEMPTED,
    "TERM_ZOMBIE": EndCause.NODE_FAILURE,
    "TERM_CWD_NOTEXIST": EndCause.LAUNCH_FAILED,
    "TERM_PRE_EXEC_FAIL": EndCause.LAUNCH_FAILED,
    "TERM_DATA": EndCause.LAUNCH_FAILED,
    "TERM_CSM_ALLOC": EndCause.LAUNCH_FAILED,
    # an orphan: a job whose dependency can no longer be met, killed by LSF
    "TERM_ORPHAN_SYSTEM": EndCause.DEPENDENCY_NEVER_SATISFIED,
    "TERM_EXTERNAL_SIGNAL": EndCause.SIGNAL,
    # limits and policies of the site's enforced by LSF
    "TERM_LOAD": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_WINDOW": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_PROCESSLIMIT": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_THREADLIMIT": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_CHKPNT": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_MC_RECALL": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_REMOVE_HUNG_JOB": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_RMS": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_KUBE": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    "TERM_OTHER": EndCause.UNKNOWN,
    "TERM_UNKNOWN": EndCause.UNKNOWN,
}


def end_cause(stat: str, exit_reason: str | None, exit_code: int | None, exit_signal: int | None) -> EndCause | None:
    """Why a DONE or EXIT job ended (None for any other state).

    >>> end_cause("EXIT", "TERM_MEMLIMIT: job killed after reaching LSF memory usage limit", 137, 9)
    <EndCause.OUT_OF_MEMORY: 'out_of_memory'>
    >>> end_cause("EXIT", "", 2, None)
    <EndCause.EXIT_CODE: 'exit_code'>
    """
    raw = stat.strip().upper()
    if raw == "DONE":
        return EndCause.COMPLETED
    if raw != "EXIT":
        return None
    keyword = reason_keyword(exit_reason)
    if keyword in TERM_CAUSES:
        return TERM_CAUSES[keyword]
    if exit_signal:
        return EndCause.SIGNAL
    if exit_code:
        return EndCause.EXIT_CODE
    return EndCause.UNKNOWN


def is_known_state(raw: str) -> bool:
    """Whether ``raw`` is one of the states in :data:`LSF_STATES`."""
    return raw.strip().upper() in LSF_STATES


def map_state(raw: str, *, started: bool = False) -> JobState:
    """The molq state of a native LSF state, without termination details.

    Unknown states are non-terminal: RUNNING when the job has started, else QUEUED.

    >>> map_state("PEND")
    <JobState.QUEUED: 'queued'>
    >>> map_state("NEWSTATE", started=True)
    <JobState.RUNNING: 'running'>
    """
    entry = LSF_STATES.get(raw.strip().upper())
    if entry is None:
        return JobState.RUNNING if started else JobState.QUEUED
    return entry[0]


def reason_keyword(exit_reason: str | None) -> str | None:
    """``"TERM_OWNER: job killed by owner"`` -> ``"TERM_OWNER"``."""
    if not exit_reason:
        return None
    head = exit_reason.strip().split(":", 1)[0].strip().split()
    if head and head[0].upper().startswith("TERM_"):
        return head[0].upper()
    return None


def classify_exit(exit_reason: str | None) -> JobState:
    """The molq state of an ``EXIT`` job from its termination reason.

    >>> classify_exit("TERM_RUNLIMIT: job killed after reaching LSF run time limit")
    <JobState.TIMED_OUT: 'timed_out'>
    >>> classify_exit("TERM_OWNER: job killed by owner")
    <JobState.CANCELLED: 'cancelled'>
    >>> classify_exit("TERM_REQUEUE_ADMIN: job killed and requeued by root or LSF administrator")
    <JobState.QUEUED: 'queued'>
    >>> classify_exit("")
    <JobState.FAILED: 'failed'>
    """
    keyword = reason_keyword(exit_reason)
    if keyword in REQUEUE_REASONS:
        return JobState.QUEUED
    if keyword in TIMEOUT_REASONS:
        return JobState.TIMED_OUT
    if keyword in CANCEL_REASONS:
        return JobState.CANCELLED
    return JobState.FAILED


#: Pending reasons (bjobs PEND_REASON; each ends with ';') that mean waiting for an upstream
#: job, or for hosts, slots or resources rather than for a turn.
_DEPENDENCY_REASON = re.compile(r"dependency condition", re.IGNORECASE)
_RESOURCE_REASON = re.compile(
    r"no suitable hosts|not enough (job slot|hosts|processors)|requirements? for reserving resource"
    r"|resource requirement|individual host.based reasons",
    re.IGNORECASE,
)


def sub_state_of(stat: str, pend_reason: str, *, requeued: bool = False) -> SubState | None:
    """The sub-state of a live LSF job: PSUSP is held (``bsub -H``, ``bstop`` while pending),
    USUSP and SSUSP suspended, a ``brequeue``-d job requeued, and a PEND job waiting for a
    dependency or for resources when its pending reason says so.

    >>> sub_state_of("PEND", "Job dependency condition not satisfied;")
    <SubState.WAITING_DEPENDENCY: 'waiting_dependency'>
    >>> sub_state_of("PEND", "New job is waiting for scheduling;") is None
    True
    """
    if requeued:
        return SubState.REQUEUED
    if stat == "PSUSP":
        return SubState.HELD
    if stat in ("USUSP", "SSUSP"):
        return SubState.SUSPENDED
    if stat == "PEND" and _DEPENDENCY_REASON.search(pend_reason):
        return SubState.WAITING_DEPENDENCY
    if stat == "PEND" and _RESOURCE_REASON.search(pend_reason):
        return SubState.WAITING_RESOURCES
    return None
