"""``Submitor``: the public front of the lifecycle engine for one :class:`~molq.cluster.Cluster`.

The work is done in :mod:`molq.engine`: preparation (``prepare``), submission (``submit``),
refresh (``refresh``, deciding with ``decide``), cancel, retry, recovery (``adopt``), cleanup,
and the watch and daemon loops (``loops``). This module keeps the seed API's names and
signatures and nothing else.

Submission is crash-safe: the record is written (state ``created``) before the scheduler is
called, the molq id travels with the scheduler job, and a later refresh adopts or fails records
that a crash left behind. Retries are scheduled (a due time in the store), never slept through.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from molq.cluster import Cluster
from molq.engine import cancel as _cancel
from molq.engine import cleanup as _cleanup
from molq.engine import loops as _loops
from molq.engine import refresh as _refresh
from molq.engine import submit as _submit
from molq.engine.context import EngineContext
from molq.engine.prepare import JobRequest
from molq.errors import ConfigError, MolqError
from molq.events import EventBus, EventType
from molq.model import (
    JobDependency,
    JobExecution,
    JobRecord,
    JobResources,
    JobScheduling,
    JobState,
    RetentionPolicy,
    RetryPolicy,
    Script,
    StatusTransition,
    SubmitorDefaults,
)
from molq.scheduler import Scheduler
from molq.store import JobStore

log = logging.getLogger("molq.submitor")

__all__ = ["Submitor", "JobHandle"]


class JobHandle:
    """What :meth:`Submitor.submit_job` returns. ``job_id`` is the root id of the retry family;
    ``status()``, ``refresh()`` and ``wait()`` follow the latest attempt."""

    def __init__(self, submitor: Submitor, job_id: str, scheduler_job_id: str | None,
                 error: MolqError | None = None) -> None:
        self._submitor = submitor
        #: Why the submission failed (:meth:`Submitor.submit_jobs` only; the job is recorded
        #: FAILED, or left for adoption when the scheduler may have it). None otherwise.
        self.error = error
        self.job_id = job_id
        self.cluster_name = submitor.cluster_name
        self.scheduler = submitor.target.scheduler
        self.scheduler_job_id = scheduler_job_id

    def __repr__(self) -> str:
        return f"JobHandle({self.job_id!r}, cluster={self.cluster_name!r}, scheduler_job_id={self.scheduler_job_id!r})"

    def record(self) -> JobRecord:
        """The latest attempt's record, as stored."""
        return self._seen(self._submitor._latest_attempt(self.job_id))

    def _seen(self, record: JobRecord) -> JobRecord:
        # The handle describes the latest attempt it has loaded: a retry has its own
        # scheduler job id, and a stale one would point users at the wrong scheduler job.
        self.scheduler_job_id = record.scheduler_job_id
        return record

    def status(self) -> JobState:
        return self.record().state

    def refresh(self) -> JobHandle:
        self._submitor.refresh_jobs()
        self.record()
        return self

    def wait(self, timeout: float | None = None) -> JobRecord:
        """Block until the job (and any retries) reach a final state; return the final record."""
        return self._seen(self._submitor.watch_jobs([self.job_id], timeout=timeout)[0])

    def cancel(self) -> None:
        self._submitor.cancel_job(self.job_id)


