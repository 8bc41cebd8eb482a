"""Recovery of interrupted submissions: records left ``created`` by a process that died.

Such a job may never have reached the scheduler, or may have been accepted, run and even been
forgotten by the scheduler since. Nothing is decided from one source: the scheduler is asked for
jobs carrying the molq tag (queue and, where the dialect does, accounting), then the job
directory is read for what the job itself wrote (its scheduler id, its start, its exit code).
Only when every source answered and none knows the job is it recorded as never run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from molq import wrapper
from molq.causes import EndCause, cause_from_exit
from molq.engine.context import EngineContext, PendingEvent
from molq.engine.faults import crash_point
from molq.errors import SchedulerError, TransportError
from molq.identity import host_identity as host_name
from molq.identity import pid_alive
from molq.model import JobRecord, JobState
from molq.store.types import RELEASING

log = logging.getLogger("molq.engine")

__all__ = ["orphans", "adopt_orphans", "ORPHAN_AGE_SECONDS"]

#: A ``created`` record older than this, whose submitting process is gone, is an orphan.
ORPHAN_AGE_SECONDS = 30.0
#: A record whose submitter still runs is an orphan only after this long (a hung submitter).
HUNG_SUBMITTER_SECONDS = 3600.0
NEVER_RAN = "submission interrupted before the scheduler accepted the job; it never ran"


def submitter_at_work(ctx: EngineContext, record: JobRecord, now: float) -> bool:
    """Whether the process that created ``record`` may still be submitting it."""
    internal = ctx.store.internals(ctx.cluster_name, record.job_id)
    if internal.held is not None and not internal.held.startswith(RELEASING):
        return True  # molq holds it back on purpose: not an interrupted submission
    pid, shost = internal.submit_pid, internal.submit_host
    # Since it was stored, or taken for release from a hold.
    age = now - max(record.created_at or 0, record.updated_at or 0)
    if shost == host_name() and pid is not None:
        return (pid == os.getpid() or pid_alive(pid)) and age < HUNG_SUBMITTER_SECONDS
    return age < ORPHAN_AGE_SECONDS


def orphans(ctx: EngineContext, created: Sequence[JobRecord], now: float | None = None) -> list[JobRecord]:
    now = time.time() if now is None else now
    return [r for r in created if not submitter_at_work(ctx, r, now)]


def _job_dir_files(ctx: EngineContext, records: Sequence[JobRecord]) -> dict[str, dict[str, str | None]]:
    """What each orphan's job directory says: its scheduler id, start and exit files."""
    id_file = getattr(ctx.scheduler, "job_id_file", None)
    names = [wrapper.STARTED_FILE, wrapper.EXIT_CODE_FILE] + ([id_file] if id_file else [])
    paths = {r.job_id: {n: wrapper.join_path(r.job_dir, n) for n in names} for r in records if r.job_dir}
    contents = ctx.target.transport.read_many([p for per in paths.values() for p in per.values()])
    out: dict[str, dict[str, str | None]] = {}
    for job_id, per in paths.items():
        out[job_id] = {name: contents.get(path) for name, path in per.items()}
        if id_file:
            out[job_id]["scheduler_job_id"] = out[job_id].pop(id_file)
    return out


def in_flight(ctx: EngineContext, record: JobRecord, now: float) -> bool:
    """Whether a submit command of ``record`` may still reach the scheduler: its submitter got
    as far as the job directory (created just before the scheduler is called), within the time
    a submit command of this scheduler may take (``submit_in_flight_seconds``, none when the
    scheduler submits inside the submitter's own process)."""
    grace = ctx.scheduler.submit_in_flight_seconds
    age = now - max(record.created_at or 0, record.updated_at or 0)
    if age >= grace or not record.job_dir:
        return False
    try:
        return ctx.target.transport.exists(record.job_dir)
    except (TransportError, OSError):
        return True  # no answer is no evidence: decide on a later pass


def adopt_orphans(ctx: EngineContext, created: Sequence[JobRecord], pending: list[PendingEvent]) -> list[str]:
    """Adopt, finish or fail the orphans among ``created`` records, from every source; the ids
    of the jobs this ended (their retry policies apply)."""
    ended: list[str] = []
    found_orphans = orphans(ctx, created)
    if not found_orphans:
        return ended
    try:
        found = ctx.scheduler.find_adoptable([ctx.tracked(r) for r in found_orphans])
    except (SchedulerError, TransportError) as exc:
        log.warning("%s: could not look for interrupted submissions: %s", ctx.cluster_name, exc)
        return ended
    crash_point("adopt:after-find")
    rest = [r for r in found_orphans if r.job_id not in found]
    try:
        files = _job_dir_files(ctx, rest) if rest else {}
    except (TransportError, OSError) as exc:
        log.warning("%s: could not read the job directories of interrupted submissions: %s", ctx.cluster_name, exc)
        files, rest = {}, []
    now = time.time()
    for record in found_orphans:
        sid = found.get(record.job_id)
        seen = files.get(record.job_id, {})
        sid = sid or (seen.get("scheduler_job_id") or "").strip() or None
        if sid is not None:
            ctx.transition(record, JobState.SUBMITTED, reason=f"adopted {sid} after an interrupted submission",
                           pending=pending, scheduler_job_id=sid, submitted_at=record.created_at)
            continue
        if record not in rest:
            continue
        code = wrapper.parse_exit_code(seen.get(wrapper.EXIT_CODE_FILE))
        if code is not None:
            sig, text = wrapper.describe_exit(code)
            state = JobState.SUCCEEDED if code == 0 else JobState.FAILED
            reason = "adopted after an interrupted submission: the job ran and " + (
                "completed" if code == 0 else f"ended with {text or f'exit code {code}'}")
            if ctx.transition(record, state, reason=reason, pending=pending, exit_code=code, exit_signal=sig,
                              failure_reason=None if code == 0 else reason, finished_at=now,
                              raw_state="exit_code_file", end_cause=str(cause_from_exit(state, code, sig))):
                ended.append(record.job_id)
            continue
        if seen.get(wrapper.STARTED_FILE) is not None:
            # It started, and nobody knows its scheduler id: it may still run. Its exit file
            # will tell; until then no decision.
            log.warning("job %s started after an interrupted submission; waiting for its exit code",
                        record.job_id)
            continue
        if in_flight(ctx, record, now):
            continue
        held = ctx.store.internals(ctx.cluster_name, record.job_id).held
        if held is not None and held.startswith(RELEASING):
            # Its release from a hold was interrupted before the scheduler had it: hold it
            # again, the next refresh releases it.
            ctx.store.update_job(ctx.cluster_name, record.job_id, expect_state=JobState.CREATED,
                                 held="waiting for its dependencies (an interrupted release is retried)")
            continue
        if ctx.transition(record, JobState.FAILED, reason=NEVER_RAN, pending=pending,
                          failure_reason=NEVER_RAN, finished_at=now, end_cause=EndCause.LAUNCH_FAILED.value):
            ended.append(record.job_id)
    return ended
