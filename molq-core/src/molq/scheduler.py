"""The Scheduler protocol every scheduler plugin implements.

The lifecycle engine (:class:`~molq.Submitor`) only talks to schedulers through these methods,
and schedulers only touch the cluster through their :class:`~molq.transport.Transport`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from molq.errors import ConfigError, SchedulerError, TransportError
from molq.evidence import CancelOutcome, Observation
from molq.model import (
    CompiledDependency,
    DependencyCondition,
    JobSpec,
    QueueEntry,
    SchedulerCapabilities,
    SchedulerStatus,
)
from molq.pacing import PacingPolicy
from molq.transport import Transport

if TYPE_CHECKING:
    from molq.batch.site_limits import SubmitLimit

__all__ = [
    "Scheduler",
    "TrackedJob",
    "SchedulerOptions",
    "string_map",
    "string_list",
    "optional_name",
    "positive_number",
]


@attrs.frozen
class TrackedJob:
    """What the lifecycle engine tells a scheduler about a job it is following."""

    job_id: str
    scheduler_job_id: str | None
    job_dir: str
    submitted_at: float | None = None


class SchedulerOptions:
    """Marker base class for scheduler-specific option classes (attrs classes)."""


# Converters and validators shared by the option classes of scheduler plugins, so that every
# backend rejects a bad profile value with the same kind of message.


def string_map(name: str) -> Callable[[Any], dict[str, str]]:
    """attrs converter: a mapping of strings to strings (``binaries``, ``env``); None -> {}."""

    def convert(value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a mapping of strings, got {value!r}")
        out = {}
        for key, val in value.items():
            if not isinstance(key, str) or not key or not isinstance(val, str) or not val:
                raise ConfigError(f"{name} must map non-empty strings to non-empty strings, got {key!r}: {val!r}")
            out[key] = val
        return out

    return convert


def string_list(name: str) -> Callable[[Any], tuple[str, ...]]:
    """attrs converter: a list of strings (extra command-line arguments); None -> ()."""

    def convert(value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of arguments (strings, one per argument), got {value!r}")
        return tuple(value)

    return convert


def optional_name(name: str, *, spaces: bool = True) -> Callable[[Any, Any, Any], None]:
    """attrs validator: None, or a non-empty one-line string (without spaces if asked)."""

    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        bad = not isinstance(value, str) or not value.strip() or "\n" in value or "\x00" in value
        if not bad and not spaces:
            bad = any(c.isspace() for c in value)
        if bad:
            extra = "" if spaces else " without spaces"
            raise ConfigError(f"{name} must be a non-empty one-line string{extra}, got {value!r}")

    return check


def positive_number(name: str) -> Callable[[Any, Any, Any], None]:
    """attrs validator: a number greater than zero."""

    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{name} must be a positive number, got {value!r}")

    return check


@runtime_checkable
class Scheduler(Protocol):
    """A batch system (or the local machine) seen through a transport.

    Contract:

    * ``poll_many`` returns an entry for every job the scheduler currently knows as active;
      a job missing from the answer has left the queue. A query that fails raises
      :class:`~molq.errors.SchedulerError` (never an empty answer).
    * ``resolve_terminal_many`` returns the final status of jobs that left the queue, from
      accounting or from the wrapper's exit-code file; jobs without evidence are omitted.
    * ``observe`` is what the lifecycle engine calls: evidence from every source at once,
      telling "unknown to every source" apart from "no answer" (:mod:`molq.evidence`).
      :class:`SchedulerBase` derives it from the two methods above.
    * ``cancel_many`` asks the scheduler to stop jobs and returns what it answered per job
      (:class:`~molq.evidence.CancelOutcome`); the engine records CANCELLED only once the stop
      is confirmed.

    The optional abilities (``validate``, ``wait_for_change``, ``forget``, ``max_time_limit``) have do-nothing
    defaults in :class:`SchedulerBase`, which every implementation should inherit.
    """

    name: str
    transport: Transport
    cheap_status: bool
    host_bound: bool
    #: The cluster's polling limits shared across processes (None: every refresh polls).
    pacing: PacingPolicy | None
    #: Whether ``submit_many`` costs fewer commands than one ``submit`` per job (then the
    #: engine hands it whole batches when commands are expensive: a remote transport).
    bulk_submission: bool
    #: Whether ``submit_many`` packs like jobs into one scheduler array (then the engine hands
    #: it whole batches whatever the transport).
    packs_bulk: bool

    @property
    def submit_in_flight_seconds(self) -> float:
        """How long a submit command may still reach the scheduler after its submitter died."""
        ...

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
        """Submit several jobs whose directories exist; one result (id or error) per item, in
        order. A :class:`~molq.errors.TransientSchedulerError` result means the scheduler may
        hold the job (adoption decides); any other error, that it was not submitted."""
        ...

    def poll_many(self, jobs: Sequence[TrackedJob]) -> dict[str, SchedulerStatus]: ...

    def resolve_terminal_many(
        self, jobs: Sequence[TrackedJob], *, since: float | None = None
    ) -> dict[str, SchedulerStatus]: ...

    def observe(self, jobs: Sequence[TrackedJob], *, since: float | None = None) -> Observation: ...

    def cancel_many(self, jobs: Sequence[TrackedJob]) -> Mapping[str, CancelOutcome] | None: ...

    def validate(self, spec: JobSpec) -> None:
        """Refuse (ConfigError) a job this scheduler cannot run faithfully, before it is stored."""
        ...

    def max_time_limit(self, partition: str | None) -> float | None:
        """The longest time limit (seconds) a job in ``partition`` (None: the default one) may
        ask for, as the scheduler tells it; None: no limit told. A grown retry stops there."""
        ...

    def render_script(self, spec: JobSpec, job_dir: str) -> str:
        """The job script exactly as :meth:`submit` would hand it over (``--dry-run``)."""
        ...

    def wait_for_change(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, returning early when the scheduler knows a job changed."""
        ...

    def forget(self, scheduler_job_id: str) -> None:
        """Drop what the scheduler keeps about a job whose directory was cleaned up."""
        ...

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
    #: Whether a status query costs next to nothing (no scheduler command: the local
    #: scheduler on this host), so waiting loops may poll often.
    cheap_status: bool = False
    #: Whether the scheduler's state lives on the host that submitted the job and nowhere
    #: else (the local scheduler on this host): only that host may reconcile, retry or cancel
    #: its jobs. Another host sharing the store cannot see them, so must never count a miss.
    host_bound: bool = False
    #: The cluster's polling limits, shared by every process on the store
    #: (:mod:`molq.engine.shared_poll`); None: every refresh polls (cheap or local schedulers).
    pacing: PacingPolicy | None = None
    #: Whether :meth:`submit_many` costs fewer commands than a loop of :meth:`submit`.
    bulk_submission: bool = False
    #: Whether :meth:`submit_many` packs like jobs into one scheduler array.
    packs_bulk: bool = False

    @property
    def submit_in_flight_seconds(self) -> float:
        """How long after its submitter died a submit command may still reach the scheduler (a
        killed process does not take its child sbatch with it); 0 when submission is in-process."""
        return 0.0

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

    def observe(self, jobs: Sequence[TrackedJob], *, since: float | None = None) -> Observation:
        """Evidence from :meth:`poll_many` and :meth:`resolve_terminal_many`: a job neither
        knows is absent (both answered); a failed query is reported, its jobs get no evidence."""
        if not jobs:
            return Observation()
        try:
            statuses = dict(self.poll_many(jobs))  # type: ignore[attr-defined]
        except (SchedulerError, TransportError) as exc:
            return Observation(problems=(f"{self.name} status query failed: {exc}",))
        left = [j for j in jobs if j.job_id not in statuses]
        if not left:
            return Observation(statuses)
        try:
            final = self.resolve_terminal_many(left, since=since)  # type: ignore[attr-defined]
        except (SchedulerError, TransportError) as exc:
            return Observation(statuses, problems=(f"{self.name} final-state query failed: {exc}",))
        statuses.update(final)
        return Observation(statuses, frozenset(j.job_id for j in left if j.job_id not in final))

    def validate(self, spec: JobSpec) -> None:
        return None

    def max_time_limit(self, partition: str | None) -> float | None:
        return None

    def submit_limit(self, account: str | None, qos: str | None) -> SubmitLimit | None:
        """How many jobs the site lets the user have submitted at once for a job of ``account``
        and ``qos`` (None: none known); jobs beyond it wait in molq (:mod:`molq.engine.room`).
        Optional: the engine asks only schedulers that have it."""
        return None

    def render_script(self, spec: JobSpec, job_dir: str) -> str:
        raise ConfigError(f"the {self.name!r} scheduler cannot show its job script")

    def wait_for_change(self, timeout: float) -> None:
        time.sleep(max(timeout, 0.0))

    def forget(self, scheduler_job_id: str) -> None:
        return None

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
