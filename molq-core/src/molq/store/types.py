"""Domain values that cross the :class:`~molq.store.protocol.JobStore` interface: what a
submission stores, what a refresh reads back. No JSON string and no column dict crosses it;
the SQL store encodes and decodes them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from molq.model import JobDependency, JobRecord, RetryPolicy

__all__ = ["ActiveJob", "JobInternals", "NewSubmission", "StoredTarget"]


def _frozen_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


def _deps(value: Iterable[JobDependency]) -> tuple[JobDependency, ...]:
    return tuple(value)


@attrs.frozen
class StoredTarget:
    """How to rebuild the :class:`~molq.cluster.Cluster` a job was submitted to."""

    scheduler: str
    host: str | None = None
    scheduler_options: Mapping[str, Any] | None = None
    transport_options: Mapping[str, Any] | None = None
    #: A transport plugin chosen by name (None: ssh with a host, else local).
    transport: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler, "host": self.host,
                "scheduler_options": dict(self.scheduler_options) if self.scheduler_options is not None else None,
                "transport": self.transport,
                "transport_options": dict(self.transport_options) if self.transport_options else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredTarget:
        return cls(scheduler=data["scheduler"], host=data.get("host"),
                   scheduler_options=data.get("scheduler_options"),
                   transport_options=data.get("transport_options"),
                   transport=data.get("transport"))


@attrs.frozen
class NewSubmission:
    """A job about to be recorded (state ``created``), with everything the store keeps of it.

    ``spec`` is the submission as the engine wants to rebuild it for a retry (a plain mapping
    of JSON-compatible values; its shape is the engine's, not the store's). ``root_job_id``
    defaults to ``job_id`` (a first attempt)."""

    job_id: str
    cluster_name: str
    scheduler: str
    command_type: Literal["argv", "command", "script"]
    command_display: str = ""
    job_name: str | None = None
    profile_name: str | None = None
    cwd: str | None = None
    job_dir: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_dict)
    spec: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)
    retry: RetryPolicy | None = None
    target: StoredTarget | None = None
    root_job_id: str | None = None
    attempt: int = 1
    previous_attempt_job_id: str | None = None
    retry_group_id: str | None = None
    dependencies: tuple[JobDependency, ...] = attrs.field(default=(), converter=_deps)
    reason: str | None = None
    #: Why molq holds the job back instead of submitting it (see molq.engine.hold).
    held: str | None = None


@attrs.frozen
class JobInternals:
    """What the store keeps of a job beyond its :class:`~molq.model.JobRecord`."""

    spec: Mapping[str, Any]
    retry: RetryPolicy | None
    target: StoredTarget | None
    missing_count: int = 0
    missing_since: float | None = None
    submit_host: str | None = None
    submit_pid: int | None = None
    cancel_requested_at: float | None = None
    confirmed_at: float | None = None
    held: str | None = None


#: The ``held`` column of a held job while one process releases it (then ``<host>:<pid>``).
RELEASING = "releasing:"


@attrs.frozen
class ActiveJob:
    """An active job as a refresh needs it: the record (without metadata) and its counters."""

    record: JobRecord
    has_retry: bool
    missing_count: int = 0
    missing_since: float | None = None
    submit_host: str | None = None
    submit_pid: int | None = None
    cancel_requested_at: float | None = None
    confirmed_at: float | None = None
    held: str | None = None
