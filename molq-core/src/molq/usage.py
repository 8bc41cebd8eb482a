"""What a job used: wall time, CPU time, peak memory, GPUs, nodes -- and how efficiently.

Schedulers report usage in their accounting (SLURM's sacct, PBS's ``resources_used``, LSF's
bjobs); the local scheduler's wrapper records the CPU time of the job's processes. Every field
is optional: a scheduler that does not report something leaves it None, and an efficiency is
only computed when both of its terms are known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["Usage", "combine_usage", "to_usage", "usage_lines", "format_bytes", "format_seconds"]


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@attrs.frozen
class Usage:
    """Resources one job used (None: not reported)."""

    #: Wall-clock time from start to end.
    elapsed_seconds: float | None = attrs.field(default=None, converter=_opt_float)
    #: CPU time (user + system) of all the job's processes.
    cpu_seconds: float | None = attrs.field(default=None, converter=_opt_float)
    #: CPU cores allocated to the job.
    cpus: int | None = attrs.field(default=None, converter=_opt_int)
    #: Peak resident memory of the job's largest step or process tree.
    max_rss_bytes: int | None = attrs.field(default=None, converter=_opt_int)
    #: Memory the job was given (per job, all nodes together).
    requested_memory_bytes: int | None = attrs.field(default=None, converter=_opt_int)
    #: GPUs allocated to the job.
    gpus: int | None = attrs.field(default=None, converter=_opt_int)
    #: The nodes (hosts) it ran on, as the scheduler prints them.
    nodes: str | None = None
    #: Core-seconds allocated, when not simply ``cpus x elapsed`` (an array: the sum over its
    #: tasks, which ran at different times).
    core_seconds: float | None = attrs.field(default=None, converter=_opt_float)
    #: GPU-seconds allocated, likewise.
    gpu_seconds: float | None = attrs.field(default=None, converter=_opt_float)
    #: How many array tasks (or parts) these figures cover, when they are a sum (None: one).
    tasks: int | None = attrs.field(default=None, converter=_opt_int)

    @property
    def covered_tasks(self) -> int:
        """How many tasks these figures are the sum of."""
        return self.tasks or 1

    @property
    def core_walltime(self) -> float | None:
        """Core-seconds allocated: :attr:`core_seconds`, else cores x elapsed."""
        if self.core_seconds is not None:
            return self.core_seconds or None
        if not self.elapsed_seconds or not self.cpus:
            return None
        return self.cpus * self.elapsed_seconds

    @property
    def cpu_efficiency(self) -> float | None:
        """CPU time / core-walltime, 0..1 (slightly above 1 from clock granularity)."""
        walltime = self.core_walltime
        if self.cpu_seconds is None or not walltime:
            return None
        return self.cpu_seconds / walltime

    @property
    def memory_efficiency(self) -> float | None:
        """Peak memory / requested memory."""
        if self.max_rss_bytes is None or not self.requested_memory_bytes:
            return None
        return self.max_rss_bytes / self.requested_memory_bytes

    @property
    def core_hours(self) -> float | None:
        walltime = self.core_walltime
        return None if walltime is None else walltime / 3600.0

    @property
    def gpu_hours(self) -> float | None:
        if self.gpu_seconds is not None:
            return self.gpu_seconds / 3600.0 if self.gpu_seconds else None
        if not self.elapsed_seconds or not self.gpus:
            return None
        return self.gpus * self.elapsed_seconds / 3600.0

    def is_empty(self) -> bool:
        return all(getattr(self, a.name) is None for a in attrs.fields(Usage))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the store and JSON output (efficiencies included, rounded)."""
        data: dict[str, Any] = {a.name: getattr(self, a.name) for a in attrs.fields(Usage)}
        for name in ("cpu_efficiency", "memory_efficiency"):
            value = getattr(self, name)
            data[name] = None if value is None else round(value, 4)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """The inverse of :meth:`to_dict`; unknown keys (derived values, a newer molq's fields)
        are ignored."""
        names = {a.name for a in attrs.fields(Usage)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _total(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _largest(values: Sequence[Any]) -> Any:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def combine_usage(parts: Sequence[tuple[Usage | None, float | None, float | None]]) -> Usage | None:
    """The usage of a job made of parts (array tasks, split-array parts, job components), from
    ``(usage, started_at, finished_at)`` of each part; None unless every part reports usage (a
    sum over some tasks would understate the job).

    * CPU time, core-seconds and GPU-seconds are sums: each task used its own allocation, so
      the job's cost and its CPU efficiency are the tasks' together.
    * Wall time is the span from the first start to the last end when every part says when it
      ran (what the user waited for the whole job), else the longest part's.
    * Peak memory, cores, GPUs and requested memory are the largest task's: every task got
      the same request, and the memory efficiency that matters is the task closest to its
      limit (one task over it fails the job).
    """
    if not parts or any(u is None for u, _s, _e in parts):
        return None
    usages = [u for u, _s, _e in parts if u is not None]
    if len(usages) == 1:
        return usages[0]
    starts = [s for _u, s, _e in parts]
    ends = [e for _u, _s, e in parts]
    if all(s is not None for s in starts) and all(e is not None for e in ends):
        elapsed: float | None = max(e for e in ends if e is not None) - min(s for s in starts if s is not None)
    else:
        elapsed = _largest([u.elapsed_seconds for u in usages])
    nodes = list(dict.fromkeys(u.nodes for u in usages if u.nodes))
    return Usage(
        elapsed_seconds=elapsed,
        cpu_seconds=_total([u.cpu_seconds for u in usages]),
        cpus=_largest([u.cpus for u in usages]),
        max_rss_bytes=_largest([u.max_rss_bytes for u in usages]),
        requested_memory_bytes=_largest([u.requested_memory_bytes for u in usages]),
        gpus=_largest([u.gpus for u in usages]),
        nodes=",".join(nodes) if nodes else None,
        core_seconds=_total([u.core_walltime for u in usages]),
        gpu_seconds=_total([(u.gpu_hours or 0.0) * 3600.0 for u in usages]) if any(u.gpus for u in usages) else None,
        tasks=sum(u.covered_tasks for u in usages),
    )


def usage_lines(usage: Usage) -> list[tuple[str, str]]:
    """What a job used, as ``(label, value)`` lines in the manner of SLURM's ``seff``."""
    lines: list[tuple[str, str]] = []
    if usage.nodes:
        lines.append(("nodes", usage.nodes))
    if usage.cpus is not None:
        lines.append(("cores", str(usage.cpus)))
    if usage.gpus:
        lines.append(("GPUs", str(usage.gpus)))
    if usage.elapsed_seconds is not None:
        lines.append(("wall time", format_seconds(usage.elapsed_seconds)))
    if usage.cpu_seconds is not None:
        lines.append(("CPU utilized", format_seconds(usage.cpu_seconds)))
    eff = usage.cpu_efficiency
    if eff is not None:
        core_wall = usage.core_walltime
        lines.append(("CPU efficiency", f"{eff * 100:.1f}% of {format_seconds(core_wall)} core-walltime"))
    if usage.max_rss_bytes is not None:
        lines.append(("memory utilized", format_bytes(usage.max_rss_bytes)))
    mem = usage.memory_efficiency
    if mem is not None:
        lines.append(("memory efficiency", f"{mem * 100:.1f}% of {format_bytes(usage.requested_memory_bytes)}"))
    elif usage.requested_memory_bytes is not None:
        lines.append(("memory requested", format_bytes(usage.requested_memory_bytes)))
    return lines


def to_usage(value: Any) -> Usage | None:
    """``value`` (a Usage, its dict, a JSON text, or None) as a Usage."""
    if value is None or isinstance(value, Usage):
        return value
    if isinstance(value, str):
        import json

        value = json.loads(value) if value.strip() else None
        if value is None:
            return None
    return Usage.from_dict(value)


def format_bytes(n: int | None) -> str:
    """``1536 MiB`` style, or ``-``."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{n} B"


def format_seconds(seconds: float | None) -> str:
    """``[D-]HH:MM:SS`` like seff, or ``-``."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock
