"""``Submitor``: the lifecycle engine for one :class:`~molq.cluster.Cluster`.

Submission is crash-safe: the record is written (state ``created``) before the scheduler is
called, the molq id travels with the scheduler job, and a later refresh adopts or fails records
that a crash left behind. Retries are scheduled (a due time in the store), never slept through.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from molq import serde
from molq.cluster import Cluster
from molq.errors import (
    ConfigError,
    JobNotFoundError,
    MolqError,
    SchedulerError,
    SubmissionUncertainError,
    SubmitError,
    TransientSchedulerError,
    TransportError,
)
from molq.events import EventBus, EventPayload, EventType, events_for_transition
from molq.model import (
    DependencyRef,
    JobDependency,
    JobExecution,
    JobRecord,
    JobResources,
    JobScheduling,
    JobSpec,
    JobState,
    RetentionPolicy,
    RetryPolicy,
    SchedulerStatus,
    Script,
    StatusTransition,
    SubmitorDefaults,
)
from molq.scheduler import TrackedJob
from molq.store import JobStore

log = logging.getLogger("molq.submitor")

__all__ = ["Submitor", "JobHandle"]

_RECORD_FIELDS = frozenset(a.name for a in attrs.fields(JobRecord))

#: Successful queries that must miss a job (with no terminal evidence) before it is LOST...
LOST_AFTER_MISSES = 3
#: ...over at least this long (accounting can lag the queue by a few seconds).
LOST_AFTER_SECONDS = 120.0
#: A ``created`` record older than this, whose submitting process is gone, is an orphan.
ORPHAN_AGE_SECONDS = 30.0


def _merge(base: Any, override: Any) -> Any:
    """Field-wise merge: what the job set wins, what it left out comes from the default."""
    from molq.model import merge_onto_default  # the merge rules live with the model

    return merge_onto_default(base, override)


@attrs.frozen
class _Submission:
    spec: JobSpec
    values: dict[str, Any]
    dependencies: tuple[JobDependency, ...]


class JobHandle:
    """What :meth:`Submitor.submit_job` returns. ``job_id`` is the root id of the retry family;
    ``status()``, ``refresh()`` and ``wait()`` follow the latest attempt."""

    def __init__(self, submitor: Submitor, job_id: str, scheduler_job_id: str | None) -> None:
        self._submitor = submitor
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
        self.target = target
        self.defaults = defaults or SubmitorDefaults()
        self._owns_store = store is None
        self.store = store if store is not None else JobStore()
        self.jobs_dir = str(jobs_dir) if jobs_dir is not None else None
        self.default_retry_policy = default_retry_policy
        self.retention_policy = retention_policy or RetentionPolicy()
        self.profile_name = profile_name
        self.event_bus = event_bus or EventBus()
        self._sinks: list[Any] | None = None
        self._made_dirs: set[str] = set()
        self._missing: dict[str, int] = {}
        self._deferred: list[tuple[str, Any, Any, Any]] | None = None
        self._has_retry: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"Submitor({self.target!r})"

    def __enter__(self) -> Submitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cluster_name(self) -> str:
        return self.target.name

    @property
    def scheduler(self) -> Any:
        return self.target.scheduler_impl

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

    def _emit(self, event: EventType, job_id: str | None, transition: StatusTransition | None = None,
              record: JobRecord | None = None, **data: Any) -> None:
        payload = EventPayload(event, job_id, transition, record, {"cluster_name": self.cluster_name, **data})
        self.event_bus.emit(event, payload)
        self._wants_events()
        for sink in self._sinks or ():
            try:
                sink.handler(payload)
            except Exception:  # noqa: BLE001
                log.exception("event sink %s failed", sink.name)

    def _wants_events(self) -> bool:
        if self._sinks is None:
            from molq.plugins import get_plugin_manager

            try:
                self._sinks = get_plugin_manager().event_sinks()
            except MolqError as exc:
                log.warning("event sinks unavailable: %s", exc)
                self._sinks = []
        return bool(self._sinks) or self.event_bus.has_handlers()

    def _transition(self, record: JobRecord, new_state: JobState, reason: str | None = None, **fields: Any) -> StatusTransition | None:
        tr = self.store.transition(self.cluster_name, record.job_id, record.state, new_state, reason=reason, **fields)
        if tr is not None and self._wants_events():
            if self._deferred is not None:
                # Inside a refresh: emitted together afterwards, with one store read for all.
                self._deferred.append((record.job_id, record.state, tr, None))
            else:
                # The caller's record plus what just changed: no read back from the store.
                known = {k: v for k, v in fields.items() if k in _RECORD_FIELDS}
                updated = attrs.evolve(record, state=new_state, updated_at=tr.timestamp, **known)
                for event in events_for_transition(new_state, record.state):
                    self._emit(event, record.job_id, tr, updated)
        return tr

    def _flush_events(self) -> None:
        deferred, self._deferred = self._deferred or [], None
        if not deferred:
            return
        records = self.store.get_jobs(self.cluster_name, [item[0] for item in deferred])
        for job_id, old_state, tr, extra in deferred:
            if extra is not None:  # a non-transition event, e.g. a retry being scheduled
                event, data = extra
                self._emit(event, job_id, None, records.get(job_id), **data)
                continue
            for event in events_for_transition(tr.new_state, old_state):
                self._emit(event, job_id, tr, records.get(job_id))

    # -- lookups -----------------------------------------------------------------------------
    def _resolve(self, job_id: str) -> str:
        return self.store.resolve_job_id(self.cluster_name, job_id)[1]

    def get_job(self, job_id: str) -> JobRecord:
        """The record of one attempt, by id or unique id prefix."""
        return self.store.get_job(self.cluster_name, self._resolve(job_id))

    def _get_many(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Records of several ids or unique prefixes, in order: full ids in one query."""
        found = self.store.get_jobs(self.cluster_name, list(dict.fromkeys(job_ids)))
        return [found.get(j) or self.get_job(j) for j in job_ids]

    def list_jobs(self, include_terminal: bool = False) -> list[JobRecord]:
        return self.store.list_jobs(self.cluster_name, include_terminal=include_terminal)

    def get_transitions(self, job_id: str) -> list[StatusTransition]:
        return self.store.get_transitions(self.cluster_name, self._resolve(job_id))

    def get_retry_family(self, job_id: str) -> list[JobRecord]:
        record = self.get_job(job_id)
        return self.store.get_retry_family(self.cluster_name, record.root_job_id)

    def get_dependencies(self, job_id: str) -> list[JobDependency]:
        return self.store.get_dependencies(self.cluster_name, self._resolve(job_id))

    def get_dependents(self, job_id: str) -> list[JobDependency]:
        return self.store.get_dependents(self.cluster_name, self._resolve(job_id))

    def _latest_attempt(self, job_id: str) -> JobRecord:
        record = self.get_job(job_id)
        family = self.store.get_retry_family(self.cluster_name, record.root_job_id)
        return family[-1] if family else record

    # -- submission --------------------------------------------------------------------------
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
        sub = self._prepare(
            argv=argv, command=command, script=script, resources=resources, scheduling=scheduling,
            execution=execution, metadata=metadata, retry=retry, after_started=after_started, after=after,
            after_failure=after_failure, after_success=after_success, job_dir_name=job_dir_name,
        )
        record = self.store.insert_job(sub.values, sub.dependencies, reason="submitted")
        sid = self._launch(record, sub.spec)
        return JobHandle(self, record.root_job_id, sid)

    def _prepare(
        self,
        *,
        argv: Sequence[str] | None,
        command: str | None,
        script: Script | None,
        resources: JobResources | None,
        scheduling: JobScheduling | None,
        execution: JobExecution | None,
        metadata: dict[str, str] | None,
        retry: RetryPolicy | None,
        after_started: Sequence[str] | None,
        after: Sequence[str] | None,
        after_failure: Sequence[str] | None,
        after_success: Sequence[str] | None,
        job_dir_name: str | None,
        job_id: str | None = None,
        attempt_of: JobRecord | None = None,
    ) -> _Submission:
        given = [name for name, v in (("argv", argv), ("command", command), ("script", script)) if v is not None]
        if len(given) != 1:
            raise ConfigError(
                "submit_job needs exactly one of argv, command or script"
                + (f" (got {', '.join(given)})" if given else " (got none)")
            )
        if argv is not None:
            if isinstance(argv, str) or not all(isinstance(a, str) for a in argv) or not argv:
                raise ConfigError("argv must be a non-empty list of strings (use command= for a shell line)")
            argv = tuple(argv)
        if command is not None and (not isinstance(command, str) or not command.strip()):
            raise ConfigError("command must be a non-empty string")
        if script is not None and not isinstance(script, Script):
            raise ConfigError("script must be a molq.Script (Script.inline(text) or Script.path(p))")
        for name, value in (("resources", resources), ("scheduling", scheduling), ("execution", execution)):
            expected = {"resources": JobResources, "scheduling": JobScheduling, "execution": JobExecution}[name]
            if value is not None and not isinstance(value, expected):
                raise ConfigError(f"{name} must be a {expected.__name__}, got {type(value).__name__}")
        if metadata is not None:
            if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
                raise ConfigError("metadata must be a dict of strings to strings")
        if job_dir_name is not None and (not job_dir_name or "/" in job_dir_name or job_dir_name in (".", "..")):
            raise ConfigError(f"job_dir_name must be a single path component, got {job_dir_name!r}")

        resources = _merge(self.defaults.resources, resources) or JobResources()
        scheduling = _merge(self.defaults.scheduling, scheduling) or JobScheduling()
        execution = _merge(self.defaults.execution, execution) or JobExecution()

        refs: list[DependencyRef] = list(scheduling.dependencies)
        for cond, ids in (("after_started", after_started), ("after", after),
                          ("after_failure", after_failure), ("after_success", after_success)):
            if ids is None:
                continue
            if isinstance(ids, str):
                raise ConfigError(f"{cond} must be a list of job ids, not a string")
            refs.extend(DependencyRef(i, cond) for i in ids)  # type: ignore[arg-type]
        if refs and scheduling.dependency is not None:
            raise ConfigError("raw scheduling.dependency cannot be combined with molq job dependencies")

        job_id = job_id or uuid.uuid4().hex
        sched = self.scheduler
        compiled, dep_rows = self._compile_dependencies(job_id, refs, sched)

        transport = self.target.transport
        cwd = execution.cwd
        if cwd is None:
            cwd = transport.home() if transport.is_remote else os.getcwd()
        elif not cwd.startswith("/"):
            if transport.is_remote:
                cwd = f"{transport.home().rstrip('/')}/{cwd}"
            else:
                cwd = os.path.abspath(cwd)
        if self.jobs_dir is not None:
            base = self.jobs_dir if self.jobs_dir.startswith("/") else f"{cwd.rstrip('/')}/{self.jobs_dir}"
        else:
            base = f"{cwd.rstrip('/')}/.molq/jobs"
        job_dir = f"{base.rstrip('/')}/{job_dir_name or job_id}"

        spec = JobSpec(
            job_id=job_id,
            command_type=given[0],  # type: ignore[arg-type]
            argv=argv,  # type: ignore[arg-type]
            command=command,
            script=script,
            resources=resources,
            scheduling=attrs.evolve(scheduling, dependencies=()),
            execution=execution,
            cwd=cwd,
            dependencies=tuple(compiled),
            metadata=dict(metadata or {}),
        )
        sched.capabilities().check(spec, self.target.scheduler)
        validate = getattr(sched, "validate", None)
        if validate is not None:
            validate(spec)

        retry_policy = retry or self.default_retry_policy
        stored_spec = {
            "argv": list(argv) if argv is not None else None,
            "command": command,
            "script": serde.unstructure(script) if script is not None else None,
            "resources": serde.unstructure(resources),
            "scheduling": serde.unstructure(attrs.evolve(scheduling, dependencies=())),
            "execution": serde.unstructure(execution),
            "dependencies": [serde.unstructure(r) for r in refs],
            "metadata": dict(metadata or {}),
            "job_dir_base": base,
            "job_dir_name": job_dir_name,
        }
        values: dict[str, Any] = {
            "job_id": job_id,
            "cluster_name": self.cluster_name,
            "scheduler": self.target.scheduler,
            "profile_name": self.profile_name,
            "cwd": cwd,
            "job_dir": job_dir,
            "command_type": spec.command_type,
            "command_display": spec.display(),
            "job_name": execution.job_name,
            "metadata_json": json.dumps(dict(metadata or {})),
            "spec_json": json.dumps(stored_spec),
            "retry_json": json.dumps(serde.unstructure(retry_policy)) if retry_policy else None,
            "target_json": self._target_json(),
        }
        if attempt_of is not None:
            values.update(
                root_job_id=attempt_of.root_job_id,
                attempt=attempt_of.attempt + 1,
                previous_attempt_job_id=attempt_of.job_id,
                retry_group_id=attempt_of.retry_group_id or attempt_of.root_job_id,
                profile_name=attempt_of.profile_name,
            )
        return _Submission(spec, values, tuple(dep_rows))

    def _target_json(self) -> str:
        cached = getattr(self, "_target_cache", None)
        if cached is None:
            target = self.target
            options = target.scheduler_options
            cached = json.dumps({
                "scheduler": target.scheduler,
                "host": target.host,
                "scheduler_options": serde.unstructure(options) if options is not None else None,
                "transport_options": getattr(target, "_transport_options", None) or None,
            }, default=str)
            self._target_cache = cached
        return cached

    def _compile_dependencies(self, job_id: str, refs: Sequence[DependencyRef], sched: Any) -> tuple[list[Any], list[JobDependency]]:
        from molq.model import CompiledDependency

        compiled: list[CompiledDependency] = []
        rows: list[JobDependency] = []
        seen: set[tuple[str, str]] = set()
        for ref in refs:
            try:
                upstream = self._latest_attempt(ref.job_id)
            except JobNotFoundError as exc:
                raise ConfigError(f"dependency {ref.condition}: {exc}") from None
            key = (upstream.job_id, ref.condition)
            if key in seen:
                continue
            seen.add(key)
            verdict = _dependency_verdict(ref.condition, upstream)
            if verdict is False:
                raise ConfigError(
                    f"dependency {ref.condition} on {upstream.job_id} can never be satisfied: "
                    f"that job ended {upstream.state.value}"
                )
            native = None
            if verdict is None:
                if upstream.scheduler_job_id is None:
                    raise ConfigError(
                        f"dependency on {upstream.job_id}: that job has no scheduler id yet "
                        f"(state {upstream.state.value}); wait until it is submitted"
                    )
                compiled.append(CompiledDependency(ref.condition, upstream.job_id, upstream.scheduler_job_id))
                native = sched.native_condition(ref.condition, upstream.scheduler_job_id)
            rows.append(JobDependency(job_id, upstream.job_id, ref.condition, native))
        return compiled, rows

    def _launch(self, record: JobRecord, spec: JobSpec) -> str | None:
        """Create the job directory and hand the job to the scheduler; the record exists."""
        transport = self.target.transport
        try:
            parent = record.job_dir.rsplit("/", 1)[0]
            if parent not in self._made_dirs:
                transport.mkdir(parent, parents=True, mode=0o700)
                self._made_dirs.add(parent)
            transport.mkdir(record.job_dir, parents=False, mode=0o700)
            sid = self.scheduler.submit(spec, record.job_dir)
        except TransientSchedulerError as exc:
            # The scheduler may have the job: keep the record, let refresh adopt or fail it.
            self.store.update_job(self.cluster_name, record.job_id, expect_state=JobState.CREATED,
                                  submit_pid=None)
            raise SubmissionUncertainError(
                f"submission of {record.job_id} to {self.cluster_name} is uncertain ({exc}); "
                f"molq will adopt the job on a later refresh if the scheduler accepted it",
                job_id=record.job_id, stderr=exc.stderr) from exc
        except (SchedulerError, TransportError, ConfigError, OSError) as exc:
            message = getattr(exc, "stderr", "") or str(exc)
            self._transition(record, JobState.FAILED, reason=f"submission failed: {message.strip()}",
                             failure_reason=f"submission failed: {message.strip()}", finished_at=time.time())
            if isinstance(exc, SubmitError):
                raise
            raise SubmitError(f"submitting to {self.cluster_name} failed: {message.strip()}",
                              stderr=getattr(exc, "stderr", "")) from exc
        now = time.time()
        tr = self._transition(record, JobState.SUBMITTED, reason=f"accepted by {self.target.scheduler} as {sid}",
                              scheduler_job_id=sid, submitted_at=now)
        if tr is None:
            # A concurrent refresh adopted it first; the scheduler id is the same.
            log.info("job %s was updated concurrently during submission", record.job_id)
        return sid

    # -- refresh -----------------------------------------------------------------------------
    def refresh_jobs(self) -> None:
        """Reconcile every active job of this cluster with the scheduler, and start retries
        that are due. A failed scheduler query changes nothing."""
        light = self.store.list_active_light(self.cluster_name)
        self._has_retry = {r.job_id: has for r, has, _ in light}
        self._missing = {r.job_id: misses for r, _, misses in light}
        active = [r for r, _, _ in light]
        self._all_completed_check = False
        # Records here are partial (a light projection): events wait for one read at the end.
        self._deferred = []
        try:
            self._adopt_orphans([r for r in active if r.state == JobState.CREATED and r.scheduler_job_id is None])
            tracked = [r for r in active if r.scheduler_job_id is not None]
            if tracked:
                self._reconcile(tracked)
        finally:
            self._flush_events()
        self._run_due_retries()
        if self._all_completed_check and self._wants_events():
            if not self.store.list_jobs(self.cluster_name, limit=1) and not self.store.list_pending_retries(self.cluster_name):
                self._emit(EventType.ALL_COMPLETED, None)

    def _tracked(self, record: JobRecord) -> TrackedJob:
        return TrackedJob(record.job_id, record.scheduler_job_id, record.job_dir or "", record.submitted_at)

    def _reconcile(self, records: Sequence[JobRecord]) -> None:
        sched = self.scheduler
        jobs = [self._tracked(r) for r in records]
        try:
            statuses = sched.poll_many(jobs)
        except (SchedulerError, TransportError) as exc:
            log.warning("%s: status query failed, no job changed: %s", self.cluster_name, exc)
            return
        missing = [j for j in jobs if j.job_id not in statuses]
        resolved: dict[str, SchedulerStatus] = {}
        if missing:
            since = min((j.submitted_at for j in missing if j.submitted_at), default=None)
            try:
                resolved = sched.resolve_terminal_many(missing, since=(since - 60) if since else None)
            except (SchedulerError, TransportError) as exc:
                log.warning("%s: final-state query failed, no job changed: %s", self.cluster_name, exc)
                resolved = {}
                missing = []  # without an answer, nobody may count as missing
        by_id = {r.job_id: r for r in records}
        never = {j: st for j, st in statuses.items()
                 if st.dependency_never_satisfied and not st.state.is_terminal}
        if never:
            # Cancel those first, outside the store transaction below.
            try:
                self.scheduler.cancel_many([self._tracked(by_id[j]) for j in never])
            except (SchedulerError, TransportError) as exc:
                log.warning("could not cancel jobs with an unsatisfiable dependency: %s", exc)
                for j in never:
                    statuses.pop(j)
        with self.store.batch():  # one commit for the whole refresh
            for job_id, status in {**statuses, **resolved}.items():
                self._apply(by_id[job_id], status)
            for job in missing:
                if job.job_id in resolved:
                    continue
                self._count_missing(by_id[job.job_id])

    def _count_missing(self, record: JobRecord) -> None:
        internal = self.store.get_internal(self.cluster_name, record.job_id)
        misses = internal["missing_count"] + 1
        since = internal["missing_since"] or time.time()
        if misses >= LOST_AFTER_MISSES and time.time() - since >= LOST_AFTER_SECONDS:
            self._transition(
                record, JobState.LOST,
                reason=f"the scheduler no longer knows job {record.scheduler_job_id} and left no final state",
                failure_reason="lost: the scheduler has no record of the job and no exit code was written",
                finished_at=time.time(), missing_count=misses,
            )
        else:
            self.store.update_job(self.cluster_name, record.job_id, expect_state=record.state,
                                  missing_count=misses, missing_since=since)

    def _apply(self, record: JobRecord, status: SchedulerStatus) -> None:
        fields: dict[str, Any] = {"raw_state": status.raw_state or None}
        if status.dependency_never_satisfied and not status.state.is_terminal:
            # Already cancelled by _reconcile.
            reason = f"dependency can never be satisfied ({status.reason or status.raw_state})"
            self._finish(record, SchedulerStatus(JobState.FAILED, status.raw_state, reason=reason))
            return
        if status.state == record.state:
            if record.raw_state != (status.raw_state or None) or self._missing.get(record.job_id):
                self.store.update_job(self.cluster_name, record.job_id, expect_state=record.state,
                                      raw_state=status.raw_state or None, missing_count=0, missing_since=None)
            return
        if status.state.is_terminal:
            self._finish(record, status)
            return
        if status.state == JobState.RUNNING:
            fields["started_at"] = status.started_at or time.time()
        if status.state == JobState.QUEUED and record.state == JobState.RUNNING:
            fields["started_at"] = None  # requeued
        if status.state in (JobState.SUBMITTED, JobState.CREATED):
            return
        fields["missing_count"] = 0
        fields["missing_since"] = None
        self._transition(record, status.state, reason=status.reason or f"scheduler reports {status.raw_state or status.state.value}", **fields)

    def _finish(self, record: JobRecord, status: SchedulerStatus) -> None:
        now = time.time()
        reason = status.reason
        if status.state == JobState.SUCCEEDED:
            reason = reason or "completed"
        fields: dict[str, Any] = {
            "raw_state": status.raw_state or None,
            "exit_code": status.exit_code,
            "exit_signal": status.exit_signal,
            "finished_at": status.finished_at or now,
            "failure_reason": None if status.state == JobState.SUCCEEDED else (reason or status.state.value),
            "missing_count": 0,
        }
        if status.started_at and not record.started_at:
            fields["started_at"] = status.started_at
        tr = self._transition(record, status.state, reason=reason or status.state.value, **fields)
        if tr is None:
            return
        self._schedule_retry(record.job_id)
        self._all_completed_check = True

    # -- retries -----------------------------------------------------------------------------
    def _retry_policy(self, job_id: str) -> RetryPolicy | None:
        internal = self.store.get_internal(self.cluster_name, job_id)
        if internal["retry"] is None:
            return None
        return serde.structure(internal["retry"], RetryPolicy)

    def _schedule_retry(self, job_id: str) -> None:
        if not getattr(self, "_has_retry", {}).get(job_id, True):
            return
        record = self.store.get_job(self.cluster_name, job_id)
        policy = self._retry_policy(job_id)
        if policy is None or not policy.should_retry(record):
            return
        due = time.time() + policy.backoff.delay(record.attempt)
        self.store.update_job(self.cluster_name, job_id, next_retry_at=due)
        data = {"due_at": due, "attempt": record.attempt + 1}
        if self._deferred is not None:
            self._deferred.append((job_id, None, None, (EventType.JOB_RETRYING, data)))
        else:
            self._emit(EventType.JOB_RETRYING, job_id, record=record, **data)

    def _run_due_retries(self) -> None:
        now = time.time()
        for record in self.store.list_pending_retries(self.cluster_name):
            if record.next_retry_at is None or record.next_retry_at > now:
                continue
            self._resubmit(record)

    def _resubmit(self, failed: JobRecord) -> JobRecord | None:
        internal = self.store.get_internal(self.cluster_name, failed.job_id)
        spec = internal["spec"]
        new_id = uuid.uuid4().hex
        try:
            # Dependencies are kept: they are recompiled against the upstreams' latest attempts.
            deps = tuple(serde.structure(d, DependencyRef) for d in spec["dependencies"])
            scheduling = attrs.evolve(serde.structure(spec["scheduling"], JobScheduling), dependencies=deps)
            sub = self._prepare(
                argv=spec["argv"], command=spec["command"],
                script=serde.structure(spec["script"], Script) if spec["script"] else None,
                resources=serde.structure(spec["resources"], JobResources),
                scheduling=scheduling,
                execution=serde.structure(spec["execution"], JobExecution),
                metadata=spec["metadata"] or None,
                retry=self._retry_policy(failed.job_id),
                after_started=None, after=None, after_failure=None, after_success=None,
                job_dir_name=None, job_id=new_id, attempt_of=failed,
            )
        except ConfigError as exc:
            if self.store.claim_retry(self.cluster_name, failed.job_id, "none"):
                self.store.update_job(self.cluster_name, failed.job_id,
                                      failure_reason=f"{failed.failure_reason}; retry impossible: {exc}")
            return None
        if not self.store.claim_retry(self.cluster_name, failed.job_id, new_id):
            return None  # another process is retrying it
        base = spec.get("job_dir_base")
        if base:
            sub.values["job_dir"] = f"{base.rstrip('/')}/{new_id}"
        record = self.store.insert_job(sub.values, sub.dependencies,
                                       reason=f"retry {failed.attempt + 1} of {failed.root_job_id}")
        try:
            self._launch(record, sub.spec)
        except MolqError as exc:
            log.warning("retry of %s failed to submit: %s", failed.root_job_id, exc)
        return self.store.get_job(self.cluster_name, new_id)

    # -- crash recovery ----------------------------------------------------------------------
    def _adopt_orphans(self, created: Sequence[JobRecord]) -> None:
        if not created:
            return
        host = socket.gethostname()
        orphans = []
        for record in created:
            internal = self.store.get_internal(self.cluster_name, record.job_id)
            pid, shost = internal["submit_pid"], internal["submit_host"]
            age = time.time() - (record.created_at or 0)
            if shost == host and pid is not None:
                if pid == os.getpid() or _pid_alive(pid):
                    if age < 3600:
                        continue  # its submitter is still at work
            elif age < ORPHAN_AGE_SECONDS:
                continue
            orphans.append(record)
        if not orphans:
            return
        try:
            found = self.scheduler.find_adoptable([self._tracked(r) for r in orphans])
        except (SchedulerError, TransportError) as exc:
            log.warning("%s: could not look for interrupted submissions: %s", self.cluster_name, exc)
            return
        for record in orphans:
            sid = found.get(record.job_id)
            if sid is not None:
                self._transition(record, JobState.SUBMITTED, reason=f"adopted {sid} after an interrupted submission",
                                 scheduler_job_id=sid, submitted_at=record.created_at)
            else:
                self._transition(
                    record, JobState.FAILED,
                    reason="submission interrupted before the scheduler accepted the job; it never ran",
                    failure_reason="submission interrupted before the scheduler accepted the job; it never ran",
                    finished_at=time.time(),
                )

    # -- watch and cancel --------------------------------------------------------------------
    def watch_jobs(self, job_ids: Sequence[str] | None = None, timeout: float | None = None,
                   poll_interval: float | None = None) -> list[JobRecord]:
        """Block until the given jobs (default: every active job) and their retries are final.

        Returns the final record of each job's latest attempt, in the order given.
        Raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        if job_ids is None:
            roots = list(dict.fromkeys(r.root_job_id for r in self.store.list_jobs(self.cluster_name)))
            roots += [r.root_job_id for r in self.store.list_pending_retries(self.cluster_name) if r.root_job_id not in roots]
        else:
            roots = [rec.root_job_id for rec in self._get_many(job_ids)]
        deadline = None if timeout is None else time.monotonic() + timeout
        fast = not self.target.transport.is_remote and self.target.scheduler == "local"
        min_interval = poll_interval if poll_interval is not None else (0.005 if fast else 0.25)
        max_interval = poll_interval if poll_interval is not None else (0.5 if fast else 5.0)
        interval = min_interval
        last_states: dict[str, Any] = {}
        done: dict[str, JobRecord] = {}
        while True:
            self.refresh_jobs()
            pending_retry_due: list[float] = []
            open_roots = [r for r in roots if r not in done]
            latest = self.store.latest_attempts(self.cluster_name, open_roots)
            states = {}
            for root in open_roots:
                rec = latest[root]
                states[root] = (rec.job_id, rec.state)
                if rec.is_terminal and rec.next_retry_at is not None and rec.retried_by is None:
                    pending_retry_due.append(rec.next_retry_at)
                elif rec.is_terminal:
                    done[root] = rec
            finals = [done[r] for r in roots if r in done]
            if len(finals) == len(roots):
                return finals
            interval = min_interval if states != last_states else min(interval * 1.5, max_interval)
            last_states = states
            sleep = interval
            if pending_retry_due and len(finals) + len(pending_retry_due) == len(roots):
                sleep = max(min(pending_retry_due) - time.time(), min_interval)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"jobs not finished after {timeout} s")
                sleep = min(sleep, remaining)
            waiter = getattr(self.scheduler, "wait_for_change", None)
            if waiter is not None:
                waiter(sleep)
            else:
                time.sleep(sleep)

    def cancel_job(self, job_id: str) -> None:
        """Cancel the latest active attempt of a job (and any retry it was waiting for).
        A job that already finished keeps its final state."""
        self.cancel_jobs([job_id])

    def cancel_jobs(self, job_ids: Iterable[str]) -> None:
        """Cancel many jobs with one scheduler call."""
        records = self._get_many(list(job_ids))
        by_root = self.store.latest_attempts(self.cluster_name, [r.root_job_id for r in records])
        latest = list({r.root_job_id: by_root.get(r.root_job_id, r) for r in records}.values())
        for rec in latest:
            if rec.is_terminal and rec.next_retry_at is not None and rec.retried_by is None:
                self.store.claim_retry(self.cluster_name, rec.job_id, "cancelled")
        active = [r for r in latest if not r.is_terminal]
        submitted = [r for r in active if r.scheduler_job_id is not None]
        if submitted:
            # Look first: a job that finished meanwhile keeps its real final state.
            self._reconcile(submitted)
        now = self.store.get_jobs(self.cluster_name, [r.job_id for r in active])
        still = [now.get(r.job_id, r) for r in active]
        still = [r for r in still if not r.is_terminal]
        to_cancel = [r for r in still if r.scheduler_job_id is not None]
        if to_cancel:
            self.scheduler.cancel_many([self._tracked(r) for r in to_cancel])
        for rec in still:
            for _ in range(5):
                tr = self._transition(rec, JobState.CANCELLED, reason="cancelled by user",
                                      failure_reason="cancelled by user", finished_at=time.time())
                if tr is not None:
                    break
                rec = self.store.get_job(self.cluster_name, rec.job_id)
                if rec.is_terminal:
                    break

    # -- cleanup and daemon ------------------------------------------------------------------
    def cleanup_jobs(self, dry_run: bool = False, retention_policy: RetentionPolicy | None = None) -> dict[str, list[str]]:
        """Remove old job directories and records per the retention policy.

        Returns ``{"job_dirs": [...removed dirs], "records": [...deleted job ids]}``.
        """
        policy = retention_policy or self.retention_policy
        now = time.time()
        dirs: list[str] = []
        records: list[str] = []
        dir_cutoff = now - policy.keep_job_dirs_for_days * 86400
        rec_cutoff = now - policy.keep_terminal_records_for_days * 86400
        transport = self.target.transport
        for rec in self.store.list_jobs(self.cluster_name, include_terminal=True):
            if not rec.is_terminal or (rec.next_retry_at is not None and rec.retried_by is None):
                continue
            finished = rec.finished_at or rec.updated_at or now
            delete_record = finished < rec_cutoff
            failed = rec.state != JobState.SUCCEEDED
            remove_dir = rec.job_dir and rec.cleaned_at is None and (
                delete_record or (finished < dir_cutoff and not (failed and policy.keep_failed_job_dirs))
            )
            if remove_dir:
                dirs.append(rec.job_dir)  # type: ignore[arg-type]
                if not dry_run:
                    try:
                        transport.remove(rec.job_dir, recursive=True)  # type: ignore[arg-type]
                    except TransportError as exc:
                        log.warning("could not remove %s: %s", rec.job_dir, exc)
                        continue
                    forget = getattr(self.scheduler, "forget", None)
                    if forget is not None and rec.scheduler_job_id:
                        forget(rec.scheduler_job_id)
                    self.store.update_job(self.cluster_name, rec.job_id, cleaned_at=now)
            if delete_record:
                records.append(rec.job_id)
        if records and not dry_run:
            self.store.delete_jobs(self.cluster_name, records)
        return {"job_dirs": dirs, "records": records}

    def run_daemon(self, once: bool = False, interval: float = 5.0, run_cleanup: bool = True,
                   max_iterations: int | None = None) -> None:
        """Reconcile this cluster in a loop (one daemon per cluster and store at a time)."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        lease = f"daemon:{self.cluster_name}"
        ttl = max(interval * 4, 30.0)
        if not self.store.acquire_lease(lease, owner, ttl):
            holder = self.store.lease_owner(lease)
            raise MolqError(f"another molq daemon ({holder[0] if holder else '?'}) already reconciles {self.cluster_name}")
        try:
            iterations = 0
            last_cleanup = 0.0
            while True:
                self.refresh_jobs()
                if run_cleanup and time.time() - last_cleanup > 3600:
                    self.cleanup_jobs()
                    last_cleanup = time.time()
                iterations += 1
                if once or (max_iterations is not None and iterations >= max_iterations):
                    return
                time.sleep(interval)
                if not self.store.acquire_lease(lease, owner, ttl):
                    raise MolqError("the daemon lease was taken over by another process")
        finally:
            self.store.release_lease(lease, owner)


def _dependency_verdict(condition: str, upstream: JobRecord) -> bool | None:
    """True: already satisfied; False: never satisfiable; None: let the scheduler wait."""
    if upstream.is_terminal and upstream.next_retry_at is not None and upstream.retried_by is None:
        return None  # a retry is coming: wait for it
    if not upstream.is_terminal:
        if condition == "after_started" and upstream.started_at is not None:
            return True
        return None
    ok = upstream.state == JobState.SUCCEEDED
    if condition == "after":
        return True
    if condition == "after_success":
        return ok
    if condition == "after_failure":
        return not ok
    # after_started: it ran if it has a start time
    return upstream.started_at is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return True