class Submitor:
    """Submit, watch, cancel, refresh, retry and clean up jobs of one cluster.

    Every call is scoped to ``target.name``: several Submitors can share a :class:`JobStore`
    without seeing each other's records.
    """

    def __init__(
        self,
        target: Cluster,
        *,
        defaults: SubmitorDefaults | None = None,
        store: JobStore | None = None,
        jobs_dir: str | Path | None = None,
        default_retry_policy: RetryPolicy | None = None,
        retention_policy: RetentionPolicy | None = None,
        profile_name: str | None = None,
        event_bus: EventBus | None = None,
    ) -> None:
        if not isinstance(target, Cluster):
            raise ConfigError(f"Submitor needs a Cluster as target, got {type(target).__name__}")
        self._owns_store = store is None
        self._ctx = EngineContext(
            target=target,
            store=store if store is not None else JobStore(),
            defaults=defaults or SubmitorDefaults(),
            jobs_dir=str(jobs_dir) if jobs_dir is not None else None,
            default_retry_policy=default_retry_policy,
            retention_policy=retention_policy or RetentionPolicy(),
            profile_name=profile_name,
            event_bus=event_bus or EventBus(),
        )

    def __repr__(self) -> str:
        return f"Submitor({self.target!r})"

    def __enter__(self) -> Submitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration (held by the engine context) ------------------------------------------
    @property
    def target(self) -> Cluster:
        return self._ctx.target

    @property
    def store(self) -> JobStore:
        return self._ctx.store

    @property
    def defaults(self) -> SubmitorDefaults:
        return self._ctx.defaults

    @property
    def jobs_dir(self) -> str | None:
        return self._ctx.jobs_dir

    @property
    def default_retry_policy(self) -> RetryPolicy | None:
        return self._ctx.default_retry_policy

    @property
    def retention_policy(self) -> RetentionPolicy:
        return self._ctx.retention_policy

    @property
    def profile_name(self) -> str | None:
        return self._ctx.profile_name

    @property
    def event_bus(self) -> EventBus:
        return self._ctx.event_bus

    @property
    def cluster_name(self) -> str:
        return self._ctx.cluster_name

    @property
    def scheduler(self) -> Scheduler:
        return self._ctx.scheduler

    @classmethod
    def from_profile(
        cls,
        profile_name: str,
        *,
        target: Cluster | None = None,
        config_path: str | Path | None = None,
        store: JobStore | None = None,
    ) -> Submitor:
        """Build a Submitor (and, unless given, its Cluster) from a TOML profile."""
        from molq.config import load_profile

        profile = load_profile(profile_name, config_path)
        if target is None:
            target = Cluster.from_profile(profile_name, config_path=config_path)
        if store is None and profile.store_url:
            from molq.store import open_store

            store = open_store(profile.store_url)
        return cls(
            target,
            defaults=profile.defaults,
            store=store,
            jobs_dir=profile.jobs_dir,
            default_retry_policy=profile.retry,
            retention_policy=profile.retention,
            profile_name=profile_name,
        )

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    # -- events ------------------------------------------------------------------------------
    def on_event(self, event: EventType | str, handler: Any) -> None:
        self.event_bus.on(event, handler)

    def off_event(self, event: EventType | str, handler: Any) -> None:
        self.event_bus.off(event, handler)

    # -- lookups -----------------------------------------------------------------------------
    def get_job(self, job_id: str) -> JobRecord:
        """The record of one attempt, by id or unique id prefix."""
        return self._ctx.get_job(job_id)

    def latest_attempt(self, job_id: str) -> JobRecord:
        """The record of the latest attempt of the retry family ``job_id`` belongs to."""
        return self._ctx.latest_attempt(job_id)

    # Kept for callers of the first releases; use latest_attempt().
    _latest_attempt = latest_attempt

    def list_jobs(self, include_terminal: bool = False) -> list[JobRecord]:
        return self.store.list_jobs(self.cluster_name, include_terminal=include_terminal)

    def get_transitions(self, job_id: str) -> list[StatusTransition]:
        return self.store.get_transitions(self.cluster_name, self._ctx.resolve(job_id))

    def get_retry_family(self, job_id: str) -> list[JobRecord]:
        record = self.get_job(job_id)
        return self.store.get_retry_family(self.cluster_name, record.root_job_id)

    def get_dependencies(self, job_id: str) -> list[JobDependency]:
        return self.store.get_dependencies(self.cluster_name, self._ctx.resolve(job_id))

    def get_dependents(self, job_id: str) -> list[JobDependency]:
        return self.store.get_dependents(self.cluster_name, self._ctx.resolve(job_id))

    # -- lifecycle ---------------------------------------------------------------------------
    def submit_job(
        self,
        *,
        argv: Sequence[str] | None = None,
        command: str | None = None,
        script: Script | None = None,
        resources: JobResources | None = None,
        scheduling: JobScheduling | None = None,
        execution: JobExecution | None = None,
        metadata: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
        after_started: Sequence[str] | None = None,
        after: Sequence[str] | None = None,
        after_failure: Sequence[str] | None = None,
        after_success: Sequence[str] | None = None,
        job_dir_name: str | None = None,
    ) -> JobHandle:
        """Submit a job: exactly one of ``argv``, ``command`` or ``script``.

        Input is validated (and the scheduler's capabilities checked) before anything is
        persisted or submitted; :class:`ConfigError` names the problem.
        """
        request = JobRequest(
            argv=argv, command=command, script=script, resources=resources, scheduling=scheduling,
            execution=execution, metadata=metadata, retry=retry, after_started=after_started, after=after,
            after_failure=after_failure, after_success=after_success, job_dir_name=job_dir_name,
        )
        record, sid = _submit.submit(self._ctx, request)
        self._advance_later([(request, record, sid is None)])
        return JobHandle(self, record.root_job_id, sid)

    def submit_jobs(self, jobs: Iterable[Mapping[str, Any]], *, concurrency: int | None = None) -> list[JobHandle]:
        """Submit many jobs, each given as the keywords of :meth:`submit_job`; handles in order.

        Everything is validated before anything is stored (a :class:`ConfigError` names the
        job), every job is recorded before its scheduler call, and the calls run
        ``concurrency`` at a time (default 4). A failed submission fails only its own job: its
        handle's ``error`` says why, and its record is FAILED.
        """
        requests = []
        for index, kwargs in enumerate(jobs):
            try:
                requests.append(JobRequest(**kwargs))
            except TypeError as exc:
                raise ConfigError(f"job {index + 1}: {exc}") from None
        results = _submit.submit_many(self._ctx, requests, concurrency=concurrency)
        self._advance_later([(req, record, sid is None)
                             for req, (record, sid, error) in zip(requests, results, strict=True) if error is None])
        return [JobHandle(self, record.root_job_id, sid, error) for record, sid, error in results]

    def _advance_later(self, submitted: Sequence[tuple[JobRequest, JobRecord, bool]]) -> None:
        """Jobs whose retries or held dependents need a molq process once this one exits get
        a daemon started on demand (see :func:`molq.daemon.advance_later`); so do jobs molq
        holds back (the third item: not handed to the scheduler), which wait for room."""
        from molq import daemon

        if not daemon.auto_enabled():
            return

        def needs(req: JobRequest, record: JobRecord, held: bool) -> bool:
            if held:
                return True  # held back by molq (for an upstream, or for room): a refresh releases it
            policy = req.retry or self.default_retry_policy
            deps = req.after or req.after_success or req.after_failure or req.after_started
            return daemon.needs_daemon(self._ctx, record, has_retry=policy is not None and policy.max_attempts > 1,
                                       has_deps=bool(deps))

        daemon.advance_later(self._ctx, any(needs(req, record, held) for req, record, held in submitted))

    def render_job_script(self, **submit_kwargs: Any) -> str:
        """The job script :meth:`submit_job` would hand the scheduler for the same keywords,
        exactly as submitted; nothing is stored or submitted (``molq submit --dry-run``)."""
        return _submit.render(self._ctx, JobRequest(**submit_kwargs))

    def refresh_jobs(self) -> _refresh.RefreshResult:
        """Reconcile every active job of this cluster with the scheduler, and start retries
        that are due. A failed scheduler query changes nothing (it is in the result's
        ``problems``)."""
        return _refresh.refresh(self._ctx)

    def watch_jobs(self, job_ids: Sequence[str] | None = None, timeout: float | None = None,
                   poll_interval: float | None = None) -> list[JobRecord]:
        """Block until the given jobs (default: every active job) and their retries are final.

        Returns the final record of each job's latest attempt, in the order given.
        Raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        return _loops.watch(self._ctx, job_ids, timeout=timeout, poll_interval=poll_interval)

    def rerun_failed_tasks(self, job_id: str) -> JobHandle:
        """Re-run only the tasks of an ended array job that did not succeed (exit code other
        than 0, or none), as the job's next attempt, in one submission."""
        from molq.engine.rerun import rerun_failed_tasks

        record = rerun_failed_tasks(self._ctx, job_id)
        return JobHandle(self, record.root_job_id, record.scheduler_job_id)

    def cancel_job(self, job_id: str) -> None:
        """Cancel the latest active attempt of a job (and any retry it was waiting for).
        A job that already finished keeps its final state."""
        self.cancel_jobs([job_id])

    def cancel_jobs(self, job_ids: Iterable[str]) -> None:
        """Cancel many jobs with one scheduler call. A job is recorded CANCELLED once the
        scheduler confirms the stop; one that ended first keeps its real end."""
        _cancel.cancel_jobs(self._ctx, job_ids)

    def cleanup_jobs(self, dry_run: bool = False, retention_policy: RetentionPolicy | None = None) -> dict[str, list[str]]:
        """Remove old job directories and records per the retention policy.

        Returns ``{"job_dirs": [...removed dirs], "records": [...deleted job ids]}``.
        """
        return _cleanup.cleanup_jobs(self._ctx, retention_policy or self.retention_policy, dry_run=dry_run)

    def run_daemon(self, once: bool = False, interval: float = 5.0, run_cleanup: bool = True,
                   max_iterations: int | None = None) -> None:
        """Reconcile this cluster in a loop (one daemon per cluster and store at a time)."""
        _loops.run_daemon(self._ctx, once=once, interval=interval, run_cleanup=run_cleanup,
                          max_iterations=max_iterations, cleanup=self.cleanup_jobs)
