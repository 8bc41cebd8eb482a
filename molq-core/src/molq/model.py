"""The molq data model: immutable values describing jobs, their resources and their history.

Every class is a frozen attrs class. :mod:`molq.serde` turns them into plain data for the store
and for TOML profiles.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs

# JobState lives in its own small module so that `molq list` can read records without
# importing this one (defining the attrs classes below costs tens of milliseconds).
from molq._states import ACTIVE_STATES, TERMINAL_STATES, JobState
from molq.causes import EndCause, parse_causes, to_cause
from molq.errors import ConfigError
from molq.retry_rules import Grow, Resubmit, plan_retry
from molq.usage import Usage, to_usage

__all__ = [
    "DependencyCondition",
    "DEPENDENCY_CONDITIONS",
    "Memory",
    "Duration",
    "Script",
    "JobResources",
    "JobScheduling",
    "JobExecution",
    "DependencyRef",
    "JobState",
    "TERMINAL_STATES",
    "ACTIVE_STATES",
    "JobRecord",
    "StatusTransition",
    "JobDependency",
    "QueueEntry",
    "RetryBackoff",
    "RetryPolicy",
    "RetentionPolicy",
    "SubmitorDefaults",
    "SchedulerCapabilities",
    "SchedulerStatus",
    "TerminalStatus",
    "JobSpec",
]

DependencyCondition = Literal["after_success", "after_failure", "after_started", "after"]
DEPENDENCY_CONDITIONS: tuple[str, ...] = ("after_success", "after_failure", "after_started", "after")


# --------------------------------------------------------------------------------------------
# Quantities


_MEMORY_UNITS = {
    "": None,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _render_binary(nbytes: int, units: list[tuple[str, int]], smallest: tuple[str, int]) -> str:
    """Render ``nbytes`` in the largest unit that divides it exactly, else ceil in ``smallest``."""
    for suffix, size in units:
        if nbytes % size == 0:
            return f"{nbytes // size}{suffix}"
    suffix, size = smallest
    return f"{math.ceil(nbytes / size)}{suffix}"


@attrs.frozen(order=True)
class Memory:
    """An amount of memory, stored as bytes (binary units: ``1G`` is 1024**3 bytes).

    >>> Memory.parse("32G") == Memory.gb(32)
    True
    >>> Memory.parse("1536MB").to_slurm()
    '1536M'
    """

    bytes: int = attrs.field()

    @bytes.validator
    def _check(self, _attr: Any, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"memory must be an integer number of bytes, got {value!r}")
        if value <= 0:
            raise ConfigError(f"memory must be positive, got {value} bytes")

    @classmethod
    def kb(cls, n: float) -> Memory:
        return cls(math.ceil(n * 1024))

    @classmethod
    def mb(cls, n: float) -> Memory:
        return cls(math.ceil(n * 1024**2))

    @classmethod
    def gb(cls, n: float) -> Memory:
        return cls(math.ceil(n * 1024**3))

    @classmethod
    def tb(cls, n: float) -> Memory:
        return cls(math.ceil(n * 1024**4))

    @classmethod
    def parse(cls, text: str | int | Memory) -> Memory:
        """Parse ``"32G"``, ``"512MB"``, ``"1.5GiB"``, ``"800K"``. A bare number is rejected
        because schedulers disagree on its unit."""
        if isinstance(text, Memory):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(text)
        if not isinstance(text, str):
            raise ConfigError(f"memory must be a string such as '4G', got {text!r}")
        match = _MEMORY_RE.match(text)
        if not match:
            raise ConfigError(f"cannot parse memory {text!r}; write e.g. '512M', '4G' or '1.5GB'")
        number, unit = match.groups()
        unit_l = unit.lower()
        if unit_l not in _MEMORY_UNITS:
            raise ConfigError(
                f"unknown memory unit {unit!r} in {text!r}; use K, M, G or T (optionally with B)"
            )
        size = _MEMORY_UNITS[unit_l]
        if size is None:
            raise ConfigError(
                f"memory {text!r} has no unit; write e.g. '{number}M' or '{number}G'"
            )
        value = math.ceil(float(number) * size)
        if value <= 0:
            raise ConfigError(f"memory must be positive, got {text!r}")
        return cls(value)

    def to_slurm(self) -> str:
        """``--mem`` value: the largest of T/G/M that is exact, else K (SLURM's smallest unit)."""
        return _render_binary(
            self.bytes, [("T", 1024**4), ("G", 1024**3), ("M", 1024**2)], ("K", 1024)
        )

    def to_pbs(self) -> str:
        """PBS size: ``32gb``, ``1536mb``, ``800kb`` (lower-case units, as PBS documents them)."""
        return _render_binary(
            self.bytes,
            [("tb", 1024**4), ("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)],
            ("kb", 1024),
        )

    def to_lsf_kb(self) -> int:
        """Kilobytes, rounded up (LSF's default ``LSF_UNIT_FOR_LIMITS``)."""
        return math.ceil(self.bytes / 1024)

    def to_unit(self, unit: str) -> int:
        """Whole ``unit`` s (``KB``, ``MB``, ``GB``, ``TB``), rounded up."""
        size = _MEMORY_UNITS.get(unit.lower())
        if not size:
            raise ConfigError(f"unknown memory unit {unit!r}; use KB, MB, GB or TB")
        return math.ceil(self.bytes / size)

    def __str__(self) -> str:
        return self.to_slurm()


_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@attrs.frozen(order=True)
class Duration:
    """A length of time, stored as whole seconds.

    >>> Duration.parse("2h30m").seconds
    9000
    >>> Duration.parse("1-02:00:00").to_slurm()
    '1-02:00:00'
    """

    seconds: int = attrs.field()

    @seconds.validator
    def _check(self, _attr: Any, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"duration must be an integer number of seconds, got {value!r}")
        if value <= 0:
            raise ConfigError(f"duration must be positive, got {value} seconds")

    @classmethod
    def minutes(cls, n: float) -> Duration:
        return cls(math.ceil(n * 60))

    @classmethod
    def hours(cls, n: float) -> Duration:
        return cls(math.ceil(n * 3600))

    @classmethod
    def parse(cls, text: str | int | Duration) -> Duration:
        """Parse ``"2h30m"``, ``"90s"``, ``"1d"``, ``"04:00:00"``, ``"30:00"`` (MM:SS) or
        SLURM's ``"1-02:00:00"``. A bare number is rejected because its unit is ambiguous."""
        if isinstance(text, Duration):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(text)
        if not isinstance(text, str):
            raise ConfigError(f"duration must be a string such as '2h', got {text!r}")
        s = text.strip()
        if not s:
            raise ConfigError("duration is empty")
        if re.fullmatch(r"\d+(\.\d+)?", s):
            raise ConfigError(
                f"duration {text!r} has no unit; write e.g. '{s}m', '{s}h' or 'HH:MM:SS'"
            )
        clock = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
        if clock and (":" in s or "-" in s):
            days, a, b, c = clock.groups()
            parts = [int(x) for x in (a, b, c) if x is not None]
            # Every field after the leading one is a clock field and must be in range. sbatch
            # itself would turn '10:70' into 670 s, but a field over 59 is far more likely a typo
            # than a wish, and PBS and LSF spell limits differently: refuse it here.
            names: tuple[str, ...] = ("hours", "minutes", "seconds")
            if days is not None:
                bounded = list(zip(names, parts, (23, 59, 59)))
            else:
                names = names[-len(parts):]
                bounded = list(zip(names[1:], parts[1:], (59, 59)))
            for label, value, limit in bounded:
                if value > limit:
                    raise ConfigError(f"duration {text!r}: {label} must be at most {limit}, got {value}")
            if days is not None:
                # SLURM: days-hours[:minutes[:seconds]]
                parts += [0] * (3 - len(parts))
                h, m, sec = parts
                total = int(days) * 86400 + h * 3600 + m * 60 + sec
            elif len(parts) == 3:
                h, m, sec = parts
                total = h * 3600 + m * 60 + sec
            else:
                m, sec = parts
                total = m * 60 + sec
            if total <= 0:
                raise ConfigError(f"duration must be positive, got {text!r}")
            return cls(total)
        pos = 0
        total_f = 0.0
        for match in _DURATION_PART_RE.finditer(s):
            if s[pos : match.start()].strip():
                break
            total_f += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
            pos = match.end()
        if pos == 0 or s[pos:].strip():
            raise ConfigError(
                f"cannot parse duration {text!r}; write e.g. '90s', '2h30m', '1d' or '04:00:00'"
            )
        total = math.ceil(total_f)
        if total <= 0:
            raise ConfigError(f"duration must be positive, got {text!r}")
        return cls(total)

    def _hms(self) -> tuple[int, int, int]:
        h, rem = divmod(self.seconds, 3600)
        m, s = divmod(rem, 60)
        return h, m, s

    def to_slurm(self) -> str:
        """``--time`` value: ``HH:MM:SS`` or ``D-HH:MM:SS`` from one day on."""
        d, rem = divmod(self.seconds, 86400)
        h, rem = divmod(rem, 3600)
        m, s = divmod(rem, 60)
        if d:
            return f"{d}-{h:02d}:{m:02d}:{s:02d}"
        return f"{h:02d}:{m:02d}:{s:02d}"

    def to_pbs(self) -> str:
        """``walltime`` value: ``HH:MM:SS`` (hours may exceed 24)."""
        h, m, s = self._hms()
        return f"{h:02d}:{m:02d}:{s:02d}"

    def to_lsf_minutes(self) -> int:
        """Whole minutes, rounded up (LSF ``-W`` takes minutes)."""
        return math.ceil(self.seconds / 60)

    def __str__(self) -> str:
        return self.to_slurm()


# --------------------------------------------------------------------------------------------
# Submission


@attrs.frozen
class Script:
    """What a job runs when it is a script rather than a command.

    ``Script.inline(text)`` embeds the text; ``Script.path(p)`` runs an existing file
    (on the cluster's filesystem).
    """

    variant: Literal["inline", "path"]
    text: str | None = None
    file_path: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.variant == "inline":
            if not isinstance(self.text, str) or not self.text.strip():
                raise ConfigError("Script.inline needs non-empty text")
        elif self.variant == "path":
            if not self.file_path:
                raise ConfigError("Script.path needs a file path")
        else:
            raise ConfigError(f"Script variant must be 'inline' or 'path', got {self.variant!r}")

    @classmethod
    def inline(cls, text: str, *, name: str | None = None) -> Script:
        """``text`` embedded in the job; ``name`` (e.g. the file it was read from) is only
        shown to people."""
        return cls("inline", text=text, file_path=name)

    @classmethod
    def path(cls, path: str | Path) -> Script:
        return cls("path", file_path=str(path))


def _positive_int(name: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if value <= 0:
            raise ConfigError(f"{name} must be at least 1, got {value}")

    return check


def _opt_memory(value: Any) -> Memory | None:
    return None if value is None else Memory.parse(value)


def _opt_duration(value: Any) -> Duration | None:
    return None if value is None else Duration.parse(value)


def _opt_str(name: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
        if "\n" in value or "\x00" in value:
            raise ConfigError(f"{name} must not contain newlines or NUL bytes: {value!r}")

    return check


@attrs.frozen
class JobResources:
    """What a job needs: CPUs (per task), memory, GPUs and a time limit.

    Strings are accepted and parsed: ``JobResources(memory="4G", time_limit="2h")``.
    """

    cpu_count: int | None = attrs.field(default=None, validator=_positive_int("cpu_count"))
    memory: Memory | None = attrs.field(default=None, converter=_opt_memory)
    gpu_count: int | None = attrs.field(default=None, validator=_positive_int("gpu_count"))
    gpu_type: str | None = attrs.field(default=None, validator=_opt_str("gpu_type"))
    time_limit: Duration | None = attrs.field(default=None, converter=_opt_duration)

    def __attrs_post_init__(self) -> None:
        if self.gpu_type is not None and self.gpu_count is None:
            raise ConfigError("gpu_type needs gpu_count (how many GPUs of that type)")


@attrs.frozen
class DependencyRef:
    """One upstream job (by molq job id) and the condition to wait for."""

    job_id: str = attrs.field()
    condition: DependencyCondition = "after_success"

    @job_id.validator
    def _check_id(self, _attr: Any, value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"dependency job id must be a non-empty string, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.condition not in DEPENDENCY_CONDITIONS:
            raise ConfigError(
                f"unknown dependency condition {self.condition!r}; "
                f"use one of {', '.join(DEPENDENCY_CONDITIONS)}"
            )


def _deps_tuple(value: Any) -> tuple[DependencyRef, ...]:
    if value is None:
        return ()
    out = []
    for item in value:
        if isinstance(item, DependencyRef):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(DependencyRef(item["job_id"], item.get("condition", "after_success")))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            out.append(DependencyRef(item[0], item[1]))
        else:
            raise ConfigError(f"cannot read dependency {item!r}; use DependencyRef(job_id, condition)")
    return tuple(out)


_ARRAY_RE = re.compile(r"^\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?$")


_Cls = TypeVar("_Cls", bound=type)


def _remember_given(cls: _Cls) -> _Cls:
    """Record which constructor arguments were passed, in the private ``_given`` field.

    A field whose default is not None (``exclusive_node=False``, ``dependencies=()``) cannot tell
    "left out" from "set to the default" by its value, and :func:`merge_onto_default` needs that
    to let a job switch off a default. ``attrs.evolve`` passes every field, so an evolved
    value counts all its fields as given.
    """
    init = cls.__init__  # type: ignore[misc]
    names = tuple(f.alias for f in attrs.fields(cls) if f.init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        object.__setattr__(self, "_given", frozenset(names[: len(args)]).union(kwargs))

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


@_remember_given
@attrs.frozen
class JobScheduling:
    """Where and when a job runs: partition, account, dependencies, arrays...

    ``dependency`` (a raw scheduler string) and ``dependencies`` (molq ids) are mutually exclusive.
    """

    partition: str | None = attrs.field(default=None, validator=_opt_str("partition"))
    account: str | None = attrs.field(default=None, validator=_opt_str("account"))
    priority: str | None = attrs.field(default=None, validator=_opt_str("priority"))
    dependency: str | None = attrs.field(default=None, validator=_opt_str("dependency"))
    dependencies: tuple[DependencyRef, ...] = attrs.field(default=(), converter=_deps_tuple)
    node_count: int | None = attrs.field(default=None, validator=_positive_int("node_count"))
    exclusive_node: bool = False
    array_spec: str | None = attrs.field(default=None, validator=_opt_str("array_spec"))
    email: str | None = attrs.field(default=None, validator=_opt_str("email"))
    qos: str | None = attrs.field(default=None, validator=_opt_str("qos"))
    reservation: str | None = attrs.field(default=None, validator=_opt_str("reservation"))
    # Names of the arguments given to the constructor (see _remember_given); not part of the value.
    _given: frozenset[str] = attrs.field(init=False, factory=frozenset, eq=False, repr=False, hash=False)

    def __attrs_post_init__(self) -> None:
        if self.dependency is not None and self.dependencies:
            raise ConfigError(
                "JobScheduling.dependency (raw scheduler string) and "
                "JobScheduling.dependencies (molq job ids) are mutually exclusive"
            )
        if self.array_spec is not None and not _ARRAY_RE.match(self.array_spec.replace(" ", "")):
            raise ConfigError(
                f"cannot parse array_spec {self.array_spec!r}; write e.g. '1-10', '1-10%2' or '1,3,5'"
            )

    @property
    def queue(self) -> str | None:
        """Deprecated alias of :attr:`partition`."""
        return self.partition


#: Sources (config files, stores) already warned about the legacy 'queue' key in this process.
_LEGACY_QUEUE_WARNED: set[str] = set()


def upgrade_legacy_scheduling(data: Any, *, source: str) -> Any:
    """Scheduling data as loaded from a profile or a stored row, with the legacy ``queue`` key
    (renamed ``partition``) turned into ``partition``.

    Internal to molq's loaders. Warns once per ``source`` (a file, a store) with a
    :class:`DeprecationWarning`; a ``queue`` that contradicts a ``partition`` is a
    :class:`ConfigError`. Anything that is not a mapping with ``queue`` is returned as is.
    """
    if not isinstance(data, Mapping) or "queue" not in data:
        return data
    out = dict(data)
    legacy = out.pop("queue")
    partition = out.get("partition")
    if partition is None:
        out["partition"] = legacy
    elif legacy is not None and legacy != partition:
        raise ConfigError(
            f"{source}: scheduling sets both queue = {legacy!r} and partition = {partition!r}; "
            "'queue' is the old name of 'partition': keep only partition"
        )
    if source not in _LEGACY_QUEUE_WARNED:
        _LEGACY_QUEUE_WARNED.add(source)
        import warnings

        warnings.warn(
            f"{source}: the scheduling key 'queue' is deprecated and will not load in the next "
            "release; write 'partition' instead",
            DeprecationWarning,
            stacklevel=3,
        )
    return out


_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_dict(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"env must be a mapping of names to strings, got {value!r}")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
            raise ConfigError(f"invalid environment variable name {key!r}")
        if not isinstance(val, str):
            raise ConfigError(f"environment variable {key} must be a string, got {val!r}")
        if "\x00" in val:
            raise ConfigError(f"environment variable {key} contains a NUL byte")
        out[key] = val
    return out


def _opt_path_str(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


@attrs.frozen
class JobExecution:
    """How a job runs: environment, working directory, name and output files."""

    env: dict[str, str] | None = attrs.field(default=None, converter=_env_dict, hash=False)
    cwd: str | None = attrs.field(default=None, converter=_opt_path_str)
    job_name: str | None = attrs.field(default=None, validator=_opt_str("job_name"))
    output_file: str | None = attrs.field(default=None, converter=_opt_path_str)
    error_file: str | None = attrs.field(default=None, converter=_opt_path_str)


# --------------------------------------------------------------------------------------------
# State and history


# Legal moves of the state machine; the store refuses anything else.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.CREATED: frozenset(
        {JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING} | TERMINAL_STATES
    ),
    JobState.SUBMITTED: frozenset({JobState.QUEUED, JobState.RUNNING} | TERMINAL_STATES),
    JobState.QUEUED: frozenset({JobState.RUNNING} | TERMINAL_STATES),
    JobState.RUNNING: frozenset({JobState.QUEUED} | TERMINAL_STATES),  # requeue
    # LOST is terminal for users, but late evidence (accounting, exit-code file) may correct it.
    JobState.LOST: frozenset(TERMINAL_STATES - {JobState.LOST}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
}


@attrs.frozen
class StatusTransition:
    """One persisted state change of a job."""

    job_id: str
    old_state: JobState | None
    new_state: JobState
    timestamp: float
    reason: str | None = None


@attrs.frozen
class JobDependency:
    """A persisted dependency edge: ``job_id`` waits for ``dependency_job_id``."""

    job_id: str
    dependency_job_id: str
    dependency_type: DependencyCondition
    scheduler_dependency: str | None = None


@attrs.frozen
class QueueEntry:
    """One row of the scheduler's own queue (``squeue``, ``qstat``, ``bjobs``); may be a job
    that molq did not submit."""

    scheduler_job_id: str
    name: str | None = None
    user: str | None = None
    state: JobState = JobState.QUEUED
    raw_state: str = ""
    partition: str | None = None
    submit_time: float | None = None
    start_time: float | None = None


@attrs.frozen
class JobRecord:
    """Immutable snapshot of a persisted job."""

    job_id: str
    cluster_name: str
    scheduler: str
    state: JobState
    root_job_id: str
    attempt: int = 1
    previous_attempt_job_id: str | None = None
    retry_group_id: str | None = None
    profile_name: str | None = None
    scheduler_job_id: str | None = None
    raw_state: str | None = None
    created_at: float | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    failure_reason: str | None = None
    cwd: str | None = None
    job_dir: str | None = None
    command_type: Literal["argv", "command", "script"] = "argv"
    command_display: str = ""
    job_name: str | None = None
    metadata: dict[str, str] = attrs.field(factory=dict, hash=False)
    next_retry_at: float | None = None
    retried_by: str | None = None
    cleaned_at: float | None = None
    #: Why a terminal job ended (None while active, and for records older than end causes).
    end_cause: EndCause | None = attrs.field(default=None, converter=to_cause)
    #: What it used, where the scheduler reports it.
    usage: Usage | None = attrs.field(default=None, converter=to_usage, hash=False)

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def short_id(self) -> str:
        return self.job_id[:8]


# --------------------------------------------------------------------------------------------
# Policies and defaults


@attrs.frozen
class RetryBackoff:
    """Delay between attempts: fixed, or exponential up to ``maximum_seconds``."""

    mode: Literal["fixed", "exponential"] = "exponential"
    initial_seconds: float = 5.0
    maximum_seconds: float = 300.0
    factor: float = 2.0

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("fixed", "exponential"):
            raise ConfigError(f"backoff mode must be 'fixed' or 'exponential', got {self.mode!r}")
        if self.initial_seconds < 0 or self.maximum_seconds < 0 or self.factor < 1:
            raise ConfigError("backoff seconds must be >= 0 and factor >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if self.mode == "fixed":
            return min(self.initial_seconds, self.maximum_seconds)
        return min(self.initial_seconds * self.factor ** max(attempt - 1, 0), self.maximum_seconds)


def _states_tuple(value: Any) -> tuple[JobState, ...]:
    return tuple(JobState(v) for v in value)


def _opt_int_tuple(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


def _opt_causes(value: Any) -> tuple[EndCause, ...] | None:
    if value is None:
        return None
    try:
        return parse_causes(value)
    except ValueError as exc:
        raise ConfigError(f"retry_on_causes: {exc}") from None


@attrs.frozen
class RetryPolicy:
    """How many attempts a job gets and which outcomes are retried."""

    max_attempts: int = attrs.field(default=1, validator=_positive_int("max_attempts"))
    retry_on_states: tuple[JobState, ...] = attrs.field(
        default=(JobState.FAILED, JobState.TIMED_OUT), converter=_states_tuple
    )
    retry_on_exit_codes: tuple[int, ...] | None = attrs.field(
        default=None, converter=_opt_int_tuple
    )
    backoff: RetryBackoff = RetryBackoff()
    #: Retry exactly these end causes (instead of ``retry_on_states``/``retry_on_exit_codes``).
    retry_on_causes: tuple[EndCause, ...] | None = attrs.field(default=None, converter=_opt_causes)
    #: Per-cause rules (:mod:`molq.retry_rules`): how the next attempt differs, if at all.
    on_out_of_memory: Grow | None = attrs.field(factory=lambda: Grow(memory=1.5, max="64G"))
    on_time_limit: Grow | None = attrs.field(factory=lambda: Grow(time=2.0, max="48h"))
    on_preempted: Resubmit | None = attrs.field(factory=lambda: Resubmit(count_as_attempt=False))
    on_node_failure: Resubmit | None = attrs.field(factory=lambda: Resubmit(count_as_attempt=False))

    def should_retry(self, record: JobRecord, family: tuple[JobRecord, ...] = ()) -> bool:
        """Whether ``record`` gets another attempt (``family``: its retry family, for the
        attempts that did not count); see :func:`molq.retry_rules.plan_retry`."""
        return plan_retry(self, record, family) is not None


@attrs.frozen
class RetentionPolicy:
    """What :meth:`Submitor.cleanup_jobs` keeps."""

    keep_job_dirs_for_days: int = 30
    keep_terminal_records_for_days: int = 90
    keep_failed_job_dirs: bool = True


@attrs.frozen
class SubmitorDefaults:
    """Resources, scheduling and execution merged into every submission of a Submitor."""

    resources: JobResources | None = None
    scheduling: JobScheduling | None = None
    execution: JobExecution | None = None


_DEPENDENCY_FIELDS = ("dependency", "dependencies")


def _is_set(value: Any, field: attrs.Attribute) -> bool:  # type: ignore[type-arg]
    """Whether a job gave ``field`` a value of its own (see :func:`merge_onto_default`)."""
    current = getattr(value, field.name)
    if current is None:
        return False
    if field.default is None:
        return True
    given = getattr(value, "_given", None)
    if given is None:  # a class that does not record its arguments: compare with the default
        return bool(current != field.default)
    return field.alias in given


def merge_onto_default(default: Any, value: Any) -> Any:
    """Field-wise merge of a job's resources, scheduling or execution onto the Submitor's default.

    Internal to molq (the Submitor's merge). Every field the job set wins, including an explicit
    False, 0 or empty value; None and fields the job left out inherit the default. ``env`` is
    merged by variable (the job's variables win), and the raw ``dependency`` string and the
    logical ``dependencies`` come both from the job as soon as it sets either, since they are
    mutually exclusive.

    >>> merged = merge_onto_default(JobScheduling(exclusive_node=True, partition="gpu"),
    ...                             JobScheduling(exclusive_node=False))
    >>> merged.exclusive_node, merged.partition
    (False, 'gpu')
    """
    if default is None:
        return value
    if value is None:
        return default
    fields = [f for f in attrs.fields(type(value)) if f.init]
    changes = {f.alias: getattr(value, f.name) for f in fields if _is_set(value, f)}
    if "env" in changes and getattr(default, "env", None):
        changes["env"] = {**default.env, **changes["env"]}
    if any(name in changes for name in _DEPENDENCY_FIELDS):
        for f in fields:
            if f.name in _DEPENDENCY_FIELDS:
                changes[f.alias] = getattr(value, f.name)
    return attrs.evolve(default, **changes)


# --------------------------------------------------------------------------------------------
# Scheduler-facing types


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
    """What a scheduler says about one job: a molq state plus the native details."""

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
