"""The engine's context: one cluster, its store and its event outlets.

Every lifecycle operation (submit, refresh, cancel, retry, adopt, watch, daemon) is a function
of this context. :class:`~molq.Submitor` is the thin public front that owns one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs

from molq.cluster import Cluster
from molq.errors import JobNotFoundError, MolqError
from molq.events import EventBus, EventPayload, EventType, events_for_transition
from molq.model import (
    JobRecord,
    JobState,
    RetentionPolicy,
    RetryPolicy,
    StatusTransition,
    SubmitorDefaults,
)
from molq.scheduler import Scheduler, TrackedJob
from molq.store import JobStore

log = logging.getLogger("molq.engine")

__all__ = ["EngineContext", "PendingEvent"]

_RECORD_FIELDS = frozenset(a.name for a in attrs.fields(JobRecord))


@attrs.frozen
class PendingEvent:
    """An event to emit once the records it describes are read back (after a batch)."""

    job_id: str
    old_state: JobState | None
    transition: StatusTransition | None
    event: EventType | None = None
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.define(eq=False)
class EngineContext:
    """What every engine operation works with."""

    target: Cluster
    store: JobStore
    defaults: SubmitorDefaults = attrs.field(factory=SubmitorDefaults)
    jobs_dir: str | None = None
    default_retry_policy: RetryPolicy | None = None
    retention_policy: RetentionPolicy = attrs.field(factory=RetentionPolicy)
    profile_name: str | None = None
    event_bus: EventBus = attrs.field(factory=EventBus)
    _sinks: list[Any] | None = None
    #: Job directories' parents already created by this process.
    made_dirs: set[str] = attrs.field(factory=set)
    #: When LOST records were last re-examined (monotonic), see :mod:`molq.engine.refresh`.
    lost_checked_at: float | None = None
    #: Ended jobs whose usage accounting has not reported yet -> refreshes left to ask it
    #: (see :mod:`molq.engine.refresh`).
    awaiting_usage: dict[str, int] = attrs.field(factory=dict)
    #: The StoredTarget of this context's Cluster, once computed (molq.engine.prepare).
    target_cache: Any = None

    @property
    def cluster_name(self) -> str:
        return self.target.name

    @property
    def scheduler(self) -> Scheduler:
        return self.target.scheduler_impl  # type: ignore[no-any-return]

    # -- events ------------------------------------------------------------------------------
    def wants_events(self) -> bool:
        if self._sinks is None:
            from molq.plugins import get_plugin_manager

            try:
                self._sinks = get_plugin_manager().event_sinks()
            except MolqError as exc:
                log.warning("event sinks unavailable: %s", exc)
                self._sinks = []
        return bool(self._sinks) or self.event_bus.has_handlers()

    def emit(self, event: EventType, job_id: str | None, transition: StatusTransition | None = None,
             record: JobRecord | None = None, **data: Any) -> None:
        payload = EventPayload(event, job_id, transition, record, {"cluster_name": self.cluster_name, **data})
        self.event_bus.emit(event, payload)
        self.wants_events()
        for sink in self._sinks or ():
            try:
                sink.handler(payload)
            except Exception:  # noqa: BLE001 - a sink's failure never breaks the lifecycle
                log.exception("event sink %s failed", sink.name)

    def emit_pending(self, pending: Sequence[PendingEvent]) -> None:
        """Emit events gathered during a batch, with one store read for their records."""
        if not pending:
            return
        records = self.store.get_jobs(self.cluster_name, list(dict.fromkeys(p.job_id for p in pending)))
        for item in pending:
            record = records.get(item.job_id)
            if item.event is not None:
                self.emit(item.event, item.job_id, None, record, **item.data)
                continue
            assert item.transition is not None
            for event in events_for_transition(item.transition.new_state, item.old_state):
                self.emit(event, item.job_id, item.transition, record)

    def transition(self, record: JobRecord, new_state: JobState, reason: str | None = None, *,
                   pending: list[PendingEvent] | None = None, **fields: Any) -> StatusTransition | None:
        """Compare-and-set ``record`` from its state to ``new_state``; events go to ``pending``
        (inside a batch) or out at once, built from the caller's record plus what changed."""
        tr = self.store.transition(self.cluster_name, record.job_id, record.state, new_state, reason=reason, **fields)
        if tr is None or not self.wants_events():
            return tr
        if pending is not None:
            pending.append(PendingEvent(record.job_id, record.state, tr))
            return tr
        known = {k: v for k, v in fields.items() if k in _RECORD_FIELDS}
        updated = attrs.evolve(record, state=new_state, updated_at=tr.timestamp, **known)
        for event in events_for_transition(new_state, record.state):
            self.emit(event, record.job_id, tr, updated)
        return tr

    # -- lookups -----------------------------------------------------------------------------
    def resolve(self, job_id: str) -> str:
        return self.store.resolve_job_id(self.cluster_name, job_id)[1]

    def get_job(self, job_id: str) -> JobRecord:
        return self.store.get_job(self.cluster_name, self.resolve(job_id))

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Records of several ids or unique prefixes, in order: full ids in one query."""
        found = self.store.get_jobs(self.cluster_name, list(dict.fromkeys(job_ids)))
        return [found.get(j) or self.get_job(j) for j in job_ids]

    def latest_attempt(self, job_id: str) -> JobRecord:
        """The latest attempt of the retry family ``job_id`` (any attempt's id or prefix) is in."""
        record = self.get_job(job_id)
        family = self.store.get_retry_family(self.cluster_name, record.root_job_id)
        return family[-1] if family else record

    def latest_or_none(self, job_id: str) -> JobRecord | None:
        try:
            return self.latest_attempt(job_id)
        except JobNotFoundError:
            return None

    @staticmethod
    def tracked(record: JobRecord) -> TrackedJob:
        return TrackedJob(record.job_id, record.scheduler_job_id, record.job_dir or "", record.submitted_at)
