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

A job can end while the queue still lists it, and the queue reports no usage: the scheduler
then reads it from the accounting call it makes anyway for the jobs that left the queue (one
call for all of them). When accounting lags and has no final record yet, the final state is
recorded from the queue, and the job is looked at again by the next
:data:`USAGE_TRIES` refreshes of this process that poll, until its usage arrives; then it
is given up (the record keeps no usage). Usage written later never changes the state.
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
from molq.model import JobRecord, JobState, SchedulerStatus
from molq.store.types import RELEASING

log = logging.getLogger("molq.engine")

__all__ = ["RefreshPass", "RefreshResult", "refresh", "LOST_RECHECK_SECONDS", "LOST_RECHECK_WINDOW", "USAGE_TRIES"]

#: LOST records are looked at again this often...
LOST_RECHECK_SECONDS = 300.0
#: ...for this long after they were declared lost.
LOST_RECHECK_WINDOW = 7 * 86400.0
#: Polling refreshes that ask accounting again for an ended job's usage before giving up
#: (accounting normally catches up within seconds; a job's record stays final meanwhile).
USAGE_TRIES = 10


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
        for record in self._lost_to_recheck() + self._awaiting_usage(records):
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

    def _awaiting_usage(self, active: dict[str, JobRecord]) -> list[JobRecord]:
        """Ended records still waiting for their usage (see the module docstring)."""
        waiting = self.ctx.awaiting_usage
        ids = [job_id for job_id in waiting if job_id not in active]
        if not ids:
            return []
        found = self.ctx.store.get_jobs(self.ctx.cluster_name, ids)
        out = []
        for job_id in ids:
            record = found.get(job_id)
            if record is None or not record.state.is_terminal or record.usage is not None or not record.scheduler_job_id:
                waiting.pop(job_id, None)  # deleted, resubmitted, or its usage came another way
                continue
            out.append(record)
        return out

    def _whole_array_usage(self, records: Sequence[JobRecord], observation: Observation) -> Observation:
        """An array's usage counts only when it covers every task: accounting can list some
        tasks of a finished array before the others, and their sum would understate the job.
        Partial usage is dropped from the answer and the job waits for the rest like any
        other ended job whose usage lags (the state is decided as before)."""
        from molq.arrays import task_count

        partial: dict[str, SchedulerStatus] = {}
        for record in records:
            status = observation.statuses.get(record.job_id)
            if status is None or status.usage is None or not status.state.is_terminal:
                continue
            try:
                spec = self.ctx.store.internals(self.ctx.cluster_name, record.job_id).spec
                array = (spec.get("scheduling") or {}).get("array_spec")
                tasks = task_count(str(array) if array else None)
            except Exception:  # noqa: BLE001 - an unreadable spec says nothing about the usage
                continue
            if status.usage.covered_tasks < tasks:
                partial[record.job_id] = attrs.evolve(status, usage=None)
        if not partial:
            return observation
        return attrs.evolve(observation, statuses={**observation.statuses, **partial},
                            usage_pending=observation.usage_pending | frozenset(partial))

    def _record_usage(self, records: Sequence[JobRecord], observation: Observation, ended: set[str]) -> None:
        """Usage that arrived for records already final, and which jobs still wait for theirs."""
        ctx = self.ctx
        waiting = ctx.awaiting_usage
        for record in records:
            if record.job_id not in waiting or not record.state.is_terminal:
                continue
            status = observation.statuses.get(record.job_id)
            if status is not None and status.usage is not None and not status.usage.is_empty():
                # Only the usage: the state stands as recorded, whatever this answer says.
                ctx.store.update_job(ctx.cluster_name, record.job_id, expect_state=record.state, usage=status.usage)
                waiting.pop(record.job_id)
        for job_id in observation.usage_pending:
            if job_id not in ended and job_id not in waiting:
                continue  # not recorded final by this refresh (another process's, or no change)
            left = waiting.get(job_id, USAGE_TRIES + 1) - 1
            if left <= 0:
                waiting.pop(job_id, None)
                log.info("%s: accounting reported no usage for job %s after %d refreshes; giving up",
                         ctx.cluster_name, job_id, USAGE_TRIES)
            else:
                waiting[job_id] = left

    def reconcile(self, records: Sequence[JobRecord], views: dict[str, rules.JobView]) -> int:
        """Observe ``records`` once and record what the evidence decides; how many changed."""
        ctx = self.ctx
        jobs = [ctx.tracked(r) for r in records]
        since = min((j.submitted_at for j in jobs if j.submitted_at), default=None)
        observation = ctx.scheduler.observe(jobs, since=(since - 60) if since else None)
        observation = self._whole_array_usage(records, observation)
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
        ended: set[str] = set()
        usage = bool(observation.usage_pending or ctx.awaiting_usage)
        if decisions or usage:  # a refresh in which nothing changed writes nothing (nor takes the write lock)
            with ctx.store.batch():  # one commit for the whole refresh
                for decision in decisions:
                    if self.apply(by_id[decision.job_id], decision):
                        changed += 1
                        if decision.ends:
                            ended.add(decision.job_id)
                if usage:
                    self._record_usage(records, observation, ended)
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
