"""Tables, colours, times and the JSON shapes of the command line."""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

#: Version of every JSON object the command line prints (``"schema": 1``). Fields may be
#: added within a version; renaming or removing one, or changing its meaning, bumps it.
JSON_SCHEMA = 1

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

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "timed_out", "lost"})


def is_tty() -> bool:
    return sys.stdout.isatty()


def use_colour() -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org) or
    on a dumb terminal."""
    return is_tty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def terminal_size() -> os.terminal_size:
    """$COLUMNS/$LINES first, then the terminal's size, 80 x 24 when neither says (what
    shutil.get_terminal_size does, without importing shutil on the start-up path)."""
    try:
        size = os.get_terminal_size(sys.__stdout__.fileno())  # type: ignore[union-attr]
        columns, lines = size.columns, size.lines
    except (AttributeError, ValueError, OSError):
        columns, lines = 0, 0
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        lines = int(os.environ["LINES"])
    except (KeyError, ValueError):
        pass
    return os.terminal_size((columns if columns > 0 else 80, lines if lines > 0 else 24))


def terminal_width() -> int | None:
    """The width to fit tables to: the terminal's on a terminal, none when piped."""
    if not is_tty():
        return None
    return terminal_size().columns


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


def span(seconds: float) -> str:
    """``"45 s"``, ``"12 min"``, ``"3 h"``, ``"2 d"``."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def ago(ts: float | None, now: float | None = None) -> str:
    """``"3 min ago"``-style relative time."""
    if ts is None:
        return "-"
    delta = (now or time.time()) - ts
    return f"in {span(delta)}" if delta < 0 else f"{span(delta)} ago"


def clock(seconds: float) -> str:
    """An elapsed time as ``H:MM:SS`` (``D-HH:MM:SS`` past a day), as squeue prints it."""
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}" if days else text


def elapsed(rec: Any, now: float | None = None) -> float | None:
    """Running time so far, or the total running time of a finished job."""
    if rec.started_at is None:
        return None
    end = rec.finished_at if rec.finished_at is not None else (now or time.time())
    return end - rec.started_at


def state_text(state: str) -> str:
    return click.style(state, fg=STATE_COLOURS.get(state)) if use_colour() else state


def truncate(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def fit_widths(widths: list[int], max_width: int | None, shrink: Sequence[tuple[int, int]]) -> list[int]:
    """Column widths that fit ``max_width`` (two spaces between columns), taking space from the
    ``(column, minimum width)`` pairs in ``shrink``, in that order."""
    out = list(widths)
    if max_width is None:
        return out
    excess = sum(out) + 2 * (len(out) - 1) - max_width
    for col, minimum in shrink:
        if excess <= 0:
            break
        take = min(excess, max(out[col] - minimum, 0))
        out[col] -= take
        excess -= take
    return out


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f, *range(0x80, 0xa0)) if c not in (0x09, 0x0a)}


def safe(text: object) -> str:
    """``text`` with terminal control characters shown as escapes (``\\x1b``): user data (a
    job name, a reason, a path) can never move the cursor, recolour or retitle a terminal."""
    return str(text).translate(_CONTROL)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, colour_col: int | None = None,
          max_width: int | None = None, shrink: Sequence[tuple[int, int]] = ()) -> str:
    """Aligned columns, fitted to ``max_width`` by truncating the ``shrink`` columns; the state
    column is coloured on a terminal."""
    rows = [[safe(cell).replace("\n", " ").replace("\t", " ") for cell in row] for row in rows]
    natural = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            natural[i] = max(natural[i], len(cell))
    widths = fit_widths(natural, max_width, shrink)
    last = len(headers) - 1

    def line(cells: Sequence[str], colour: bool) -> str:
        out = []
        for i, cell in enumerate(cells):
            cell = truncate(cell, widths[i]) if len(cell) > widths[i] else cell
            pad = "" if i == last else " " * (widths[i] - len(cell))
            out.append((state_text(cell) if colour and i == colour_col else cell) + pad)
        return "  ".join(out).rstrip()

    return "\n".join([line(headers, False), *(line(row, True) for row in rows)])


def with_schema(data: dict[str, Any]) -> dict[str, Any]:
    return {"schema": JSON_SCHEMA, **data}


def record_json(rec: Any, *, now: float | None = None) -> dict[str, Any]:
    """The JSON shape of one job (``molq list/show/watch/submit --json``), see the CLI page."""
    run_time = elapsed(rec, now)
    return with_schema({
        "job_id": rec.job_id,
        "short_id": rec.job_id[:8],
        "cluster": rec.cluster_name,
        "scheduler": rec.scheduler,
        "state": rec.state.value,
        "raw_state": rec.raw_state,
        "sub_state": sub_state(rec) or None,
        "sub_state_reason": rec.sub_state_reason,
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
        "elapsed_seconds": None if run_time is None else round(run_time, 3),
        "next_retry_at": iso(rec.next_retry_at),
        "metadata": rec.metadata,
        "end_cause": cause_text(rec),
        "usage": usage_json(rec),
    })


def cause_text(rec: Any) -> str | None:
    """A record's end cause as its string (records read without the model carry the string)."""
    cause = getattr(rec, "end_cause", None)
    return None if cause is None else str(getattr(cause, "value", cause))


def usage_json(rec: Any) -> dict[str, Any] | None:
    """A record's usage as plain data, efficiencies included (None when none was reported)."""
    usage = getattr(rec, "usage", None)
    if usage is None:
        return None
    if isinstance(usage, dict):
        # A listing read without the model: the stored form already holds the efficiencies
        # (Usage.to_dict), and `molq list` stays free of the attrs classes.
        return usage
    from molq.usage import to_usage

    return to_usage(usage).to_dict()  # type: ignore[union-attr]


