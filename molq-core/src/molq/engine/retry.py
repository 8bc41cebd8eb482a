"""Retries: a due time in the store when an attempt ends, a new attempt once it is due.

Nothing sleeps through a backoff: whoever refreshes the cluster after the due time (the user's
process, ``molq watch``, the daemon) submits the next attempt, and :meth:`JobStore.claim_retry`
makes sure only one of them does. The backoff counts from the attempt's end. A submission of a
job with a retry policy starts a daemon on demand (:func:`molq.daemon.advance_later`), so the
retry comes on time with no user process alive.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import attrs

from molq.engine.context import EngineContext, PendingEvent
from molq.engine.faults import crash_point
from molq.engine.prepare import JobRequest, prepare, stored_request
from molq.engine.submit import launch
from molq.errors import ConfigError, MolqError
from molq.events import EventType
from molq.identity import host_identity as host_name
from molq.model import (
    JobRecord,
    JobResources,
    RetryPolicy,
)
from molq.retry_rules import RetryPlan, grown_resources, plan_retry

log = logging.getLogger("molq.engine")

__all__ = ["retry_policy", "schedule_retry", "run_due_retries", "resubmit", "retry_pending"]


def retry_pending(record: JobRecord) -> bool:
    """Whether ``record`` ended and its next attempt is scheduled but not started yet."""
    return record.is_terminal and record.next_retry_at is not None and record.retried_by is None


def retry_policy(ctx: EngineContext, job_id: str) -> RetryPolicy | None:
    return ctx.store.internals(ctx.cluster_name, job_id).retry


def schedule_retry(ctx: EngineContext, job_id: str, pending: list[PendingEvent] | None = None) -> None:
    """After ``job_id`` ended: set the due time of its next attempt, if its policy wants one."""
    record = ctx.store.get_job(ctx.cluster_name, job_id)
    policy = retry_policy(ctx, job_id)
    if policy is None:
        return
    plan = _plan(ctx, policy, record)
    if plan is None:
        return
    # Counted from the attempt's end, not from when a refresh noticed it: an end noticed late
    # (no molq process was looking) is not retried later for that. A run that does not count
    # (preempted, node failure) goes again at once: no backoff.
    now = time.time()
    ended = record.finished_at if record.finished_at is not None and record.finished_at <= now else now
    due = ended + policy.backoff.delay(record.attempt) if plan.counted else now
    ctx.store.update_job(ctx.cluster_name, job_id, next_retry_at=due)
    data: dict[str, Any] = {"due_at": due, "attempt": record.attempt + 1,
                            "end_cause": record.end_cause.value if record.end_cause else None,
                            "counted": plan.counted}
    if pending is not None:
        pending.append(PendingEvent(job_id, None, None, EventType.JOB_RETRYING, data))
    else:
        ctx.emit(EventType.JOB_RETRYING, job_id, record=record, **data)


def _plan(ctx: EngineContext, policy: RetryPolicy, record: JobRecord) -> RetryPlan | None:
    family = tuple(ctx.store.get_retry_family(ctx.cluster_name, record.root_job_id))
    return plan_retry(policy, record, family)


def run_due_retries(ctx: EngineContext, now: float | None = None) -> list[JobRecord]:
    """Submit every next attempt that is due; the new attempts' records."""
    now = time.time() if now is None else now
    started = []
    here = host_name()
    for record in ctx.store.list_pending_retries(ctx.cluster_name):
        if record.next_retry_at is None or record.next_retry_at > now:
            continue
        if ctx.scheduler.host_bound and ctx.store.internals(ctx.cluster_name, record.job_id).submit_host not in (None, here):
            continue  # a local job of another host is retried there
        new = resubmit(ctx, record)
        if new is not None:
            started.append(new)
    return started


def resubmit(ctx: EngineContext, failed: JobRecord, request: JobRequest | None = None) -> JobRecord | None:
    """The next attempt of ``failed``, with the same spec and dependencies (recompiled against
    the upstreams' latest attempts), or ``request`` instead of the stored one (the failed tasks
    of an array only). None if another process retries it, or it cannot be."""
    spec = ctx.store.internals(ctx.cluster_name, failed.job_id).spec
    new_id = uuid.uuid4().hex
    request = request or stored_request(ctx, failed.job_id)
    policy = retry_policy(ctx, failed.job_id)
    plan = _plan(ctx, policy, failed) if policy is not None else None
    if plan is not None and plan.grow is not None:
        # The next attempt asks for more of what this one ran out of; its row records it.
        partition = request.scheduling.partition if request.scheduling is not None else None
        cap = ctx.scheduler.max_time_limit(partition) if plan.grow.time is not None else None
        grown = grown_resources(request.resources or JobResources(), plan.grow, failed, time_cap=cap)
        request = attrs.evolve(request, resources=grown)
    try:
        sub = prepare(ctx, request, job_id=new_id, attempt_of=failed)
    except ConfigError as exc:
        if ctx.store.claim_retry(ctx.cluster_name, failed.job_id, "none"):
            ctx.store.update_job(ctx.cluster_name, failed.job_id,
                                 failure_reason=f"{failed.failure_reason}; retry impossible: {exc}")
        return None
    base = spec.get("job_dir_base")
    if base:
        sub = attrs.evolve(sub, record=attrs.evolve(sub.record, job_dir=f"{base.rstrip('/')}/{new_id}"))
    # The claim and the new attempt's record commit together: a crash can neither lose the
    # retry (claimed, never recorded) nor run it twice (recorded, claimed again).
    with ctx.store.batch():
        if not ctx.store.claim_retry(ctx.cluster_name, failed.job_id, new_id):
            return None  # another process is retrying it
        record = ctx.store.add_submission(
            attrs.evolve(sub.record, reason=f"retry {failed.attempt + 1} of {failed.root_job_id}"))
    crash_point("retry:after-claim")
    if sub.held is None:
        try:
            launch(ctx, record, sub.spec)
        except MolqError as exc:
            log.warning("retry of %s failed to submit: %s", failed.root_job_id, exc)
    return ctx.store.get_job(ctx.cluster_name, new_id)
