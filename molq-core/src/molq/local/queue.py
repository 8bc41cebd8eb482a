"""Decisions about the local queue that need no I/O: a job's status from the facts the spool
and its job directory hold, the names of queue entries, and the rows ``molq queue`` shows.

Which queued job starts (free cores, FIFO, dependency verdicts) is decided by the spool's
``advance`` pass (``sh/lib.sh``: ``molq_advance``, ``molq_verdict``), the one place that
decision is made: it must run on a host without Python, from a job's wrapper, with no molq
process alive.
"""

from __future__ import annotations

import re

import attrs

from molq import wrapper
from molq.causes import EndCause, cause_from_exit
from molq.model import JobState, QueueEntry, SchedulerStatus, SubState
from molq.usage import Usage

__all__ = ["JobFacts", "status_from", "entry_name", "entry_sid", "queue_line", "parse_queue",
           "SID_RE", "CANCELLED_FILE", "NEVER_RAN_FILE"]

CANCELLED_FILE = "cancelled"
NEVER_RAN_FILE = wrapper.NEVER_RAN_FILE
SID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@attrs.frozen
class JobFacts:
    """What the spool and a job's directory say about one job, liveness read before files."""

    queued: bool = False  # a queued/ entry
    claimed: bool = False  # taken from the queue, being started
    running: bool = False  # a running/ entry whose process (pid + start time) lives
    alive: bool = False  # the process the wrapper recorded in `started` lives
    exit_code: str | None = None  # the exit_code file's text
    never_ran: str | None = None
    cancelled: bool = False
    exit_unknown: bool = False  # the wrapper could not write its exit code
    started_at: float | None = None
    finished_at: float | None = None
    usage: str | None = None  # the CPU-time line of the wrapper's `times`
    oom_killed: bool = False  # the wrapper's out-of-memory evidence (see molq.wrapper)
    cpus: int | None = None  # cores the job was given
    peak: str | None = None  # peak memory in bytes, from the job's private memory cgroup
    memory: int | None = None  # the memory limit the job was given, in bytes


#: SIGKILL: what the kernel's OOM killer sends.
_SIGKILL = 9


def _usage(f: JobFacts) -> Usage | None:
    elapsed = None
    if f.started_at is not None and f.finished_at is not None:
        elapsed = max(f.finished_at - f.started_at, 0.0)
    peak = int(f.peak) if f.peak and f.peak.strip().isdigit() else None
    usage = Usage(elapsed_seconds=elapsed, cpu_seconds=wrapper.parse_times_line(f.usage), cpus=f.cpus,
                  max_rss_bytes=peak, requested_memory_bytes=f.memory)
    return None if usage.cpu_seconds is None and peak is None else usage


def status_from(f: JobFacts) -> SchedulerStatus | None:
    """A job's status; None when there is no evidence either way (the engine decides)."""
    if f.queued and not f.running:
        return SchedulerStatus(JobState.QUEUED, "queued")
    code = wrapper.parse_exit_code(f.exit_code)
    if code is not None:
        sig, reason = wrapper.describe_exit(code)
        # Only a signal death can be a cancel: the marker counts just then.
        if sig is not None and f.cancelled:
            return SchedulerStatus(JobState.CANCELLED, "cancelled", code, sig, "cancelled",
                                   started_at=f.started_at, finished_at=f.finished_at,
                                   end_cause=EndCause.CANCELLED_BY_USER, usage=_usage(f))
        cause = cause_from_exit(JobState.SUCCEEDED if code == 0 else JobState.FAILED, code, sig)
        if code != 0 and f.oom_killed:
            cause = EndCause.OUT_OF_MEMORY
            reason = ("killed by the kernel's out-of-memory killer (SIGKILL)" if sig == _SIGKILL
                      else f"ran out of memory under its limit ({reason})")
        return SchedulerStatus(JobState.SUCCEEDED if code == 0 else JobState.FAILED, "exited", code, sig,
                               reason, started_at=f.started_at, finished_at=f.finished_at,
                               end_cause=cause, usage=_usage(f))
    if f.never_ran is not None:
        return SchedulerStatus(JobState.FAILED, "never_ran", None, None, f.never_ran.strip(),
                               end_cause=EndCause.LAUNCH_FAILED)
    if f.running or f.alive:
        return SchedulerStatus(JobState.RUNNING, "running", started_at=f.started_at)
    if f.claimed:
        return SchedulerStatus(JobState.QUEUED, "starting")
    if f.cancelled:
        return SchedulerStatus(JobState.CANCELLED, "cancelled", None, None, "cancelled",
                               started_at=f.started_at, end_cause=EndCause.CANCELLED_BY_USER)
    if f.exit_unknown:
        return None  # it ended, but its exit code could not be written (a full disk)
    # Neither queued, running nor finished: the wrapper died without writing its exit code
    # (killed with SIGKILL, or the machine rebooted).
    return SchedulerStatus(
        JobState.FAILED, "vanished", None, None,
        "the job's process ended without recording an exit code (killed, or the host rebooted)",
        started_at=f.started_at,
    )