def resources_text(spec: dict[str, Any]) -> str:
    """What a stored attempt asked for (``cpus=2 memory=1.5G time=02:00:00``), or ``-``."""
    res = spec.get("resources") or {}
    parts = []
    if res.get("cpu_count"):
        parts.append(f"cpus={res['cpu_count']}")
    if res.get("memory"):
        from molq.model import Memory

        parts.append(f"memory={Memory(int(res['memory'])).to_slurm()}")
    if res.get("gpu_count"):
        parts.append(f"gpus={res['gpu_count']}" + (f":{res['gpu_type']}" if res.get("gpu_type") else ""))
    if res.get("time_limit"):
        from molq.model import Duration

        parts.append(f"time={Duration(int(res['time_limit'])).to_slurm()}")
    return " ".join(parts) or "-"


def echo_usage(rec: Any) -> None:
    """``molq show``'s usage block, like SLURM's seff (nothing when none was reported)."""
    usage = getattr(rec, "usage", None)
    if usage is None:
        return
    from molq.usage import to_usage, usage_lines

    lines = usage_lines(to_usage(usage))  # type: ignore[arg-type]
    if not lines:
        return
    click.echo("\nusage:")
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"  {key.rjust(width)}: {safe(value)}")


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
    return with_schema({
        "scheduler_job_id": entry.scheduler_job_id,
        "name": entry.name,
        "user": entry.user,
        "state": entry.state.value,
        "raw_state": entry.raw_state,
        "sub_state": sub_state(entry) or None,
        "sub_state_reason": entry.sub_state_reason,
        "partition": entry.partition,
        "submit_time": iso(entry.submit_time),
        "start_time": iso(entry.start_time),
        "cpus": getattr(entry, "cpus", None),
        "waits_for": getattr(entry, "waits_for", None),
    })


def sub_state(item: Any) -> str:
    """A record's or queue entry's sub-state (``held``, ``suspended``...), "" when it has none."""
    sub = getattr(item, "sub_state", None)
    return sub.value if sub is not None else ""


def dump_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def sched_id(rec: Any) -> str:
    """The scheduler's id, blank where it only repeats molq's (the local scheduler)."""
    sid = rec.scheduler_job_id
    if sid is None:
        return "-"
    return "" if sid == rec.job_id else sid


JOB_COLUMNS = ("id", "cluster", "state", "sched_id", "name", "submitted", "elapsed", "exit", "command")
#: Every column ``molq list --columns`` accepts.
ALL_COLUMNS = (*JOB_COLUMNS, "reason", "sub")
_HEADERS = {"id": "ID", "cluster": "CLUSTER", "state": "STATE", "sub": "SUB", "sched_id": "SCHED ID", "name": "NAME",
            "submitted": "SUBMITTED", "elapsed": "ELAPSED", "exit": "EXIT", "command": "COMMAND",
            "reason": "REASON"}
# Which columns give way, in order, when a table is wider than the terminal.
_SHRINK = (("command", 12), ("name", 8), ("reason", 10), ("cluster", 8), ("sched_id", 8))


def _cell(rec: Any, column: str, now: float, wide: bool, reasons: dict[str, str]) -> str:
    if column == "id":
        return rec.job_id if wide else rec.job_id[:8]
    if column == "cluster":
        return rec.cluster_name
    if column == "state":
        return rec.state.value
    if column == "sub":
        return sub_state(rec)
    if column == "sched_id":
        return sched_id(rec)
    if column == "name":
        return rec.job_name or ""
    if column == "submitted":
        return ago(rec.submitted_at or rec.created_at, now)
    if column == "elapsed":
        run_time = elapsed(rec, now)
        return "-" if run_time is None else clock(run_time)
    if column == "exit":
        return "" if rec.exit_code is None else str(rec.exit_code)
    if column == "command":
        return (rec.command_display or "").replace("\n", " ")
    if column == "reason":
        if rec.state.value == "created":  # held back by molq: why it waits (for room, say)
            return rec.sub_state_reason or ""
        return reasons.get(rec.job_id, "") if rec.state.value in ("queued", "submitted") else (
            rec.failure_reason or "" if rec.state.value in TERMINAL_STATES and rec.state.value != "succeeded" else "")
    raise ValueError(column)


def jobs_table(records: Sequence[Any], *, now: float | None = None, max_width: int | None = None,
               wide: bool = False, columns: Sequence[str] | None = None,
               reasons: dict[str, str] | None = None) -> str:
    """The job table of ``molq list`` and ``molq watch``. The SCHED ID column is left out when
    it would only repeat molq's ids; with ``max_width`` the COMMAND, NAME and REASON columns
    are truncated to fit (``wide`` shows everything in full)."""
    now = now or time.time()
    reasons = reasons or {}
    if columns is None:
        columns = list(JOB_COLUMNS)
        if not any(sched_id(r) not in ("", "-") for r in records):
            columns.remove("sched_id")
        if any(sub_state(r) for r in records):  # held, suspended...: only when some job is
            columns.insert(columns.index("state") + 1, "sub")
        if reasons or any(r.state.value in ("failed", "timed_out", "lost") for r in records):
            columns.insert(columns.index("command"), "reason")
    rows = [[_cell(r, c, now, wide, reasons) for c in columns] for r in records]
    shrink = [(columns.index(c), m) for c, m in _SHRINK if c in columns]
    return table([_HEADERS[c] for c in columns], rows,
                 colour_col=columns.index("state") if "state" in columns else None,
                 max_width=None if wide else max_width, shrink=shrink)


def summary(records: Sequence[Any]) -> str:
    """``"2 running, 3 queued, 1 failed"`` (states in lifecycle order)."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    return ", ".join(f"{counts[s]} {s}" for s in STATE_COLOURS if s in counts) or "no jobs"
