"""Scheduler-facing types: the resolved :class:`JobSpec` a scheduler receives, what a scheduler
can honour (:class:`SchedulerCapabilities`) and what it reports (:class:`SchedulerStatus`)."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from molq._states import JobState, SubState, sub_state_or_none
from molq.causes import EndCause, to_cause
from molq.errors import ConfigError
from molq.model.submission import (
    DEPENDENCY_CONDITIONS,
    DependencyCondition,
    JobExecution,
    JobResources,
    JobScheduling,
    Script,
)
from molq.usage import Usage

# Fields a scheduler may or may not honour, named as users write them.
CAPABILITY_FIELDS: dict[str, str] = {
    "cpu_count": "resources.cpu_count",
    "memory": "resources.memory",
    "gpu_count": "resources.gpu_count",
    "gpu_type": "resources.gpu_type",
    "time_limit": "resources.time_limit",
    "partition": "scheduling.partition",
    "account": "scheduling.account",
    "priority": "scheduling.priority",
    "dependency": "scheduling.dependency",
    "dependencies": "scheduling.dependencies",
    "node_count": "scheduling.node_count",
    "exclusive_node": "scheduling.exclusive_node",
    "array_spec": "scheduling.array_spec",
    "email": "scheduling.email",
    "qos": "scheduling.qos",
    "reservation": "scheduling.reservation",
    "rerunnable": "scheduling.rerunnable",
    "extra_directives": "scheduling.extra_directives",
    "job_name": "execution.job_name",
    "output_file": "execution.output_file",
    "error_file": "execution.error_file",
    "env": "execution.env",
    "cwd": "execution.cwd",
}


@attrs.frozen
class SchedulerCapabilities:
    """Which submission fields a scheduler honours. Anything else is refused at submit time
    with a :class:`ConfigError` naming the field and the scheduler."""

    supported: frozenset[str] = frozenset(CAPABILITY_FIELDS)
    dependency_conditions: frozenset[str] = frozenset(DEPENDENCY_CONDITIONS)

    @classmethod
    def all_except(cls, *fields: str, **kwargs: Any) -> SchedulerCapabilities:
        unknown = set(fields) - set(CAPABILITY_FIELDS)
        if unknown:
            raise ValueError(f"unknown capability fields: {sorted(unknown)}")
        return cls(supported=frozenset(CAPABILITY_FIELDS) - set(fields), **kwargs)

    def supports(self, field: str) -> bool:
        return field in self.supported

    def check(self, spec: JobSpec, scheduler: str) -> None:
        """Raise :class:`ConfigError` for the first field of ``spec`` this scheduler cannot honour."""
        used = spec.used_fields()
        for field in CAPABILITY_FIELDS:
            if field in used and field not in self.supported:
                raise ConfigError(
                    f"{CAPABILITY_FIELDS[field]} is not supported by the {scheduler!r} scheduler"
                )
        for dep in spec.dependencies:
            if dep.condition not in self.dependency_conditions:
                raise ConfigError(
                    f"dependency condition {dep.condition!r} is not supported by the "
                    f"{scheduler!r} scheduler"
                )


@attrs.frozen
class SchedulerStatus:
    """What a scheduler says about one job: a molq state plus the native details, and for a
    live job its ``sub_state`` (held, suspended...) with the scheduler's ``sub_state_reason``."""

    state: JobState
    raw_state: str = ""
    exit_code: int | None = None
    exit_signal: int | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: The job waits on a dependency that can never be satisfied (e.g. SLURM's
    #: ``DependencyNeverSatisfied``): the engine cancels it and records why.
    dependency_never_satisfied: bool = False
    #: Why a terminal job ended, from the backend's own evidence (None: derive it from the
    #: state and exit status, see :func:`molq.causes.cause_from_exit`).
    end_cause: EndCause | None = attrs.field(default=None, converter=to_cause)
    #: What the job used, where the scheduler reports it.
    usage: Usage | None = attrs.field(default=None, hash=False)
    #: Held, suspended, requeued, waiting... beside ``state`` (None: nothing particular).
    sub_state: SubState | None = attrs.field(default=None, converter=sub_state_or_none)
    #: The scheduler's own reason for ``sub_state`` (e.g. SLURM's ``JobHeldUser``).
    sub_state_reason: str | None = None


# The seed API calls the terminal answer of a scheduler a TerminalStatus.
TerminalStatus = SchedulerStatus


@attrs.frozen
class CompiledDependency:
    """A dependency resolved to the upstream's scheduler id."""

    condition: DependencyCondition
    job_id: str
    scheduler_job_id: str


@attrs.frozen
class JobSpec:
    """A fully resolved submission, as a scheduler sees it.

    Built by :class:`~molq.Submitor` after defaults are merged and input validated.
    """

    job_id: str
    command_type: Literal["argv", "command", "script"]
    argv: tuple[str, ...] | None = None
    command: str | None = None
    script: Script | None = None
    resources: JobResources = JobResources()
    scheduling: JobScheduling = JobScheduling()
    execution: JobExecution = JobExecution()
    cwd: str | None = None
    dependencies: tuple[CompiledDependency, ...] = ()
    metadata: dict[str, str] = attrs.field(factory=dict, hash=False)

    @property
    def tag(self) -> str:
        """The marker molq attaches to the scheduler job (name or comment) for adoption."""
        return f"molq-{self.job_id}"

    @property
    def name(self) -> str:
        """The job name shown by the scheduler."""
        return self.execution.job_name or f"molq-{self.job_id[:8]}"

    def used_fields(self) -> set[str]:
        used: set[str] = set()
        for obj in (self.resources, self.scheduling, self.execution):
            for a in attrs.fields(type(obj)):
                if not a.init:  # bookkeeping such as JobScheduling._given, not a request
                    continue
                value = getattr(obj, a.name)
                if value is None or value is False or value == () or value == {}:
                    continue
                used.add(a.name)
        if self.dependencies:
            used.add("dependencies")
        return used

    def display(self) -> str:
        """A one-line human rendering of what runs."""
        import shlex

        if self.argv is not None:
            return shlex.join(self.argv)
        if self.command is not None:
            return self.command
        assert self.script is not None
        if self.script.variant == "path":
            return f"script {self.script.file_path}"
        if self.script.file_path:
            return f"script {self.script.file_path} (copied at submission)"
        first = next((ln for ln in (self.script.text or "").splitlines() if ln.strip()), "")
        return f"inline script: {first}"