def entry_name(ns: int, sid: str, has_deps: bool) -> str:
    """``queued/`` entry name: FIFO by the time prefix; ``d`` marks a job with dependencies
    (the only kind a pass must look at while every core is busy)."""
    return f"{ns:020d}{'d' if has_deps else ''}-{sid}"


def entry_sid(entry: str) -> str:
    return entry.split("-", 1)[1] if "-" in entry else entry


def queue_line(cpus: int, deps: list[tuple[str, str]]) -> str:
    """The content of a ``queued/`` entry: cores, then ``condition:upstream`` words."""
    return " ".join([str(cpus), *(f"{c}:{u}" for c, u in deps)])


def parse_queue(text: str) -> list[QueueEntry]:
    """The output of the ``queue`` script as rows: running jobs first, then the queue in
    order, each with its cores (``cpus``) and, when queued, what it waits for (``waits_for``);
    ``raw_state`` says both in words."""
    running: list[QueueEntry] = []
    queued: list[QueueEntry] = []
    for line in text.split("\n"):
        tag, _, rest = line.partition(" ")
        parts = rest.split(" ", 3)
        if tag == "R" and len(parts) >= 3:
            running.append(QueueEntry(parts[0], state=JobState.RUNNING,
                                      raw_state=f"running ({_cores(parts[2])}, pid {parts[1]})",
                                      cpus=_int(parts[2])))
        elif tag == "C" and parts[0]:
            running.append(QueueEntry(parts[0], state=JobState.QUEUED, raw_state="starting"))
        elif tag == "Q" and len(parts) >= 3:
            entry, cpus, verdict = parts[0], parts[1], parts[2]
            why = parts[3] if len(parts) > 3 else ""
            waits_for = {"ok": "cores", "wait": why, "never": why or "can never start"}.get(verdict, verdict)
            waits = waits_for if verdict == "never" else f"waits for {waits_for}"
            # "ok": its dependencies (if any) hold, so only cores are missing.
            sub = {"ok": SubState.WAITING_RESOURCES, "wait": SubState.WAITING_DEPENDENCY}.get(verdict)
            ns = entry.split("-", 1)[0].rstrip("d")
            queued.append(QueueEntry(entry_sid(entry), state=JobState.QUEUED,
                                     raw_state=f"queued ({_cores(cpus)}): {waits}",
                                     submit_time=int(ns) / 1e9 if ns.isdigit() else None,
                                     cpus=_int(cpus), waits_for=waits_for,
                                     sub_state=sub, sub_state_reason=waits if sub else None))
    return running + queued


def _int(n: str) -> int | None:
    return int(n) if n.isdigit() else None


def _cores(n: str) -> str:
    return "1 core" if n == "1" else f"{n} cores"
