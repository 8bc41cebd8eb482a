"""Every PBS job state (PBS Pro / OpenPBS and Torque) and how molq reads it.

Two tables map the one-letter ``job_state`` of ``qstat`` to a molq :class:`~molq.model.JobState`:
:data:`PBSPRO_STATES` and :data:`TORQUE_STATES`. The finished states (``F`` and ``X`` in PBS Pro,
``C`` in Torque) map to SUCCEEDED here and are refined from the job's exit status, sub-state and
resource use by :func:`classify_pbspro_finished` and :func:`classify_torque_completed`.

A state letter that is in neither table is kept raw and treated as non-terminal: RUNNING when the
job has a start time, QUEUED otherwise, so that molq never finalises a job it does not understand.

Exit statuses, as PBS reports them:

* ``0`` .. ``255``: the exit status of the job's top shell (``128 + N`` when the shell itself
  saw a child killed by signal N).
* ``256 + N``: the top shell was killed by signal N (e.g. 271 = SIGTERM, 265 = SIGKILL). Older
  PBS Pro releases and Torque report a walltime kill this way.
* negative values: ``JOB_EXEC_*`` codes set by the execution host (:data:`PBSPRO_EXEC_CODES`,
  :data:`TORQUE_EXEC_CODES`); ``-29`` (PBS Pro) and ``-11`` (Torque) mean "killed for exceeding
  walltime".
"""

from __future__ import annotations

import re
import signal as _signal
from collections.abc import Mapping

import attrs
from molq.causes import EndCause
from molq.model import JobState, SubState

__all__ = [
    "PBSPRO_EXEC_CAUSES",
    "TORQUE_EXEC_CAUSES",
    "end_cause",
    "PBSPRO_STATES",
    "TORQUE_STATES",
    "PBSPRO_EXEC_CODES",
    "TORQUE_EXEC_CODES",
    "PBSPRO_WALLTIME_CODE",
    "TORQUE_WALLTIME_CODE",
    "SUBSTATE_TERMINATED",
    "SUBSTATE_FINISHED",
    "SUBSTATE_FAILED",
    "FinishedJob",
    "map_state",
    "sub_state_of",
    "is_finished_state",
    "classify_pbspro_finished",
    "classify_torque_completed",
]

#: PBS Pro / OpenPBS ``job_state`` -> (molq state, what PBS means by it). ``F`` and ``X`` are
#: refined by :func:`classify_pbspro_finished`.
PBSPRO_STATES: dict[str, tuple[JobState, str]] = {
    "B": (JobState.RUNNING, "array job: at least one subjob has started"),
    "E": (JobState.RUNNING, "exiting after having run"),
    "F": (JobState.SUCCEEDED, "finished (history job, shown with qstat -x)"),
    "H": (JobState.QUEUED, "held (user, system or dependency hold)"),
    # M: moved to another server by peer scheduling; the job lives on there.
    "M": (JobState.QUEUED, "moved to another server"),
    "Q": (JobState.QUEUED, "queued, eligible to run"),
    "R": (JobState.RUNNING, "running"),
    "S": (JobState.RUNNING, "suspended while running"),
    "T": (JobState.QUEUED, "being moved to a new location"),
    "U": (JobState.RUNNING, "cycle-harvesting job suspended because of keyboard activity"),
    "W": (JobState.QUEUED, "waiting for its requested start time"),
    "X": (JobState.SUCCEEDED, "subjob finished or deleted (expired)"),
}

#: Torque ``job_state`` -> (molq state, meaning). ``C`` is refined by
#: :func:`classify_torque_completed`.
TORQUE_STATES: dict[str, tuple[JobState, str]] = {
    "C": (JobState.SUCCEEDED, "completed (kept for keep_completed seconds)"),
    "E": (JobState.RUNNING, "exiting after having run"),
    "H": (JobState.QUEUED, "held"),
    "Q": (JobState.QUEUED, "queued, eligible to run"),
    "R": (JobState.RUNNING, "running"),
    "T": (JobState.QUEUED, "being moved to a new location"),
    "W": (JobState.QUEUED, "waiting for its execution time"),
    "S": (JobState.RUNNING, "suspended"),
}

