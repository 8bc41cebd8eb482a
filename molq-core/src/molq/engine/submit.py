"""Handing a stored job to the scheduler.

The record exists (state ``created``) before the scheduler is called, so a crash at any point
leaves something recovery can find: :mod:`molq.engine.adopt` looks for the scheduler job by the
molq tag, in accounting and in the job directory before it decides anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from molq.causes import EndCause
from molq.engine.context import EngineContext
from molq.engine.faults import crash_point
from molq.engine.prepare import JobRequest, Submission, prepare
from molq.engine.room import ROOM, Room, hold_for_room
from molq.errors import (
    ConfigError,
    MolqError,
    SchedulerError,
    SubmissionDeferred,
    SubmissionUncertainError,
    SubmitError,
    SubmitLimitReached,
    TransientSchedulerError,
    TransportError,
)
from molq.model import JobRecord, JobSpec, JobState
from molq.transport import make_dirs

log = logging.getLogger("molq.engine")

__all__ = ["submit", "submit_many", "launch", "launch_many", "render", "DEFAULT_CONCURRENCY"]


def _room_for(room: Room, sub: Submission) -> Submission:
    """``sub``, held back for room when the site's submit limit leaves none
    (:mod:`molq.engine.room`)."""
    if sub.held is not None:
        return sub
    why = room.check(sub.spec.scheduling)
    return sub if why is None else attrs.evolve(sub, record=attrs.evolve(sub.record, held=why))


def _store(ctx: EngineContext, sub: Submission) -> JobRecord:
    if sub.held is None:
        return ctx.store.add_submission(attrs.evolve(sub.record, reason="submitted"))
    # An upstream may still retry, or the site has no room: molq submits the job later (see
    # molq.engine.hold), so the scheduler never judges a dependency on a stale attempt nor
    # refuses a job it has no room for.
    record = ctx.store.add_submission(attrs.evolve(sub.record, reason=f"held by molq: {sub.held}"))
    if sub.held.startswith(ROOM):
        ctx.store.update_job(ctx.cluster_name, record.job_id, sub_state="held", sub_state_reason=sub.held)
    return record


def submit(ctx: EngineContext, request: JobRequest) -> tuple[JobRecord, str | None]:
    """Validate, store, then submit one job; the stored record and the scheduler id (None
    when molq holds the job back)."""
    sub = _room_for(Room(ctx), prepare(ctx, request))
    if sub.held is not None:
        return _store(ctx, sub), None
    record = _store(ctx, sub)
    crash_point("submit:after-insert")
    return record, launch(ctx, record, sub.spec)


#: Submissions one bulk call runs at once on a cluster, unless told otherwise.
DEFAULT_CONCURRENCY = 4


def submit_many(
    ctx: EngineContext, requests: Sequence[JobRequest], *, concurrency: int | None = None
) -> list[tuple[JobRecord, str | None, MolqError | None]]:
    """Submit several jobs: every request is validated before anything is stored, every job is
    recorded (one transaction) before any scheduler call, then the scheduler calls run with a
    bounded concurrency. One failed submission fails only its own job (its error is returned
    beside its record); nothing is submitted twice. Results are in the order given."""
    subs = []
    room = Room(ctx)  # what fits under the site's submit limit goes now, the rest waits in molq
    for index, request in enumerate(requests):
        try:
            subs.append(_room_for(room, prepare(ctx, request)))
        except ConfigError as exc:
            raise ConfigError(f"job {index + 1} of {len(requests)}: {exc}") from None
    records = []
    with ctx.store.batch():
        for sub in subs:
            records.append(_store(ctx, sub))
    crash_point("submit:after-insert")
    results: list[tuple[JobRecord, str | None, MolqError | None]] = [(r, None, None) for r in records]
    todo = [i for i, sub in enumerate(subs) if sub.held is None]

    def one(i: int) -> tuple[int, str | None, MolqError | None]:
        try:
            return i, launch(ctx, records[i], subs[i].spec), None
        except MolqError as exc:  # recorded on the job by launch (FAILED, or left to adoption)
            return i, None, exc

    if len(todo) > 1 and ctx.scheduler.bulk_submission and (ctx.target.transport.is_remote
                                                             or ctx.scheduler.packs_bulk):
        # Every command costs a round trip: the whole batch goes in a constant number of them.
        # A scheduler that packs like jobs into one array needs the whole batch to find them.
        launched = launch_many(ctx, [records[i] for i in todo], [subs[i].spec for i in todo])
        for i, (sid, error) in zip(todo, launched, strict=True):
            results[i] = (records[i], sid, error)
        return results
    workers = max(1, min(concurrency or DEFAULT_CONCURRENCY, len(todo) or 1))
    if workers == 1:
        done = [one(i) for i in todo]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="molq-submit") as pool:
            done = list(pool.map(one, todo))
    for i, sid, error in done:
        results[i] = (records[i], sid, error)
    return results


def render(ctx: EngineContext, request: JobRequest) -> str:
    """The job script :func:`submit` would hand the scheduler for ``request``; nothing is
    stored or submitted."""
    sub = prepare(ctx, request)
    return ctx.scheduler.render_script(sub.spec, sub.job_dir)


def _parent(record: JobRecord) -> str:
    return record.job_dir.rsplit("/", 1)[0] if record.job_dir else ""


def launch(ctx: EngineContext, record: JobRecord, spec: JobSpec) -> str | None:
    """Create the job directory and hand the job to the scheduler; the record exists. None
    when the site refused it for its submit limit: the job then waits in molq for room."""
    transport = ctx.target.transport
    try:
        parent = _parent(record)
        if parent and parent not in ctx.made_dirs:
            transport.mkdir(parent, parents=True, mode=0o700)
            ctx.made_dirs.add(parent)
        if record.job_dir:
            transport.mkdir(record.job_dir, parents=False, mode=0o700)
        sid = ctx.scheduler.submit(spec, record.job_dir or "")
    except (SchedulerError, TransportError, ConfigError, OSError) as exc:
        error = _not_launched(ctx, record, exc)
        if error is None:
            return None
        if error is exc:
            raise
        raise error from exc
    return _accepted(ctx, record, sid)


def launch_many(ctx: EngineContext, records: Sequence[JobRecord], specs: Sequence[JobSpec]
                ) -> list[tuple[str | None, MolqError | None]]:
    """:func:`launch` for many recorded jobs in a constant number of commands: one creates
    every job directory, then the scheduler's ``submit_many`` sends them all. Each job's
    outcome is recorded as :func:`launch` records it; one (scheduler id, error) per job
    (both None: held back in molq for room)."""
    out: list[tuple[str | None, MolqError | None]] = [(None, None)] * len(records)
    parents = sorted({_parent(r) for r in records if r.job_dir} - ctx.made_dirs - {""})
    dirs = parents + [r.job_dir for r in records if r.job_dir]
    try:
        # A directory costs a fork or two on the far side: the limit grows with the batch.
        failed = make_dirs(ctx.target.transport, dirs, mode=0o700,
                           timeout=(ctx.scheduler.submit_in_flight_seconds or 60.0) + 0.05 * len(dirs))
    except (TransportError, OSError) as exc:
        failed = {d: str(exc) for d in dirs}
    ctx.made_dirs.update(p for p in parents if p not in failed)
    todo: list[int] = []
    for i, record in enumerate(records):
        why = failed.get(_parent(record)) or failed.get(record.job_dir or "")
        if why is not None:
            out[i] = (None, _not_launched(ctx, record, TransportError(f"creating {record.job_dir} failed: {why}")))
        else:
            todo.append(i)
    while todo:
        answers = ctx.scheduler.submit_many([(specs[i], records[i].job_dir or "") for i in todo])
        deferred = [i for i, answer in zip(todo, answers, strict=True) if isinstance(answer, SubmissionDeferred)]
        _record_answers(ctx, records, todo, answers, out)
        # Not submitted: marked as being submitted again, so that recovery's in-flight window
        # starts now for them, then sent in the next round.
        todo = []
        with ctx.store.batch():
            for i in deferred:
                if ctx.store.update_job(ctx.cluster_name, records[i].job_id, expect_state=JobState.CREATED):
                    todo.append(i)
                else:  # moved meanwhile (cancelled, say): whatever did that decided for it
                    out[i] = (None, SubmitError(f"{records[i].job_id} was not submitted: its record changed "
                                                f"while it waited for its turn"))
    return out


def _record_answers(ctx: EngineContext, records: Sequence[JobRecord], todo: Sequence[int],
                    answers: Sequence[str | BaseException], out: list[tuple[str | None, MolqError | None]]) -> None:
    for i, answer in zip(todo, answers, strict=True):
        if isinstance(answer, SubmissionDeferred):
            continue
        if isinstance(answer, str):
            out[i] = (_accepted(ctx, records[i], answer), None)
        elif isinstance(answer, (SchedulerError, TransportError, ConfigError, OSError)):
            out[i] = (None, _not_launched(ctx, records[i], answer))
        else:
            # Nothing tells whether the scheduler got it: leave it to adoption, as an
            # interrupted launch() would.
            out[i] = (None, _not_launched(ctx, records[i], TransientSchedulerError(str(answer))))


def _not_launched(ctx: EngineContext, record: JobRecord, exc: BaseException) -> MolqError | None:
    """Record why ``record`` was not submitted; the error to give the caller. An uncertain
    submission keeps the record (adoption decides); a refusal for the site's submit limit
    holds it back in molq (None: no error); any other failure fails the job."""
    if isinstance(exc, SubmitLimitReached):
        hold_for_room(ctx, record, exc)
        return None
    if isinstance(exc, TransientSchedulerError):
        # The scheduler may have the job: keep the record, let refresh adopt or fail it.
        ctx.store.update_job(ctx.cluster_name, record.job_id, expect_state=JobState.CREATED, submit_pid=None)
        return SubmissionUncertainError(
            f"submission of {record.job_id} to {ctx.cluster_name} is uncertain ({exc}); "
            f"molq will adopt the job on a later refresh if the scheduler accepted it",
            job_id=record.job_id, stderr=exc.stderr)
    message = (getattr(exc, "stderr", "") or str(exc)).strip()
    ctx.transition(record, JobState.FAILED, reason=f"submission failed: {message}",
                   failure_reason=f"submission failed: {message}", finished_at=time.time(),
                   end_cause=EndCause.LAUNCH_FAILED.value)
    if isinstance(exc, SubmitError):
        return exc
    return SubmitError(f"submitting to {ctx.cluster_name} failed: {message}", stderr=getattr(exc, "stderr", ""))


def _accepted(ctx: EngineContext, record: JobRecord, sid: str) -> str:
    """Record that the scheduler accepted ``record`` as ``sid``."""
    crash_point("submit:after-scheduler")
    tr = ctx.transition(record, JobState.SUBMITTED, reason=f"accepted by {ctx.target.scheduler} as {sid}",
                        scheduler_job_id=sid, submitted_at=time.time())
    if tr is None:
        # Someone moved the record meanwhile (a refresh that adopted it). Whatever it decided,
        # the record must carry the id of the job the scheduler accepted.
        current = ctx.store.get_job(ctx.cluster_name, record.job_id)
        if current.scheduler_job_id is None:
            ctx.store.update_job(ctx.cluster_name, record.job_id, scheduler_job_id=sid)
            log.warning("job %s was moved to %s during its submission; its scheduler id %s is kept",
                        record.job_id, current.state.value, sid)
            if current.is_terminal:
                # It was recorded final meanwhile: the job the scheduler just accepted must not
                # run untracked.
                try:
                    ctx.scheduler.cancel_many([ctx.tracked(attrs.evolve(current, scheduler_job_id=sid))])
                except (SchedulerError, TransportError) as exc:
                    log.error("job %s (%s) could not be cancelled: %s", record.job_id, sid, exc)
    return sid
