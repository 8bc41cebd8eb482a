"""Cancelling jobs: a cancel is recorded only when the scheduler confirms the stop.

1. A job whose submission is still in flight is waited for (its submitter is alive) or
   recovered first (its submitter died), so the record always carries the scheduler id of
   anything the scheduler accepted, and that job is cancelled too.
2. The jobs are looked at first: one that ended meanwhile keeps its real end.
3. One cancel command for all. A refusal raises and records nothing. "Already ended" leaves the
   job to the evidence. Otherwise the record notes when the stop was requested.
4. The jobs are looked at again until each has a final answer or the confirmation time is up;
   :func:`~molq.engine.decide.decide` records CANCELLED for a job the scheduler reports
   cancelled, killed by a signal after the request, or gone from every source. A job still
   stopping stays as it is, and the next refresh decides.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence

from molq.causes import EndCause
from molq.engine.adopt import adopt_orphans, submitter_at_work
from molq.engine.context import EngineContext, PendingEvent
from molq.engine.decide import JobView
from molq.engine.faults import crash_point
from molq.engine.refresh import RefreshPass
from molq.engine.retry import retry_pending, schedule_retry
from molq.errors import MolqError, SchedulerError
from molq.evidence import CancelOutcome
from molq.identity import host_identity as host_name
from molq.model import JobRecord, JobState
from molq.store.types import RELEASING

log = logging.getLogger("molq.engine")

__all__ = ["cancel_jobs", "CONFIRM_SECONDS", "IN_FLIGHT_WAIT_SECONDS"]

#: How long a cancel waits for the scheduler to confirm the stop before leaving it to refresh.
CONFIRM_SECONDS = 5.0
#: How long a cancel waits for a submission in flight in another live process.
IN_FLIGHT_WAIT_SECONDS = 20.0


def _reconcile(ctx: EngineContext, records: Sequence[JobRecord]) -> None:
    """One targeted refresh of ``records`` (those with a scheduler id)."""
    wanted = {r.job_id for r in records if r.scheduler_job_id}
    if not wanted:
        return
    views: dict[str, JobView] = {}
    current: list[JobRecord] = []
    for row in ctx.store.active_jobs(ctx.cluster_name):
        record = row.record
        if record.job_id in wanted and record.scheduler_job_id:
            views[record.job_id] = JobView.of(record, missing_count=row.missing_count,
                                              missing_since=row.missing_since,
                                              cancel_requested_at=row.cancel_requested_at)
            current.append(record)
    if not current:
        return
    refresh = RefreshPass(ctx)
    try:
        refresh.reconcile(current, views)
    finally:
        ctx.emit_pending(refresh.pending)
    for job_id in refresh.ended:
        schedule_retry(ctx, job_id)


def _settle_in_flight(ctx: EngineContext, records: list[JobRecord]) -> tuple[list[JobRecord], list[JobRecord]]:
    """Wait for submissions in flight in live processes; recover those whose submitter died.
    Returns (records now settled, records still without a scheduler id)."""
    deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
    adopted = False
    while True:
        fresh = ctx.store.get_jobs(ctx.cluster_name, [r.job_id for r in records])
        records = [fresh.get(r.job_id, r) for r in records]
        flying = [r for r in records if r.state == JobState.CREATED and r.scheduler_job_id is None]
        if not flying:
            return records, []
        live = [r for r in flying if submitter_at_work(ctx, r, time.time())]
        orphaned = [r for r in flying if r not in live]
        if orphaned and not adopted:
            pending: list[PendingEvent] = []
            adopt_orphans(ctx, orphaned, pending)
            ctx.emit_pending(pending)
            adopted = True
            continue
        if not live or time.monotonic() >= deadline:
            return [r for r in records if r not in flying], flying
        time.sleep(0.05)


def cancel_jobs(ctx: EngineContext, job_ids: Iterable[str], *, confirm_seconds: float | None = None) -> None:
    """Cancel the latest attempt of each job (and any retry it was waiting for)."""
    records = ctx.get_many(list(job_ids))
    by_root = ctx.store.latest_attempts(ctx.cluster_name, [r.root_job_id for r in records])
    latest = list({r.root_job_id: by_root.get(r.root_job_id, r) for r in records}.values())
    for rec in latest:
        if retry_pending(rec):
            ctx.store.claim_retry(ctx.cluster_name, rec.job_id, "cancelled")
    active = [r for r in latest if not r.is_terminal]
    if ctx.scheduler.host_bound:
        here = host_name()
        elsewhere = [(r.job_id, h) for r in active
                     if (h := ctx.store.internals(ctx.cluster_name, r.job_id).submit_host) not in (None, here)]
        if elsewhere:
            where = ", ".join(f"{j} (on {h})" for j, h in elsewhere)
            raise MolqError(f"cannot cancel {where} from {here}: local jobs can only be stopped on the host "
                            f"that runs them (run the cancel there)")
    for rec in [r for r in active if r.scheduler_job_id is None]:
        held = ctx.store.internals(ctx.cluster_name, rec.job_id).held
        if held is not None and not held.startswith(RELEASING) and ctx.store.claim_held(
                ctx.cluster_name, rec.job_id, host=host_name(), pid=os.getpid()):
            # molq held it back itself: it never reached the scheduler, nothing to stop there.
            # Taking the hold first means no other process can release it meanwhile.
            ctx.transition(rec, JobState.CANCELLED, reason="cancelled by user (before it was submitted)",
                           failure_reason="cancelled by user", finished_at=time.time(),
                           end_cause=EndCause.CANCELLED_BY_USER.value, sub_state=None, sub_state_reason=None)
            active.remove(rec)
    unresolved: list[JobRecord] = []
    if any(r.scheduler_job_id is None for r in active):
        active, unresolved = _settle_in_flight(ctx, active)
    # Look first: a job that finished meanwhile keeps its real end.
    _reconcile(ctx, [r for r in active if r.scheduler_job_id])
    now_records = ctx.store.get_jobs(ctx.cluster_name, [r.job_id for r in active])
    still = [now_records.get(r.job_id, r) for r in active]
    still = [r for r in still if not r.is_terminal]
    to_cancel = [r for r in still if r.scheduler_job_id is not None]
    if to_cancel:
        requested_at = time.time()
        # A refusal or a failed command raises here: nothing was stopped, nothing is recorded.
        outcomes = ctx.scheduler.cancel_many([ctx.tracked(r) for r in to_cancel]) or {}
        crash_point("cancel:after-command")
        with ctx.store.batch():
            for rec in to_cancel:
                if outcomes.get(rec.job_id, CancelOutcome.REQUESTED) == CancelOutcome.REQUESTED:
                    ctx.store.update_job(ctx.cluster_name, rec.job_id, cancel_requested_at=requested_at)
        _confirm(ctx, to_cancel, CONFIRM_SECONDS if confirm_seconds is None else confirm_seconds)
        refused = [r.job_id for r in to_cancel if outcomes.get(r.job_id) == CancelOutcome.REFUSED]
        if refused:
            raise SchedulerError(f"the scheduler refused to cancel job(s) {', '.join(refused)}; "
                                 f"they keep running")
    if unresolved:
        ids = ", ".join(r.job_id for r in unresolved)
        raise MolqError(
            f"job(s) {ids} are still being submitted (or were interrupted before the scheduler "
            f"id was known); cancel again once `molq show` gives their scheduler id"
        )


def _confirm(ctx: EngineContext, records: Sequence[JobRecord], seconds: float) -> None:
    """Look again until every job has a final state or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    # Quick first looks (a local stop is confirmed in milliseconds), then fewer: a batch
    # scheduler is asked about six times at most.
    interval = 0.02 if ctx.scheduler.cheap_status else 0.1
    ids = [r.job_id for r in records]
    while True:
        current = ctx.store.get_jobs(ctx.cluster_name, ids)
        open_ = [current[j] for j in ids if j in current and not current[j].is_terminal]
        if not open_:
            return
        _reconcile(ctx, open_)
        current = ctx.store.get_jobs(ctx.cluster_name, ids)
        if all(current[j].is_terminal for j in ids if j in current):
            return
        if time.monotonic() >= deadline:
            waiting = [j for j in ids if j in current and not current[j].is_terminal]
            log.info("%s: the stop of %d job(s) is not confirmed yet; the next refresh records it",
                     ctx.cluster_name, len(waiting))
            return
        ctx.scheduler.wait_for_change(min(interval, max(deadline - time.monotonic(), 0.0)))
        interval = min(interval * 2, 2.0)