_FINISHED = {"pbspro": frozenset({"F", "X"}), "torque": frozenset({"C"})}

#: Job sub-states PBS Pro gives history jobs (``substate`` attribute).
SUBSTATE_TERMINATED = 91  # deleted (qdel) or aborted by the server
SUBSTATE_FINISHED = 92
SUBSTATE_FAILED = 93

#: PBS Pro ``JOB_EXEC_*`` exit codes (negative ``Exit_status``), from OpenPBS ``src/include/job.h``.
#: Several do not end the job: the server requeues it (-3, -5, -15, -16, -18, -22, -30; -4, -6,
#: -7, -11, -14, -20 when it is rerunnable) or holds it (-12 after a checkpointing hold, -13,
#: -21), so such a job shows up as ``Q``/``H`` with that ``Exit_status`` and is not final.
PBSPRO_EXEC_CODES: dict[int, str] = {
    -1: "JOB_EXEC_FAIL1: job exec failed, before files, no retry",
    -2: "JOB_EXEC_FAIL2: job exec failed, after files, no retry",
    -3: "JOB_EXEC_RETRY: job execution failed, do retry",
    -4: "JOB_EXEC_INITABT: job aborted on MoM initialization",
    -5: "JOB_EXEC_INITRST: job aborted on MoM init, checkpoint, no migrate",
    -6: "JOB_EXEC_INITRMG: job aborted on MoM init, checkpoint, ok migrate",
    -7: "JOB_EXEC_BADRESRT: job restart failed",
    -10: "JOB_EXEC_FAILUID: invalid uid/gid for job",
    -11: "JOB_EXEC_RERUN: job rerun (qrerun, preemption by requeue, or a busy cycle-harvesting host)",
    -12: "JOB_EXEC_CHKP: job was checkpointed and killed",
    -13: "JOB_EXEC_FAIL_PASSWORD: job failed due to a bad password",
    -14: "JOB_EXEC_RERUN_SIS_FAIL: job rerun after a sister failed",
    -15: "JOB_EXEC_QUERST: requeued for restart from checkpoint",
    -16: "JOB_EXEC_FAILHOOK_RERUN: a hook rejected the job, requeued",
    -17: "JOB_EXEC_FAILHOOK_DELETE: a hook rejected the job, deleted",
    -18: "JOB_EXEC_HOOK_RERUN: a hook requested a requeue",
    -19: "JOB_EXEC_HOOK_DELETE: a hook requested deletion",
    -20: "JOB_EXEC_RERUN_MS_FAIL: mother superior connection failed",
    -21: "JOB_EXEC_FAIL_SECURITY: security breach in PBS directory",
    -22: "JOB_EXEC_HOOKERROR: hook error or hook timeout",
    -23: "JOB_EXEC_FAIL_KRB5: no Kerberos credentials",
    -24: "JOB_EXEC_KILL_NCPUS_BURST: killed for exceeding ncpus (burst)",
    -25: "JOB_EXEC_KILL_NCPUS_SUM: killed for exceeding ncpus (sum)",
    -26: "JOB_EXEC_KILL_VMEM: killed for exceeding vmem",
    -27: "JOB_EXEC_KILL_MEM: killed for exceeding mem",
    -28: "JOB_EXEC_KILL_CPUT: killed for exceeding cput",
    -29: "JOB_EXEC_KILL_WALLTIME: killed for exceeding walltime",
    -30: "JOB_EXEC_JOINJOB: join job error",
}
PBSPRO_WALLTIME_CODE = -29

