"""Tables, colours, times and the JSON shapes of the command line."""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

STATE_COLOURS = {
    "created": "bright_black",
    "submitted": "cyan",
    "queued": "cyan",
    "running": "blue",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "timed_out": "magenta",
    "lost": "red",
}


def is_tty() -> bool:
    return sys.stdout.isatty()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


def ago(ts: float | None, now: float | None = None) -> str:
    """``"3 min ago"``-style relative time."""
    if ts is None:
        return "-"
    delta = (now or time.time()) - ts
    future = delta < 0
    delta = abs(delta)
    if delta < 60:
        text = f"{int(delta)} s"
    elif delta < 3600:
        text = f"{int(delta // 60)} min"
    elif delta < 86400:
        text = f"{int(delta // 3600)} h"
    else:
        text = f"{int(delta // 86400)} d"
    return f"in {text}" if future else f"{text} ago"


def state_text(state: str) -> str:
    return click.style(state, fg=STATE_COLOURS.get(state)) if is_tty() else state


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, colour_col: int | None = None) -> str:
    """Aligned columns; the state column is coloured on a terminal."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            padded = cell.ljust(widths[i]) if i < len(row) - 1 else cell
            if i == colour_col:
                padded = state_text(cell) + " " * (widths[i] - len(cell) if i < len(row) - 1 else 0)
            cells.append(padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def truncate(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def record_json(rec: Any) -> dict[str, Any]:
    """The stable JSON shape of one job (``molq list/show --json``)."""
    return {
        "job_id": rec.job_id,
        "short_id": rec.job_id[:8],
        "cluster": rec.cluster_name,
        "scheduler": rec.scheduler,
        "state": rec.state.value,
        "raw_state": rec.raw_state,
        "scheduler_job_id": rec.scheduler_job_id,
        "name": rec.job_name,
        "command": rec.command_display,
        "command_type": rec.command_type,
        "root_job_id": rec.root_job_id,
        "attempt": rec.attempt,
        "profile": rec.profile_name,
        "cwd": rec.cwd,
        "job_dir": rec.job_dir,
        "exit_code": rec.exit_code,
        "exit_signal": rec.exit_signal,
        "failure_reason": rec.failure_reason,
        "created_at": iso(rec.created_at),
        "submitted_at": iso(rec.submitted_at),
        "started_at": iso(rec.started_at),
        "finished_at": iso(rec.finished_at),
        "next_retry_at": iso(rec.next_retry_at),
        "metadata": rec.metadata,
    }


def transition_json(tr: Any) -> dict[str, Any]:
    return {
        "old_state": tr.old_state.value if tr.old_state else None,
        "new_state": tr.new_state.value,
        "at": iso(tr.timestamp),
        "reason": tr.reason,
    }


def dependency_json(dep: Any) -> dict[str, Any]:
    return {
        "job_id": dep.job_id,
        "depends_on": dep.dependency_job_id,
        "condition": dep.dependency_type,
        "scheduler_dependency": dep.scheduler_dependency,
    }


def queue_json(entry: Any) -> dict[str, Any]:
    return {
        "scheduler_job_id": entry.scheduler_job_id,
        "name": entry.name,
        "user": entry.user,
        "state": entry.state.value,
        "raw_state": entry.raw_state,
        "partition": entry.partition,
        "submit_time": iso(entry.submit_time),
        "start_time": iso(entry.start_time),
    }


def dump_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def jobs_table(records: Sequence[Any], *, now: float | None = None) -> str:
    rows = [
        [
            r.job_id[:8],
            r.cluster_name,
            r.state.value,
            r.scheduler_job_id or "-",
            truncate(r.job_name or "", 20),
            ago(r.submitted_at or r.created_at, now),
            "" if r.exit_code is None else str(r.exit_code),
            truncate(r.command_display, 50),
        ]
        for r in records
    ]
    return table(["ID", "CLUSTER", "STATE", "SCHED ID", "NAME", "SUBMITTED", "EXIT", "COMMAND"], rows, colour_col=2)
