"""``molq report``: how finished jobs ended and what they used, over a period.

Counts by state and end cause, core- and GPU-hours (total and per job), median CPU and memory
efficiencies, and the worst offenders (jobs that asked for far more memory or cores than they
used). Read from the store only: no scheduler is asked.
"""

from __future__ import annotations

import fnmatch
import statistics
import time
from collections.abc import Sequence
from typing import Any

import click

from molq.cli import render
from molq.errors import ConfigError

__all__ = ["report", "build_report"]

#: A job is an offender when it used less than this share of what it asked for.
OFFENDER_SHARE = 0.1
#: How many offenders the report names.
OFFENDERS_SHOWN = 10

_GROUPS = ("name", "cluster", "state", "cause")


def _since(text: str) -> float:
    """Seconds before now for ``7d``, ``12h``, ``30m`` or ``90s`` (or a molq duration)."""
    from molq.model import Duration

    spelled = text.strip().lower()
    if spelled.endswith("d") and spelled[:-1].isdigit():
        return int(spelled[:-1]) * 86400.0
    try:
        return float(Duration.parse(spelled).seconds)
    except (ConfigError, ValueError):
        raise click.BadParameter(f"{text!r} is not a period (e.g. 7d, 12h, 30m)", param_hint="--since") from None


def _group_key(rec: Any, by: str) -> str:
    if by == "name":
        return rec.job_name or "(no name)"
    if by == "cluster":
        return rec.cluster_name
    if by == "state":
        return rec.state.value
    return render.cause_text(rec) or "unknown"


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _summary(records: Sequence[Any]) -> dict[str, Any]:
    from molq.usage import to_usage

    usages = [u for u in (to_usage(getattr(r, "usage", None)) for r in records) if u is not None]
    core_hours = [u.core_hours for u in usages if u.core_hours is not None]
    gpu_hours = [u.gpu_hours for u in usages if u.gpu_hours is not None]
    states: dict[str, int] = {}
    causes: dict[str, int] = {}
    for r in records:
        states[r.state.value] = states.get(r.state.value, 0) + 1
        cause = render.cause_text(r) or "unknown"
        causes[cause] = causes.get(cause, 0) + 1
    return {
        "jobs": len(records),
        "states": dict(sorted(states.items())),
        "causes": dict(sorted(causes.items())),
        "jobs_with_usage": len(usages),
        "core_hours": round(sum(core_hours), 4),
        "core_hours_per_job": round(sum(core_hours) / len(core_hours), 4) if core_hours else None,
        "gpu_hours": round(sum(gpu_hours), 4),
        "gpu_hours_per_job": round(sum(gpu_hours) / len(gpu_hours), 4) if gpu_hours else None,
        "median_cpu_efficiency": _median([u.cpu_efficiency for u in usages if u.cpu_efficiency is not None]),
        "median_memory_efficiency": _median([u.memory_efficiency for u in usages
                                             if u.memory_efficiency is not None]),
    }


def _offenders(records: Sequence[Any]) -> list[dict[str, Any]]:
    """Jobs that used under :data:`OFFENDER_SHARE` of their memory or cores, worst first."""
    from molq.usage import to_usage

    found = []
    for r in records:
        usage = to_usage(getattr(r, "usage", None))
        if usage is None:
            continue
        for what, share in (("memory", usage.memory_efficiency), ("cpu", usage.cpu_efficiency)):
            if share is not None and share < OFFENDER_SHARE and (what != "cpu" or (usage.cpus or 0) > 1):
                found.append({"job_id": r.job_id, "name": r.job_name, "cluster": r.cluster_name, "what": what,
                              "efficiency": round(share, 4),
                              "requested_over_used": round(1 / share, 1) if share > 0 else None})
    found.sort(key=lambda o: o["efficiency"])
    return found[:OFFENDERS_SHOWN]


def build_report(records: Sequence[Any], *, by: str = "cause") -> dict[str, Any]:
    """The report's data (what ``--json`` prints) for ``records``, grouped ``by``."""
    groups: dict[str, list[Any]] = {}
    for r in records:
        groups.setdefault(_group_key(r, by), []).append(r)
    return {
        "total": _summary(records),
        "by": by,
        "groups": {key: _summary(recs) for key, recs in sorted(groups.items())},
        "offenders": _offenders(records),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@click.command()
@click.option("--since", default="7d", show_default=True, help="Jobs that finished within this period (7d, 12h, 30m).")
@click.option("-c", "--cluster", "cluster_name", default=None, help="Only this cluster.")
@click.option("--name", "pattern", default=None, metavar="PATTERN", help="Only jobs whose name matches (shell pattern).")
@click.option("--by", type=click.Choice(_GROUPS), default="cause", show_default=True, help="Group the table by.")
@click.option("--json", "as_json", is_flag=True, help='Print JSON ("schema": 1).')
def report(since: str, cluster_name: str | None, pattern: str | None, by: str, as_json: bool) -> int:
    """How finished jobs ended and what they used: counts by state and cause, core- and
    GPU-hours, median efficiencies and the jobs that asked for far more than they used."""
    from molq.store import open_store

    cutoff = time.time() - _since(since)
    store = open_store()
    try:
        records = [r for r in store.list_jobs(cluster_name, include_terminal=True)
                   if r.is_terminal and (r.finished_at or r.updated_at or 0) >= cutoff
                   and (pattern is None or fnmatch.fnmatchcase(r.job_name or "", pattern))]
    finally:
        store.close()
    data = build_report(records, by=by)
    if as_json:
        render.dump_json(render.with_schema({"since": since, "cluster": cluster_name, "name": pattern, **data}))
        return 0
    total = data["total"]
    click.echo(f"{total['jobs']} finished job(s) in the last {since}"
               + (f" on {cluster_name}" if cluster_name else "") + (f" named {pattern}" if pattern else ""))
    if not records:
        return 0
    click.echo("states: " + ", ".join(f"{n} {s}" for s, n in total["states"].items()))
    click.echo("causes: " + ", ".join(f"{n} {c}" for c, n in total["causes"].items()))
    click.echo(f"core-hours: {_hours(total['core_hours'])} (per job {_hours(total['core_hours_per_job'])}), "
               f"GPU-hours: {_hours(total['gpu_hours'])}; median CPU efficiency "
               f"{_pct(total['median_cpu_efficiency'])}, memory {_pct(total['median_memory_efficiency'])}")
    rows = [[key, str(g["jobs"]), ", ".join(f"{n} {c}" for c, n in g["causes"].items()), _hours(g["core_hours"]),
             _hours(g["gpu_hours"]), _pct(g["median_cpu_efficiency"]), _pct(g["median_memory_efficiency"])]
            for key, g in data["groups"].items()]
    click.echo("")
    click.echo(render.table([by.upper(), "JOBS", "CAUSES", "CORE-H", "GPU-H", "CPU EFF", "MEM EFF"], rows,
                            max_width=render.terminal_width(), shrink=[(2, 12), (0, 8)]))
    if data["offenders"]:
        click.echo("\nworst offenders (used under 10% of what they asked for):")
        for o in data["offenders"]:
            ratio = f"asked {o['requested_over_used']}x what it used" if o["requested_over_used"] else "used none"
            click.echo(f"  {o['job_id'][:8]}  {render.safe(o['name'] or '-')}  {o['what']}: "
                       f"{_pct(o['efficiency'])} ({ratio})")
    return 0