#: Torque's exit codes (Torque ``src/include/pbs_job.h``; Administrator Guide "Job Exit Status").
#: The same numbers mean other things than in PBS Pro from -8 on (-10: memory here, a bad uid
#: there; -11: walltime here, a rerun there). -3, -13 and -14 are retried (the job is requeued)
#: unless the server has ``disable_automatic_requeue`` set.
TORQUE_EXEC_CODES: dict[int, str] = {
    -1: "JOB_EXEC_FAIL1: job exec failed, before files, no retry",
    -2: "JOB_EXEC_FAIL2: job exec failed, after files, no retry",
    -3: "JOB_EXEC_RETRY: job execution failed, do retry",
    -4: "JOB_EXEC_INITABT: job aborted on MOM initialization",
    -5: "JOB_EXEC_INITRST: job aborted on MOM init, checkpoint, no migrate",
    -6: "JOB_EXEC_INITRMG: job aborted on MOM init, checkpoint, ok migrate",
    -7: "JOB_EXEC_BADRESRT: job restart failed",
    -8: "JOB_EXEC_CMDFAIL: exec() of user command failed",
    -9: "JOB_EXEC_STDOUTFAIL: could not create/open stdout stderr files",
    -10: "JOB_EXEC_OVERLIMIT_MEM: job exceeded a memory limit",
    -11: "JOB_EXEC_OVERLIMIT_WT: job exceeded a walltime limit",
    -12: "JOB_EXEC_OVERLIMIT_CPUT: job exceeded a CPU time limit",
    -13: "JOB_EXEC_RETRY_CGROUP: could not create the job's cgroups",
    -14: "JOB_EXEC_RETRY_PROLOGUE: prologue failed",
}
TORQUE_WALLTIME_CODE = -11


#: Why a job with a negative PBS Pro ``Exit_status`` ended (codes as in :data:`PBSPRO_EXEC_CODES`).
PBSPRO_EXEC_CAUSES: dict[int, EndCause] = {
    -1: EndCause.LAUNCH_FAILED,
    -2: EndCause.LAUNCH_FAILED,
    -3: EndCause.LAUNCH_FAILED,
    # MoM restarted or its node went down under the job
    -4: EndCause.NODE_FAILURE,
    -5: EndCause.NODE_FAILURE,
    -6: EndCause.NODE_FAILURE,
    -7: EndCause.LAUNCH_FAILED,
    -10: EndCause.LAUNCH_FAILED,
    # qrerun or a busy cycle-harvesting host asked for a requeue; a final record means the job
    # was not rerunnable and the server deleted it instead. Not a node failure.
    -11: EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    -12: EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    -13: EndCause.LAUNCH_FAILED,
    # a sister node's MoM went away under the job
    -14: EndCause.NODE_FAILURE,
    # the site's epilogue asked for a requeue to restart from a checkpoint; no preemption
    # method of PBS sets it (they suspend, hold with -12, requeue with -11 or delete)
    -15: EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    -16: EndCause.LAUNCH_FAILED,
    -17: EndCause.LAUNCH_FAILED,
    -18: EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    -19: EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    # the server lost the mother superior's node
    -20: EndCause.NODE_FAILURE,
    -21: EndCause.LAUNCH_FAILED,
    -22: EndCause.LAUNCH_FAILED,
    -23: EndCause.LAUNCH_FAILED,
    # killed by MoM for using more CPUs than requested: a limit of the site's, not a signal
    -24: EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    -25: EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM,
    -26: EndCause.OUT_OF_MEMORY,
    -27: EndCause.OUT_OF_MEMORY,
    -28: EndCause.TIME_LIMIT,
    -29: EndCause.TIME_LIMIT,
    -30: EndCause.LAUNCH_FAILED,
}

