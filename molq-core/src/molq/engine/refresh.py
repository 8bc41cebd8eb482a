"""One refresh of a cluster: read once, ask the scheduler once, decide purely, write once.

A :class:`RefreshPass` is created per call and holds that call's scratch state, so refreshes
are reentrant and several may run at once (threads, processes, hosts): every write is a
compare-and-set on the state the pass read, and a lost race simply changes nothing.

Steps:

1. read the cluster's active records (one query), plus LOST records that later evidence may
   correct (at most every :data:`LOST_RECHECK_SECONDS`);
2. recover interrupted submissions (:mod:`molq.engine.adopt`);
3. one :meth:`~molq.scheduler.Scheduler.observe` for all tracked jobs, unless the cluster's
   shared poll record says the store already holds a recent enough answer, the command budget
   is spent or the circuit breaker pauses polling (:mod:`molq.engine.shared_poll`);
4. :func:`~molq.engine.decide.decide` for each job; jobs whose dependency can never be satisfied
   are cancelled at the scheduler first;
5. write every decision in one store transaction, then emit events;
6. schedule retries of jobs that ended, and submit the retries that are due.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import attrs

from molq.engine import decide as rules
from molq.engine.adopt import adopt_orphans
from molq.engine.context import EngineContext, PendingEvent
from molq.engine.faults import crash_point
from molq.engine.hold import release_held
from molq.engine.retry import run_due_retries, schedule_retry
from molq.engine.shared_poll import open_gate
from molq.errors import SchedulerError, TransportError
from molq.events import EventType
from molq.evidence import Observation
from molq.identity import host_identity as host_name
from molq.model import JobRecord, JobState
from molq.store.types import RELEASING

log = logging.getLogger("molq.engine")

__all__ = ["RefreshPass", "RefreshResult", "refresh", "LOST_RECHECK_SECONDS", "LOST_RECHECK_WINDOW"]

#: LOST records are looked at again this often...
LOST_RECHECK_SECONDS = 300.0
#: ...for this long after they were declared lost.
LOST_RECHECK_WINDOW = 7 * 86400.0


@attrs.frozen
class RefreshResult:
    """What one refresh did."""

    looked_at: int = 0
    changed: int = 0
    retries_started: int = 0
    problems: tuple[str, ...] = ()


class RefreshPass:
    """One refresh of ``ctx``'s cluster (see the module docstring)."""

    def __init__(self, ctx: EngineContext, *, now: float | None = None, waiting: bool = False) -> None:
        self.ctx = ctx
        self.waiting = waiting
        self.now = time.time() if now is None else now
        self.pending: list[PendingEvent] = []
        self.ended: list[str] = []
        self.has_retry: dict[str, bool] = {}
        self.problems: list[str] = []
        self.observation: Observation | None = None

    def run(self) -> RefreshResult:
        ctx = self.ctx
        rows = ctx.store.active_jobs(ctx.cluster_name)
        views: dict[str, rules.JobView] = {}
        records: dict[str, JobRecord] = {}
        created: list[JobRecord] = []
        held: list[JobRecord] = []
        here = host_name()
        for row in rows:
            record = row.record
            if ctx.scheduler.host_bound and row.submit_host not in (None, here):
                continue  # another host's local job: only that host can see it
            self.has_retry[record.job_id] = row.has_retry
            if record.scheduler_job_id is None:
                if row.held is not None and not row.held.startswith(RELEASING):
                    held.append(record)
                elif record.state == JobState.CREATED:
                    created.append(record)
                continue
            records[record.job_id] = record
            views[record.job_id] = rules.JobView.of(record, missing_count=row.missing_count,
                                                    missing_since=row.missing_since,
                                                    cancel_requested_at=row.cancel_requested_at)
        lost_checked_at = ctx.lost_checked_at
        for record in self._lost_to_recheck():
            records[record.job_id] = record
            views[record.job_id] = rules.JobView.of(record)
        changed = 0
        try:
            if created:
                self.ended.extend(adopt_orphans(ctx, created, self.pending))
            gate = open_gate(ctx, list(records.values()), waiting=self.waiting)
            self.problems.extend(gate.problems)
            if gate.polls:
                written = False
                try:
                    changed = self.reconcile(list(records.values()), views)
                    written = True
                finally:
                    # A refresh that broke off recorded nothing the others could use.
                    gate.close(self.observation if written else None, changed)
            else:
                ctx.lost_checked_at = lost_checked_at  # re-examined by the next real poll
        finally:
            ctx.emit_pending(self.pending)
        # Retries first: a held dependent must see its upstream's next attempt scheduled.
        for job_id in self.ended:
            if self.has_retry.get(job_id, True):
                schedule_retry(ctx, job_id)
        retried = run_due_retries(ctx)
        if held:
            changed += release_held(ctx, held)
        if self.ended and ctx.wants_events():
            if not ctx.store.list_jobs(ctx.cluster_name, limit=1) and not ctx.store.list_pending_retries(ctx.cluster_name):
                ctx.emit(EventType.ALL_COMPLETED, None)
        return RefreshResult(len(records) + len(created), changed, len(retried), tuple(self.problems))

    def _lost_to_recheck(self) -> list[JobRecord]:
        ctx = self.ctx
        mono = time.monotonic()
        if ctx.lost_checked_at is not None and mono - ctx.lost_checked_at < LOST_RECHECK_SECONDS:
            return []
        ctx.lost_checked_at = mono
        lost = ctx.store.list_jobs(ctx.cluster_name, states=[JobState.LOST])
        cutoff = self.now - LOST_RECHECK_WINDOW
        lost = [r for r in lost if r.scheduler_job_id and (r.finished_at or self.now) >= cutoff]
        if ctx.scheduler.host_bound:
            here = host_name()
            lost = [r for r in lost if ctx.store.internals(ctx.cluster_name, r.job_id).submit_host in (None, here)]
        return lost

    def reconcile(self, records: Sequence[JobRecord], views: dict[str, rules.JobView]) -> int:
        """Observe ``records`` once and record what the evidence decides; how many changed."""
        ctx = self.ctx
        jobs = [ctx.tracked(r) for r in records]
        since = min((j.submitted_at for j in jobs if j.submitted_at), default=None)
        observation = ctx.scheduler.observe(jobs, since=(since - 60) if since else None)
        self.observation = observation
        crash_point("refresh:after-observe")
        for problem in observation.problems:
            log.warning("%s: %s; jobs without an answer keep their state", ctx.cluster_name, problem)
        self.problems.extend(observation.problems)
        decisions = []
        for record in records:
            evidence: rules.Evidence = observation.statuses.get(record.job_id)
            if evidence is None and record.job_id in observation.absent:
                evidence = rules.ABSENT
            elif evidence is None and record.job_id in observation.ended:
                evidence = rules.ENDED
            decision = rules.decide(views[record.job_id], evidence, self.now)
            if decision is not None:
                decisions.append(decision)
        decisions = self._cancel_unsatisfiable(decisions, {r.job_id: r for r in records})
        by_id = {r.job_id: r for r in records}
        changed = 0
        if decisions:  # a refresh in which nothing changed writes nothing (nor takes the write lock)
            with ctx.store.batch():  # one commit for the whole refresh
                for decision in decisions:
                    if self.apply(by_id[decision.job_id], decision):
                        changed += 1
        crash_point("refresh:after-write")
        return changed

    def _cancel_unsatisfiable(self, decisions: list[rules.Decision], by_id: dict[str, JobRecord]) -> list[rules.Decision]:
        doomed = [d for d in decisions if d.cancel_first]
        if not doomed:
            return decisions
        try:
            self.ctx.scheduler.cancel_many([self.ctx.tracked(by_id[d.job_id]) for d in doomed])
        except (SchedulerError, TransportError) as exc:
            log.warning("could not cancel jobs with an unsatisfiable dependency: %s", exc)
            return [d for d in decisions if not d.cancel_first]
        return decisions

    def apply(self, record: JobRecord, decision: rules.Decision) -> bool:
        ctx = self.ctx
        if decision.new_state is None:
            return ctx.store.update_job(ctx.cluster_name, record.job_id, expect_state=record.state, **decision.fields)
        if decision.new_state == record.state:
            return False
        tr = ctx.transition(record, decision.new_state, reason=decision.reason, pending=self.pending,
                            **decision.fields)
        if tr is not None and decision.new_state.is_terminal:
            self.ended.append(record.job_id)
        return tr is not None


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for one pass. A refresh of thousands of jobs
    allocates tens of thousands of short-lived objects without cycles (rows, records, statuses,
    decisions), and the collections they set off cost about a third of its CPU at 10,000 jobs;
    reference counting frees them all the same. The collector resumes if it was running."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def refresh(ctx: EngineContext, *, waiting: bool = False) -> RefreshResult:
    """Reconcile every active job of ``ctx``'s cluster and start the retries that are due.
    ``waiting``: called by a loop (``watch``, the daemon), which polls at the cluster's
    adaptive interval shared with every process on the store (:mod:`molq.engine.shared_poll`)."""
    with collector_paused():
        return RefreshPass(ctx, waiting=waiting).run()
