"""The Scheduler protocol every scheduler plugin implements.

The lifecycle engine (:class:`~molq.Submitor`) only talks to schedulers through these methods,
and schedulers only touch the cluster through their :class:`~molq.transport.Transport`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
)
from molq.transport import Transport

__all__ = ["Scheduler", "TrackedJob", "SchedulerOptions"]


@attrs.frozen
class TrackedJob:
    """What the lifecycle engine tells a scheduler about a job it is following."""

    job_id: str
    scheduler_job_id: str | None
    job_dir: str
    submitted_at: float | None = None


class SchedulerOptions:
    """Marker base class for scheduler-specific option classes (attrs classes)."""


@runtime_checkable
class Scheduler(Protocol):
    """A batch system (or the local machine) seen through a transport.

    Contract:

    * ``poll_many`` returns an entry for every job the scheduler currently knows as active;
      a job missing from the answer has left the queue. A query that fails raises
      :class:`~molq.errors.SchedulerError` (never an empty answer).
    * ``resolve_terminal_many`` returns the final status of jobs that left the queue, from
      accounting or from the wrapper's exit-code file; jobs without evidence are omitted.
    """

    name: str
    transport: Transport

    def capabilities(self) -> SchedulerCapabilities: ...

    def compile_dependencies(self, deps: Sequence[CompiledDependency]) -> str | None:
        """The scheduler-native dependency expression (``afterok:12:13``), or None."""
        ...

    def native_condition(self, condition: DependencyCondition, scheduler_job_id: str) -> str:
        """One dependency edge in native syntax (stored on the dependency row)."""
        ...

    def submit(self, spec: JobSpec, job_dir: str) -> str:
        """Write the job script into ``job_dir`` and submit it; return the scheduler job id."""
        ...

    def submit_many(self, items: Sequence[tuple[JobSpec, str]]) -> list[str | BaseException]:
        """Submit several jobs; one result (id or error) per item, in order."""
        ...

    def poll_many(self, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]: ...

    def resolve_terminal_many(
        self, jobs: Sequence[TrackedJob], *, since: float | None = None
    ) -> dict[str, SchedulerStatus]: ...

    def cancel_many(self, jobs: Sequence[TrackedJob]) -> None: ...

    def find_adoptable(self, jobs: Sequence[TrackedJob]) -> dict[str, str]:
        """For jobs whose submission was interrupted: molq job id -> scheduler job id of a
        scheduler job tagged with that molq id."""
        ...

    def list_queue(self, *, user: str | None = None) -> list[QueueEntry]: ...

    # Single-job conveniences from the seed API
    def poll(self, job: TrackedJob) -> SchedulerStatus | None: ...
    def cancel(self, job: TrackedJob) -> None: ...
    def resolve_terminal(self, job: TrackedJob) -> SchedulerStatus | None: ...


class SchedulerBase:
    """Single-job conveniences and defaults shared by every scheduler implementation."""

    name = "base"
    transport: Transport

    def submit_many(self, items: Sequence[tuple[JobSpec, str]]) -> list[str | BaseException]:
        out: list[str | BaseException] = []
        for spec, job_dir in items:
            try:
                out.append(self.submit(spec, job_dir))  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - reported per item
                out.append(exc)
        return out

    def poll(self, job: TrackedJob) -> SchedulerStatus | None:
        return self.poll_many([job]).get(job.job_id)  # type: ignore[attr-defined]

    def resolve_terminal(self, job: TrackedJob) -> SchedulerStatus | None:
        return self.resolve_terminal_many([job]).get(job.job_id)  # type: ignore[attr-defined]

    def cancel(self, job: TrackedJob) -> None:
        self.cancel_many([job])  # type: ignore[attr-defined]

    def find_adoptable(self, jobs: Sequence[TrackedJob]) -> dict[str, str]:
        return {}

    def list_queue(self, *, user: str | None = None) -> list[QueueEntry]:
        return []


def status_by_job(
    jobs: Sequence[TrackedJob], by_scheduler_id: Mapping[str, SchedulerStatus]
) -> dict[str, SchedulerStatus]:
    """Re-key a scheduler-id answer by molq job id."""
    out = {}
    for job in jobs:
        if job.scheduler_job_id is not None and job.scheduler_job_id in by_scheduler_id:
            out[job.job_id] = by_scheduler_id[job.scheduler_job_id]
    return out