#: Why a job with a negative Torque ``exit_status`` ended (codes as in :data:`TORQUE_EXEC_CODES`).
TORQUE_EXEC_CAUSES: dict[int, EndCause] = {
    -1: EndCause.LAUNCH_FAILED,
    -2: EndCause.LAUNCH_FAILED,
    -3: EndCause.LAUNCH_FAILED,
    -4: EndCause.NODE_FAILURE,
    -5: EndCause.NODE_FAILURE,
    -6: EndCause.NODE_FAILURE,
    -7: EndCause.LAUNCH_FAILED,
    -8: EndCause.LAUNCH_FAILED,
    -9: EndCause.LAUNCH_FAILED,
    -10: EndCause.OUT_OF_MEMORY,
    -11: EndCause.TIME_LIMIT,
    -12: EndCause.TIME_LIMIT,
    -13: EndCause.LAUNCH_FAILED,
    -14: EndCause.LAUNCH_FAILED,
}


def end_cause(job: FinishedJob, state: JobState, exit_signal: int | None, *, flavor: str = "pbspro") -> EndCause:
    """Why a finished PBS job ended, from its classification (:func:`classify_pbspro_finished`,
    :func:`classify_torque_completed`) and ``Exit_status`` conventions.

    >>> end_cause(FinishedJob(exit_status=-27), JobState.FAILED, None)
    <EndCause.OUT_OF_MEMORY: 'out_of_memory'>
    >>> end_cause(FinishedJob(exit_status=265), JobState.FAILED, 9)
    <EndCause.SIGNAL: 'signal'>
    >>> end_cause(FinishedJob(exit_status=271, substate=91, owner="alice@login1",
    ...     comment="Job run at Tue Nov 21 at 05:30 on (n1:ncpus=1) and terminated by root@pbs01"),
    ...     JobState.CANCELLED, 15)
    <EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM: 'cancelled_by_admin_or_system'>
    """
    es = job.exit_status
    codes = TORQUE_EXEC_CAUSES if flavor == "torque" else PBSPRO_EXEC_CAUSES
    if state == JobState.TIMED_OUT:
        return EndCause.TIME_LIMIT
    if _dependency_deleted(job):
        return EndCause.DEPENDENCY_NEVER_SATISFIED
    if state == JobState.SUCCEEDED:
        return EndCause.COMPLETED
    if state == JobState.CANCELLED:
        return _deleted_by(job)
    if es is not None and es < 0:
        return codes.get(es, EndCause.UNKNOWN)
    if exit_signal:
        return EndCause.SIGNAL  # 256 + N (the top shell killed) or 128 + N (a child of it)
    if es:
        return EndCause.EXIT_CODE
    return EndCause.UNKNOWN


def is_finished_state(raw: str, flavor: str = "pbspro") -> bool:
    """Whether ``raw`` is a finished state of ``flavor`` (``F``/``X`` or Torque's ``C``)."""
    return raw.strip().upper() in _FINISHED[flavor]


def map_state(raw: str, *, flavor: str = "pbspro", started: bool = False) -> JobState:
    """The molq state of a native ``job_state`` letter, without exit details.

    Unknown letters are non-terminal: RUNNING when the job has started, else QUEUED.

    >>> map_state("H")
    <JobState.QUEUED: 'queued'>
    >>> map_state("Z", started=True)
    <JobState.RUNNING: 'running'>
    """
    table = TORQUE_STATES if flavor == "torque" else PBSPRO_STATES
    entry = table.get(raw.strip().upper())
    if entry is None:
        return JobState.RUNNING if started else JobState.QUEUED
    return entry[0]


@attrs.frozen
class FinishedJob:
    """What qstat says about a job that has finished, as input to the classifiers."""

    exit_status: int | None = None
    substate: int | None = None
    comment: str | None = None
    walltime_used: int | None = None
    walltime_limit: int | None = None
    is_array: bool = False
    owner: str | None = None  # Job_Owner, user@host


#: What PBS Pro appends to a running job's comment when a delete request ends it (OpenPBS
#: ``update_job_finish_comment``): "... and terminated by <user>@<host>".
_TERMINATED_BY = re.compile(r"\band terminated by (\S+)\s*$")


