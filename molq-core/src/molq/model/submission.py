"""What a user submits: the command or :class:`Script`, and the resources, scheduling
(partition, dependencies, arrays...) and execution (environment, files) of a job."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs

from molq.errors import ConfigError
from molq.model._checks import _opt_str, _positive_int
from molq.model.quantities import Duration, Memory

DependencyCondition = Literal["after_success", "after_failure", "after_started", "after"]
DEPENDENCY_CONDITIONS: tuple[str, ...] = ("after_success", "after_failure", "after_started", "after")


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


def _opt_memory(value: Any) -> Memory | None:
    return None if value is None else Memory.parse(value)


def _opt_duration(value: Any) -> Duration | None:
    return None if value is None else Duration.parse(value)


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


def _directives_tuple(value: Any) -> tuple[str, ...]:
    """``extra_directives`` as a tuple of option texts; one string is one directive."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"extra_directives must be a list of strings, got {value!r}")
    out = []
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"extra_directives holds {item!r}, which is not a string")
        if "\n" in item or "\r" in item or "\x00" in item:
            # One directive is one line: a line break would let the rest run as shell code.
            raise ConfigError(f"extra directive {item!r} must be one line (no line break or NUL byte)")
        text = item.strip()
        if text.startswith("#"):
            raise ConfigError(
                f"extra directive {item!r}: give the option only (e.g. '--constraint=avx2'); "
                "molq adds the scheduler's own prefix (#SBATCH, #PBS, #BSUB)"
            )
        if not text.startswith("-") or len(text) < 2 or text[1].isspace():
            raise ConfigError(
                f"extra directive {item!r} must be a scheduler option starting with '-', "
                "e.g. '--constraint=avx2' or '-l software=abc'"
            )
        out.append(text)
    return tuple(out)


def directive_option(text: str) -> str:
    """The option name of one extra directive: ``'--mem=4G'`` -> ``'--mem'``, ``'-l a=b'`` -> ``'-l'``.

    Dialects use it to refuse directives that would override what molq sets itself.
    """
    return re.split(r"[=\s]", text, maxsplit=1)[0]


def check_extra_directives(
    directives: tuple[str, ...], reserved: Mapping[str, str], scheduler: str
) -> tuple[str, ...]:
    """``directives``, or a :class:`ConfigError` for the first one whose option molq sets itself
    (``reserved`` maps such an option to the molq field to use instead)."""
    for text in directives:
        option = directive_option(text)
        if option in reserved:
            raise ConfigError(
                f"extra directive {text!r}: molq sets {option} itself on {scheduler}; "
                f"use {reserved[option]} instead"
            )
    return directives


_ARRAY_RE = re.compile(r"^\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?$")


def _array_problem(spec: str) -> str | None:
    """What is wrong with a well-formed array spec's values (None: nothing), found without
    expanding it: a range that ends before it starts, a step or a throttle of 0."""
    text, _, throttle = spec.replace(" ", "").partition("%")
    if throttle and int(throttle) < 1:
        return f"the throttle %{throttle} lets no task run; write %1 or more (or no throttle)"
    for item in text.split(","):
        bounds, _, step = item.partition(":")
        start, _, end = bounds.partition("-")
        if end and int(end) < int(start):
            return f"{item!r} is an empty range (it ends before it starts)"
        if step and int(step) < 1:
            return f"{item!r} has a step of 0"
    return None


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


#: JobScheduling fields newer than the reference API (seed 000), left out of its repr when unset.
_LATER_FIELDS = frozenset({"rerunnable", "extra_directives"})


@_remember_given
@attrs.frozen
class JobScheduling:
    """Where and when a job runs: partition, account, dependencies, arrays...

    ``dependency`` (a raw scheduler string) and ``dependencies`` (molq ids) are mutually exclusive.

    ``rerunnable`` (None: the cluster's default) says whether the scheduler may run the job
    again after a node failure or preemption: SLURM ``--requeue``/``--no-requeue``, PBS
    ``-r y``/``-r n``, LSF ``-r``/``-rn``. The local scheduler never reruns a job: False is
    already true there, True is refused.

    ``extra_directives`` are scheduler options molq has no field for, one per entry and
    written without the prefix (``("--constraint=avx2", "--nice=5")`` on SLURM,
    ``("-l software=abaqus",)`` on PBS): molq writes each as one ``#SBATCH``/``#PBS`` line of
    the job script (on LSF, as ``bsub`` options). An entry must be one line starting with
    ``-``, and must not set what molq sets itself (job name, tag, output files, dependencies,
    rerunnable); anything else is a :class:`ConfigError` before the job is stored. A job
    that gives its own list replaces the defaults' list. The local scheduler refuses them.
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
    #: Whether the scheduler may run the job again after a node failure or preemption
    #: (SLURM ``--requeue``/``--no-requeue``, PBS ``-r y``/``-r n``, LSF ``-r``/``-rn``);
    #: None keeps the cluster's default.
    rerunnable: bool | None = attrs.field(default=None)
    #: Scheduler options for this job that molq has no field for, one per entry, written
    #: without the prefix (``"--constraint=avx2"``): rendered as ``#SBATCH``/``#PBS`` lines
    #: (bsub options on LSF), never as shell code.
    extra_directives: tuple[str, ...] = attrs.field(default=(), converter=_directives_tuple)
    # Names of the arguments given to the constructor (see _remember_given); not part of the value.
    _given: frozenset[str] = attrs.field(init=False, factory=frozenset, eq=False, repr=False, hash=False)

    @rerunnable.validator
    def _check_rerunnable(self, _attr: Any, value: Any) -> None:
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"rerunnable must be true, false or unset, got {value!r}")

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
        if self.array_spec is not None and (problem := _array_problem(self.array_spec)):
            raise ConfigError(f"array_spec {self.array_spec!r}: {problem}")

    def __repr__(self) -> str:
        # The reference's repr, word for word; fields added since show only when set.
        shown = [f"{a.name}={getattr(self, a.name)!r}" for a in attrs.fields(type(self))
                 if a.init and (a.name not in _LATER_FIELDS or getattr(self, a.name) != a.default)]
        return f"JobScheduling({', '.join(shown)})"

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
