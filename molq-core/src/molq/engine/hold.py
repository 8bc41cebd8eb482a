"""Jobs molq holds back itself until their upstreams' retry families are final.

A scheduler judges a dependency on one scheduler job. When the upstream has a retry policy, its
first attempt failing is not the family failing: a native ``afterok`` on that attempt would kill
the dependent although a later attempt succeeds. Such a dependent is stored with a ``held``
reason and not submitted; each refresh looks at its upstreams' latest attempts and

* submits it once every dependency is satisfied, or rests on an upstream attempt that is the
  family's last (then as a native dependency on that attempt: the scheduler starts it on time);
* fails it, with the reason, once a dependency can never be satisfied.

:meth:`JobStore.claim_held` makes one process the releaser; it then submits the job like any
other, so a crash during the release is recovered like an interrupted submission.

Jobs waiting for room under the site's submit limit (:mod:`molq.engine.room`) are released
here too. Every release is a submission, so each one needs room: held jobs go oldest first
while molq's count is below the limit, within the cluster's command budget, and none after a
refusal for the limit in the same refresh.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from molq.causes import EndCause
from molq.engine.context import EngineContext
from molq.engine.faults import crash_point
from molq.engine.prepare import dependency_verdict, may_retry, prepare, split_needs_molq, stored_request
from molq.engine.room import Room, take_command
from molq.engine.submit import launch
from molq.errors import ConfigError, MolqError
from molq.identity import host_identity as host_name
from molq.model import JobRecord, JobState

log = logging.getLogger("molq.engine")

__all__ = ["release_held", "hold_verdict"]


def hold_verdict(ctx: EngineContext, record: JobRecord) -> tuple[bool | None, str]:
    """(True: release now, False: never satisfiable, None: keep waiting) and why."""
    waiting = []
    for dep in ctx.store.get_dependencies(ctx.cluster_name, record.job_id):
        upstream = ctx.latest_or_none(dep.dependency_job_id)
        if upstream is None:
            return False, f"dependency {dep.dependency_type} on {dep.dependency_job_id}: that job no longer exists"
        verdict = dependency_verdict(dep.dependency_type, upstream)
        if verdict is False:
            return False, (f"dependency {dep.dependency_type} on {upstream.root_job_id} can never be "
                           f"satisfied: its last attempt ended {upstream.state.value}")
        if verdict is None and (may_retry(ctx, upstream) or upstream.scheduler_job_id is None
                                or split_needs_molq(dep.dependency_type, upstream)):
            waiting.append(upstream.root_job_id)
    if waiting:
        return None, "waiting for " + ", ".join(waiting)
    return True, "dependencies satisfied"


def release_held(ctx: EngineContext, records: Sequence[JobRecord]) -> int:
    """Submit or fail the held jobs whose upstream families are final enough and that the
    site has room for, oldest first; how many moved."""
    moved = 0
    room = Room(ctx)
    for record in sorted(records, key=lambda r: (r.created_at or 0.0, r.job_id)):
        verdict, why = hold_verdict(ctx, record)
        if verdict is None:
            continue
        if verdict is True:
            if room.refused:
                continue  # no room left in this refresh: the next one tries again
            try:
                wait = room.check(ctx.store.internals(ctx.cluster_name, record.job_id).spec.get("scheduling") or {})
            except ConfigError as exc:  # the limit went below the array's size
                verdict, why = False, f"cannot be submitted: {exc}"
            else:
                if wait is not None:
                    _note_wait(ctx, record, wait)
                    room.refused = True  # oldest first: no younger job overtakes it
                    continue
                if not take_command(ctx):
                    room.refused = True  # the command budget is spent for this minute
                    continue
        if not ctx.store.claim_held(ctx.cluster_name, record.job_id, host=host_name(), pid=os.getpid()):
            continue  # another process took it (or a cancel did)
        crash_point("hold:after-claim")
        moved += 1
        if verdict is False:
            cause = EndCause.DEPENDENCY_NEVER_SATISFIED if why.startswith("dependency") else EndCause.LAUNCH_FAILED
            ctx.transition(record, JobState.FAILED, reason=why, failure_reason=why, finished_at=time.time(),
                           end_cause=cause.value, sub_state=None, sub_state_reason=None)
            continue
        try:
            sub = prepare(ctx, stored_request(ctx, record.job_id), job_id=record.job_id)
        except ConfigError as exc:
            ctx.transition(record, JobState.FAILED, reason=f"cannot be submitted: {exc}",
                           failure_reason=f"cannot be submitted: {exc}", finished_at=time.time(),
                           end_cause=EndCause.LAUNCH_FAILED.value, sub_state=None, sub_state_reason=None)
            continue
        if sub.held is not None:  # an upstream got a new attempt meanwhile: hold again
            ctx.store.update_job(ctx.cluster_name, record.job_id, expect_state=JobState.CREATED, held=sub.held,
                                 sub_state=None, sub_state_reason=None)
            continue
        try:
            sid = launch(ctx, record, sub.spec)
        except MolqError as exc:
            log.warning("held job %s failed to submit: %s", record.job_id, exc)
            continue
        if sid is None:
            room.refused = True  # refused for the limit, and held again by launch
            continue
        ctx.store.update_job(ctx.cluster_name, record.job_id, held=None, sub_state=None, sub_state_reason=None)
    return moved


def _note_wait(ctx: EngineContext, record: JobRecord, why: str) -> None:
    """Show why a held job still waits when that changed (a job whose dependencies are
    satisfied now waits for room; a limit changed). Only the shown reason: the ``held``
    column is the releasers' claim and is written by them alone."""
    if record.sub_state_reason != why:
        ctx.store.update_job(ctx.cluster_name, record.job_id, expect_state=JobState.CREATED,
                             sub_state="held", sub_state_reason=why)