def _deleted_by(job: FinishedJob) -> EndCause:
    """Who deleted a cancelled job, as far as its comment tells: its owner (the user), someone
    else (a manager, or the scheduler preempting by deletion: admin or system), or nobody named
    (a queued job, Torque, an older record): unknown."""
    match = _TERMINATED_BY.search(job.comment or "")
    owner = (job.owner or "").split("@", 1)[0].strip()
    if match is None or not owner:
        return EndCause.UNKNOWN
    if match.group(1).split("@", 1)[0] == owner:
        return EndCause.CANCELLED_BY_USER
    return EndCause.CANCELLED_BY_ADMIN_OR_SYSTEM


def _signal_reason(sig: int) -> str:
    try:
        name = _signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    return f"killed by signal {sig} ({name})"


def _mentions_walltime(comment: str | None) -> bool:
    text = (comment or "").lower()
    return "walltime" in text and ("exceed" in text or "killed" in text)


def _dependency_deleted(job: FinishedJob) -> bool:
    """The server deleted the job because its dependency can never be satisfied ("Job deleted as
    result of dependency on job 12.srv"). molq calls that FAILED, as on every scheduler."""
    return "dependency" in (job.comment or "").lower() and (
        job.exit_status is None or job.substate == SUBSTATE_TERMINATED or job.exit_status == 271
    )


def _hit_walltime(job: FinishedJob) -> bool:
    return (
        job.walltime_limit is not None
        and job.walltime_used is not None
        and job.walltime_used >= job.walltime_limit
    )


def _from_exit(
    job: FinishedJob, exec_codes: dict[int, str], walltime_code: int
) -> tuple[JobState, int | None, int | None, str | None]:
    """(state, exit code, signal, reason) shared by both flavours."""
    es = job.exit_status
    if es == walltime_code or (es is not None and es < 0 and _mentions_walltime(job.comment)):
        return JobState.TIMED_OUT, None, None, exec_codes.get(walltime_code)
    if es is not None and es >= 256:
        sig = es - 256
        # A signal kill at or past the walltime limit is PBS enforcing the limit (older PBS Pro
        # and Torque report walltime kills as 256 + SIGTERM/SIGKILL).
        if _hit_walltime(job) or _mentions_walltime(job.comment):
            return JobState.TIMED_OUT, None, sig, f"walltime exceeded; {_signal_reason(sig)}"
        return JobState.FAILED, None, sig, _signal_reason(sig)
    if es is not None and es < 0:
        text = exec_codes.get(es, f"PBS exit code {es}")
        return JobState.FAILED, None, None, text
    if es == 0:
        return JobState.SUCCEEDED, 0, None, None
    if es is not None:
        if 128 < es <= 128 + 64:
            return JobState.FAILED, es, es - 128, _signal_reason(es - 128)
        return JobState.FAILED, es, None, f"exited with code {es}"
    return JobState.FAILED, None, None, None


def classify_pbspro_finished(job: FinishedJob) -> tuple[JobState, int | None, int | None, str | None]:
    """(state, exit code, exit signal, reason) of a PBS Pro job in state ``F`` or ``X``.

    Order of evidence: a walltime kill (``Exit_status`` -29, or a signal kill at the walltime
    limit), a deletion by the server because a dependency can never be satisfied (FAILED), a
    deletion (sub-state 91, TERMINATED: CANCELLED), then the exit status itself. An array parent
    reports 0 (all subjobs exited 0), 1 (some subjob failed) or 2 (some subjob was deleted).

    >>> classify_pbspro_finished(FinishedJob(exit_status=-29))[0]
    <JobState.TIMED_OUT: 'timed_out'>
    >>> classify_pbspro_finished(FinishedJob(exit_status=271, substate=91))[0]
    <JobState.CANCELLED: 'cancelled'>
    >>> classify_pbspro_finished(FinishedJob(exit_status=7, substate=93))[:2]
    (<JobState.FAILED: 'failed'>, 7)
    """
    es = job.exit_status
    if job.is_array and es is not None and 0 <= es < 256:
        if job.substate == SUBSTATE_TERMINATED:
            return JobState.CANCELLED, None, None, "array job deleted"
        if es == 0:
            return JobState.SUCCEEDED, 0, None, None
        if es == 2:
            return JobState.FAILED, None, None, "some subjobs were deleted or did not run"
        return JobState.FAILED, None, None, "some subjobs exited with a non-zero status"
    state, code, sig, reason = _from_exit(job, PBSPRO_EXEC_CODES, PBSPRO_WALLTIME_CODE)
    if state is JobState.TIMED_OUT:
        return state, code, sig, reason
    if _dependency_deleted(job):
        return JobState.FAILED, None, None, f"dependency never satisfied: {job.comment}"
    if job.substate == SUBSTATE_TERMINATED:
        why = job.comment or "deleted"
        return JobState.CANCELLED, code, sig, why
    if es is None:
        # Finished without an exit status: the job was deleted before it ran.
        return JobState.CANCELLED, None, None, job.comment or "finished without running"
    return state, code, sig, reason


