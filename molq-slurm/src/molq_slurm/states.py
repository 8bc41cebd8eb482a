"""The SLURM job-state table: every state squeue, sacct and scontrol print, mapped to molq.

SLURM prints states in two spellings: the compact code (``squeue -o %t``: ``PD``, ``R``, ``CD``)
and the long name (``squeue -O State``, ``sacct``, ``scontrol``: ``PENDING``, ``RUNNING``,
``COMPLETED``). sacct decorates some long names (``CANCELLED by 1000``), and fixed-width
output may truncate them with a ``+``. :func:`normalize_state` undoes all of that, and
:func:`map_state` turns the result into a :class:`~molq.model.JobState`.

How the less common states are read, and why:

* ``CONFIGURING`` (nodes allocated but still booting) counts as QUEUED: the job's own
  code has not started yet.
* ``COMPLETING``, ``STAGE_OUT``, ``SIGNALING`` and ``RESIZING`` are still RUNNING: the job
  has not reached its final state, and only that final state says how it ended.
* ``SUSPENDED`` and ``STOPPED`` are RUNNING: the job holds (or will get back) its
  allocation and continues when resumed.
* ``REQUEUED``, ``REQUEUE_HOLD``, ``REQUEUE_FED`` and ``RESV_DEL_HOLD`` are QUEUED: the job
  waits to run (again).
* ``DEADLINE`` (ended because its ``--deadline`` passed) is TIMED_OUT: like a time limit,
  it is a clock that ran out.
* ``PREEMPTED``, ``NODE_FAIL``, ``BOOT_FAIL``, ``OUT_OF_MEMORY`` and ``SPECIAL_EXIT`` are
  FAILED: the job did not complete, and a retry policy may run it again.
* ``REVOKED`` (a federated sibling withdrawn because another cluster runs the job) is
  CANCELLED on this cluster.
* A state missing from this table (a newer SLURM) is kept raw and never treated as final:
  QUEUED if the job has no start time, RUNNING if it has one.

Why a job ended (:class:`~molq.causes.EndCause`) comes from :data:`END_CAUSES` for the states
that say it by name, and from the other evidence accounting keeps for FAILED and CANCELLED
jobs; see :func:`end_cause`.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from molq.causes import EndCause
from molq.model import JobState, SubState

__all__ = [
    "END_CAUSES",
    "REASON_CAUSES",
    "StepEvidence",
    "end_cause",
    "SHORT_TO_LONG",
    "STATE_MAP",
    "normalize_state",
    "map_state",
    "is_known_state",
    "FAILURE_DESCRIPTIONS",
    "sub_state_of",
]

#: Compact state codes (``squeue -o %t``) and their long names.
SHORT_TO_LONG: dict[str, str] = {
    "BF": "BOOT_FAIL",
    "CA": "CANCELLED",
    "CD": "COMPLETED",
    "CF": "CONFIGURING",
    "CG": "COMPLETING",
    "DL": "DEADLINE",
    "F": "FAILED",
    "NF": "NODE_FAIL",
    "OOM": "OUT_OF_MEMORY",
    "PD": "PENDING",
    "PR": "PREEMPTED",
    "R": "RUNNING",
    "RD": "RESV_DEL_HOLD",
    "RF": "REQUEUE_FED",
    "RH": "REQUEUE_HOLD",
    "RQ": "REQUEUED",
    "RS": "RESIZING",
    "RV": "REVOKED",
    "SE": "SPECIAL_EXIT",
    "SI": "SIGNALING",
    "SO": "STAGE_OUT",
    "ST": "STOPPED",
    "S": "SUSPENDED",
    "TO": "TIMEOUT",
}

#: Long state name -> molq state. The one table every SLURM parser uses.
STATE_MAP: dict[str, JobState] = {
    # waiting
    "PENDING": JobState.QUEUED,
    "CONFIGURING": JobState.QUEUED,
    "REQUEUED": JobState.QUEUED,
    "REQUEUE_HOLD": JobState.QUEUED,
    "REQUEUE_FED": JobState.QUEUED,
    "RESV_DEL_HOLD": JobState.QUEUED,
    # started, not final yet
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    # final
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "TIMEOUT": JobState.TIMED_OUT,
    "DEADLINE": JobState.TIMED_OUT,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
}

#: Why a job ended, for final states whose name alone is terse.
FAILURE_DESCRIPTIONS: dict[str, str] = {
    "OUT_OF_MEMORY": "out of memory",
    "NODE_FAIL": "node failure",
    "BOOT_FAIL": "node failed to boot",
    "PREEMPTED": "preempted",
    "SPECIAL_EXIT": "special exit (held by SLURM)",
    "TIMEOUT": "time limit reached",
    "DEADLINE": "deadline reached",
    "REVOKED": "revoked (the federation runs it on another cluster)",
}


#: Final states whose name alone says why the job ended.
END_CAUSES: dict[str, EndCause] = {
    "COMPLETED": EndCause.COMPLETED,
    "TIMEOUT": EndCause.TIME_LIMIT,
    "DEADLINE": EndCause.TIME_LIMIT,
    "OUT_OF_MEMORY": EndCause.OUT_OF_MEMORY,
    "NODE_FAIL": EndCause.NODE_FAILURE,
    # The nodes allocated to it failed to boot: the job never started.
    "BOOT_FAIL": EndCause.LAUNCH_FAILED,
    "PREEMPTED": EndCause.PREEMPTED,
    # A federated sibling withdrawn by the federation, not by anyone's request.
    "REVOKED": EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
}

#: SLURM reasons (``Reason``, upper-cased) that say why a FAILED job failed.
REASON_CAUSES: dict[str, EndCause] = {
    "JOBLAUNCHFAILURE": EndCause.LAUNCH_FAILED,
    "LAUNCH_FAILED_REQUEUED_HELD": EndCause.LAUNCH_FAILED,
    "BADCONSTRAINTS": EndCause.LAUNCH_FAILED,
    "NODEDOWN": EndCause.NODE_FAILURE,
    "NODE_FAIL": EndCause.NODE_FAILURE,
    "OUTOFMEMORY": EndCause.OUT_OF_MEMORY,
}

#: The signal SLURM's memory enforcement (``OverMemoryKill``) and the kernel's OOM killer send.
_SIGKILL = 9


@attrs.frozen
class StepEvidence:
    """What accounting says about one step of a job (``123.batch``, ``123.0``)."""

    state: str
    max_rss_bytes: int | None = None


def end_cause(
    raw_state: str,
    *,
    reason: str | None = None,
    exit_signal: int | None = None,
    owner_uid: str | None = None,
    steps: Sequence[StepEvidence] = (),
    requested_memory_bytes: int | None = None,
) -> EndCause | None:
    """Why a job in final state ``raw_state`` ended, from SLURM's evidence (None: the state and
    exit status say all there is, see :func:`molq.causes.cause_from_exit`).

    * a state named in :data:`END_CAUSES` says it;
    * a step that ended OUT_OF_MEMORY means the job ran out of memory, whatever the job's own
      record says (older SLURM marks only the step);
    * without cgroups, ``JobAcctGatherParams=OverMemoryKill`` kills a job over its memory with
      SIGKILL: the job is FAILED ``0:9`` (or its step CANCELLED) and a step's MaxRSS is above
      the request -- out of memory, not a plain signal;
    * ``CANCELLED by <uid>``: by the job's owner (``owner_uid``) or by someone else (root, an
      operator, SLURM itself);
    * a FAILED job's reason may name a launch or node failure.

    >>> end_cause("CANCELLED by 0", owner_uid="1000")
    <EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM: 'cancelled_by_admin_or_system'>
    >>> end_cause("FAILED", exit_signal=9, steps=[StepEvidence("CANCELLED by 0", 300 << 20)],
    ...           requested_memory_bytes=256 << 20)
    <EndCause.OUT_OF_MEMORY: 'out_of_memory'>
    """
    name = normalize_state(raw_state)
    if name in END_CAUSES and name != "COMPLETED":
        return END_CAUSES[name]
    if any(normalize_state(step.state) == "OUT_OF_MEMORY" for step in steps):
        return EndCause.OUT_OF_MEMORY
    if name in ("FAILED", "CANCELLED") and requested_memory_bytes:
        killed = exit_signal == _SIGKILL or any(normalize_state(st.state) == "CANCELLED" for st in steps)
        over = any(st.max_rss_bytes is not None and st.max_rss_bytes > requested_memory_bytes for st in steps)
        if killed and over:
            return EndCause.OUT_OF_MEMORY
    if name == "COMPLETED":
        return EndCause.COMPLETED
    if name == "CANCELLED":
        who = raw_state.strip().split(" by ", 1)
        if len(who) != 2 or not owner_uid:
            return None  # who cancelled it is not known
        if who[1].strip() == owner_uid.strip():
            return EndCause.CANCELLED_BY_USER
        return EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM
    if name == "FAILED":
        return REASON_CAUSES.get((reason or "").strip().upper())
    return None


def normalize_state(raw: str) -> str:
    """The bare long state name in ``raw``.

    >>> normalize_state("CANCELLED by 1000")
    'CANCELLED'
    >>> normalize_state("PD")
    'PENDING'
    >>> normalize_state("TIMEOUT+")
    'TIMEOUT'
    """
    text = raw.strip()
    if not text:
        return ""
    word = text.split()[0].rstrip("+").upper()
    return SHORT_TO_LONG.get(word, word)


def is_known_state(raw: str) -> bool:
    """Whether ``raw`` names a state in :data:`STATE_MAP`."""
    return normalize_state(raw) in STATE_MAP


def map_state(raw: str, *, started: bool = False) -> JobState:
    """The molq state for a SLURM state (either spelling, decorations allowed).

    An unknown state is never final: it maps to RUNNING when the job has a start time
    (``started``), else to QUEUED.

    >>> map_state("CD")
    <JobState.SUCCEEDED: 'succeeded'>
    >>> map_state("SOME_NEW_STATE", started=True)
    <JobState.RUNNING: 'running'>
    """
    state = STATE_MAP.get(normalize_state(raw))
    if state is not None:
        return state
    return JobState.RUNNING if started else JobState.QUEUED


#: Live states that are a sub-state by themselves, whatever the reason says.
_STATE_SUB_STATES: dict[str, SubState] = {
    "SUSPENDED": SubState.SUSPENDED,
    "STOPPED": SubState.SUSPENDED,
    "REQUEUED": SubState.REQUEUED,
    "REQUEUE_FED": SubState.REQUEUED,
    "REQUEUE_HOLD": SubState.HELD,
    "RESV_DEL_HOLD": SubState.HELD,
}

#: Pending reasons (squeue's JOB REASON CODES) that mean waiting for resources rather than
#: for a turn: the cluster has no room, or what the job asks for is down or in use.
_RESOURCE_REASONS = ("RESOURCES", "REQNODENOTAVAIL", "NODEDOWN", "LICENSES", "NODES_REQUIRED", "BADCONSTRAINTS")


def sub_state_of(raw_state: str, reason: str | None) -> SubState | None:
    """The sub-state of a live SLURM job from its state and squeue/scontrol reason.

    >>> sub_state_of("PENDING", "JobHeldUser")
    <SubState.HELD: 'held'>
    >>> sub_state_of("PD", "Dependency")
    <SubState.WAITING_DEPENDENCY: 'waiting_dependency'>
    >>> sub_state_of("PENDING", "job requeued in held state")
    <SubState.HELD: 'held'>
    >>> sub_state_of("PENDING", "Priority") is None
    True
    """
    name = normalize_state(raw_state)
    if name in _STATE_SUB_STATES:
        return _STATE_SUB_STATES[name]
    if name != "PENDING":
        return None
    word = (reason or "").strip().upper().replace(" ", "_")
    # SLURM 22.05 shows a job after `scontrol requeuehold` as PENDING, "job requeued in held state".
    if word.startswith("JOBHELD") or "HELD_STATE" in word:
        return SubState.HELD
    if word.startswith("DEPENDENCY"):
        return SubState.WAITING_DEPENDENCY
    if word.startswith(_RESOURCE_REASONS):
        return SubState.WAITING_RESOURCES
    return None