def classify_torque_completed(job: FinishedJob) -> tuple[JobState, int | None, int | None, str | None] | None:
    """(state, exit code, exit signal, reason) of a Torque job in state ``C``.

    None when qstat gives no ``exit_status`` (some Torque front-ends never do): the wrapper's
    exit-code file must then decide.

    >>> classify_torque_completed(FinishedJob(exit_status=-11))[0]
    <JobState.TIMED_OUT: 'timed_out'>
    >>> classify_torque_completed(FinishedJob()) is None
    True
    """
    if job.exit_status is None:
        return None
    if _dependency_deleted(job):  # Torque records such jobs with exit_status 271
        return JobState.FAILED, None, None, f"dependency never satisfied: {job.comment}"
    return _from_exit(job, TORQUE_EXEC_CODES, TORQUE_WALLTIME_CODE)


#: The PBS scheduler's comments on a queued job that mean "no room for it now" (PBS Pro
#: writes "Not Running: <why>"): the cluster lacks what the job asks for.
_RESOURCE_COMMENT = re.compile(
    r"Insufficient amount of resource|Not enough free nodes|ineligible state|No available resources"
    r"|Not enough of the right type of nodes",
    re.IGNORECASE,
)


def sub_state_of(record: Mapping[str, str]) -> tuple[SubState | None, str | None]:
    """(sub-state, PBS's reason) of a live job from its ``qstat -f`` attributes.

    ``H`` is held, or waiting for a dependency when PBS holds it itself (system hold ``s``)
    for a ``depend`` attribute; ``S`` and ``U`` (PBS Pro: suspended while the workstation is
    busy) are suspended; ``Q`` is requeued when it ran before (``run_count``) and waiting for
    resources when the scheduler's comment says so. ``W`` (waiting for its start time) and
    the rest have none.

    >>> sub_state_of({"job_state": "H", "Hold_Types": "u"})
    (<SubState.HELD: 'held'>, 'hold types u')
    >>> sub_state_of({"job_state": "H", "Hold_Types": "s", "depend": "afterok:12.srv"})[0]
    <SubState.WAITING_DEPENDENCY: 'waiting_dependency'>
    """
    raw = (record.get("job_state") or "").strip().upper()
    comment = (record.get("comment") or "").strip() or None
    if raw in ("S", "U"):
        return SubState.SUSPENDED, comment
    if raw == "H":
        holds = (record.get("Hold_Types") or "").strip()
        depend = (record.get("depend") or "").strip()
        if depend and set(holds) <= {"s"} and holds:
            return SubState.WAITING_DEPENDENCY, comment or depend
        return SubState.HELD, comment or (f"hold types {holds}" if holds else None)
    if raw == "Q":
        runs = (record.get("run_count") or "").strip()
        if runs.isdigit() and int(runs) > 0:
            return SubState.REQUEUED, comment
        if comment and _RESOURCE_COMMENT.search(comment):
            return SubState.WAITING_RESOURCES, comment
    return None, None
